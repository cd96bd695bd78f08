"""A medical data set's TS per test level drawn beside a study's synthetic alpha levels (TS only, no image).

The placement names the synthetic level a real level resembles (nearest median TS on the log scale),
or says it lies past every level; the command refuses a pairing whose TS is measured differently,
and a figure it could not write, before preparing anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from medical_fixtures import write_glas_folders
from PIL import Image
from trial_studies import small_study

from trainables.config import parse_study
from trainables.datasets.__main__ import main
from trainables.datasets.ts_axis import comparable_ts, distribution, nearest_level, placement, ts_axis_figure

LEVELS = {"hardest": {"kind": "speckle", "variance": 0.3}, "in_domain": {"kind": "none"}}
LEVELS |= {"easier": {"kind": "background_blur", "sigma": 3.0}}


LEVELS_TS = (("0.1", 0.004), ("0.5", 0.011), ("0.9", 0.06))  # alpha, median TS


def synthetic_levels() -> list:
    return [distribution(f"alpha {a}", median * np.array([0.8, 1.0, 1.25]), True) for a, median in LEVELS_TS]


def test_a_level_is_placed_at_the_synthetic_level_of_nearest_median_on_the_log_scale() -> None:
    levels = synthetic_levels()
    assert nearest_level(distribution("x", np.full(9, 0.012), False), levels).label == "alpha 0.5"
    # 0.025 is nearer 0.011 than 0.06 in difference, nearer 0.06 in ratio (2.3x vs 2.4x): the ratio decides
    assert nearest_level(distribution("x", np.full(9, 0.026), False), levels).label == "alpha 0.9"
    assert placement(distribution("x", np.full(9, 0.05), False), levels) == "~ alpha 0.9"
    assert placement(distribution("x", np.full(9, 0.7), False), levels) == "above alpha 0.9"
    assert placement(distribution("x", np.full(9, 0.001), False), levels) == "below alpha 0.1"


def test_undefined_ts_is_left_out_and_the_figure_draws_every_level() -> None:
    medical = distribution("glas in_domain", np.array([0.04, np.nan, 0.05, np.inf]), False)
    assert medical.ts.tolist() == [0.04, 0.05]
    figure = ts_axis_figure(synthetic_levels(), [medical], title="t")
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    ticks = [tick.get_loc() for tick in figure.axes[0].yaxis.get_major_ticks()]
    assert [label for _, label in sorted(zip(ticks, labels, strict=True), reverse=True)] == [
        "alpha 0.1",
        "alpha 0.5",
        "alpha 0.9",
        "glas in_domain",
    ]  # top to bottom: the synthetic levels, then the real one
    annotations = [child.get_text() for child in figure.axes[0].texts]
    assert "0.045  ~ alpha 0.9" in annotations


def test_studies_measuring_ts_differently_are_not_compared() -> None:
    ours = parse_study(small_study("a"))
    assert comparable_ts(ours, parse_study(small_study("b"))) is None
    assert "image_size differs (32 vs 64)" in comparable_ts(ours, parse_study(small_study("b", image_size=64)))
    other = parse_study(small_study("b", texture_similarity={"lbp_method": "default"}))
    assert "lbp_method 'uniform' vs 'default'" in comparable_ts(ours, other)


def write_pair(tmp_path: Path, synthetic_changes: dict | None = None) -> tuple[Path, Path]:
    write_glas_folders(tmp_path / "GlaS", shape=(32, 32))
    glas = small_study("glas_ts", datasets={"glas": {"path": str(tmp_path / "GlaS")}}, test_levels=LEVELS)
    del glas["datasets"]["synthetic"]
    synthetic = small_study("synthetic_ts", **(synthetic_changes or {}))
    synthetic["datasets"]["synthetic"]["levels"] = [0.3, 0.9]
    paths = tmp_path / "glas.yaml", tmp_path / "synthetic.yaml"
    for path, study in zip(paths, (glas, synthetic), strict=True):
        path.write_text(yaml.safe_dump(study))
    return paths


def test_the_command_draws_glas_beside_the_synthetic_levels_and_says_where_each_level_sits(
    tmp_path: Path, capsys
) -> None:
    glas, synthetic = write_pair(tmp_path)
    out = tmp_path / "ts.png"
    argv = ["preview", "--config", str(glas), "--beside", str(synthetic), "--cache", str(tmp_path / "c")]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith("  glas ")]
    assert [line.split()[1] for line in lines] == ["hardest", "in_domain", "easier"]
    assert all("alpha 0.30" in line or "alpha 0.90" in line for line in lines)
    medians = [float(line.split("median TS")[1].split()[0]) for line in lines]
    assert medians[0] < medians[1] < medians[2]  # speckle lowers TS, background blur raises it
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 500


def test_the_command_refuses_a_pairing_it_cannot_compare_before_preparing_anything(tmp_path: Path, capsys) -> None:
    glas, synthetic = write_pair(tmp_path, {"image_size": 64})
    cache = tmp_path / "c"
    argv = ["preview", "--config", str(glas), "--beside", str(synthetic), "--cache", str(cache)]
    assert main([*argv, "--out", str(tmp_path / "ts.png")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "image_size differs (32 vs 64)" in error and str(synthetic) in error
    argv_no_synthetic = ["preview", "--config", str(glas), "--beside", str(glas), "--cache", str(cache)]
    assert main([*argv_no_synthetic, "--out", str(tmp_path / "t.png")]) == 2
    assert "no synthetic data set" in capsys.readouterr().err
    glas, synthetic = write_pair(tmp_path)
    argv = ["preview", "--config", str(glas), "--beside", str(synthetic), "--cache", str(cache)]
    assert main([*argv, "--out", str(tmp_path / "absent" / "ts.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "ts.jpg")]) == 2
    assert ".png or .pdf" in capsys.readouterr().err
    assert not cache.exists() and not list(tmp_path.glob("*.png"))

"""The report shows what the models predict: the export keeps a few runs' predictions.png, the report lays
them out per variant at the hardest and easiest training alpha, and the pictures belong to the export's unit.

The store is the hand-built toy study (tests/analysis_fixtures.py) with a small PNG logged to each finished run.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path

import pytest
from analysis_fixtures import STUDY, build_toy_store
from mlflow import MlflowClient
from PIL import Image

from analysis.__main__ import main
from analysis.export import export_study
from analysis.frames import IncompleteExportError, load_export
from analysis.report import build_report
from analysis.report.to_mlflow import log_report

CHOSEN = [
    "busi_noskip_unet_s0.png",
    "busi_unet_s0.png",
    "synthetic_noskip_unet_a0.30_s0.png",
    "synthetic_noskip_unet_a0.70_s0.png",
    "synthetic_unet_a0.30_s0.png",
    "synthetic_unet_a0.70_s0.png",
]


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), shade).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pictured(tmp_path_factory) -> dict:
    """The toy store, each finished trial with a predictions.png of its own shade; exported once."""
    root = tmp_path_factory.mktemp("pictured")
    uri = build_toy_store(root / "store")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(STUDY).experiment_id
    shades = {}
    runs = client.search_runs([experiment], filter_string="tags.`skipsweep.kind` = 'trial' and status = 'FINISHED'")
    for shade, run in enumerate(sorted(runs, key=lambda r: r.info.run_name)):
        path = root / "predictions.png"
        path.write_bytes(_png(shade * 10))
        client.log_artifact(run.info.run_id, str(path))
        shades[run.info.run_name] = shade * 10
    out = root / "results"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_study(STUDY, out, tracking_uri=uri)
    return {"uri": uri, "out": out, "shades": shades}


def test_the_export_keeps_the_lowest_seeds_pictures_at_both_ends_of_alpha(pictured: dict) -> None:
    out = pictured["out"]
    assert sorted(p.name for p in (out / "predictions").iterdir()) == CHOSEN
    recorded = json.loads((out / "export.json").read_text())["predictions"]
    assert sorted(recorded) == CHOSEN
    entry = recorded["synthetic_unet_a0.70_s0.png"]
    assert (entry["run_name"], entry["variant"], entry["train_alpha"], entry["seed"]) == (
        "unet a0.70 s0 synthetic",
        "unet",
        0.7,
        0,
    )
    with Image.open(out / "predictions" / "synthetic_unet_a0.70_s0.png") as picture:  # that run's own picture
        assert picture.getpixel((0, 0)) == pictured["shades"]["unet a0.70 s0 synthetic"]
    assert recorded["busi_unet_s0.png"]["train_alpha"] is None
    assert load_export(out).pictures == recorded


def test_the_report_lays_the_pictures_out_per_variant_and_links_only_files_that_exist(pictured: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = build_report(pictured["out"], n_resamples=200).report.read_text()
    section = report[report.index("## Predictions") :]
    section = section[: section.index("\n## ", 5)] if "\n## " in section[5:] else section
    assert "### busi" in section and "### synthetic" in section
    synthetic = section[section.index("### synthetic") :]
    assert "| trained at | noskip_unet | unet |" in synthetic
    rows = [line for line in synthetic.splitlines() if line.startswith("| alpha")]
    assert [row.split(" | ")[0] for row in rows] == ["| alpha 0.30 (hardest)", "| alpha 0.70 (easiest)"]
    assert "predictions/synthetic_unet_a0.30_s0.png" in rows[0] and "predictions/synthetic_unet_a0.70_s0.png" in rows[1]
    busi = section[section.index("### busi") : section.index("### synthetic")]
    assert "| its own images | ![noskip_unet, its own images](predictions/busi_noskip_unet_s0.png)" in busi
    links = re.findall(r"\]\((predictions/[^)]+)\)", report)
    assert sorted(Path(link).name for link in links) == CHOSEN
    assert all((pictured["out"] / link).is_file() for link in links)


def test_a_replaced_picture_makes_the_export_refused_and_reexport_removes_stale_ones(pictured: dict, tmp_path) -> None:
    out = tmp_path / "copy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_study(STUDY, out, tracking_uri=pictured["uri"])
        (out / "predictions" / "synthetic_unet_a0.30_s0.png").write_bytes(_png(255))
        with pytest.raises(IncompleteExportError, match=r"synthetic_unet_a0\.30_s0\.png does not match export\.json"):
            load_export(out)
        (out / "predictions" / "from_an_older_study.png").write_bytes(_png(1))
        export_study(STUDY, out, tracking_uri=pictured["uri"])
    assert sorted(p.name for p in (out / "predictions").iterdir()) == CHOSEN
    assert load_export(out).pictures  # whole again


def test_runs_without_pictures_give_a_report_without_the_section(tmp_path) -> None:
    uri = build_toy_store(tmp_path / "store")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_study(STUDY, tmp_path / "results", tracking_uri=uri)
    assert json.loads((tmp_path / "results" / "export.json").read_text())["predictions"] == {}
    assert not (tmp_path / "results" / "predictions").exists()
    assert main(["report", str(tmp_path / "results"), "--resamples", "100"]) == 0
    assert "## Predictions" not in (tmp_path / "results" / "report.md").read_text()


def test_the_report_in_mlflow_carries_the_pictures_it_links(pictured: dict, tmp_path) -> None:
    out = tmp_path / "logged"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_study(STUDY, out, tracking_uri=pictured["uri"])
        build_report(out, n_resamples=100)
    run_id = log_report(out, STUDY, tracking_uri=pictured["uri"])
    logged = {Path(info.path).name for info in MlflowClient(pictured["uri"]).list_artifacts(run_id, "predictions")}
    assert sorted(logged) == CHOSEN


def test_an_export_to_publish_keeps_no_pictures_and_removes_earlier_ones(pictured: dict, tmp_path) -> None:
    out = tmp_path / "public"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_study(STUDY, out, tracking_uri=pictured["uri"])
        assert len(list((out / "predictions").iterdir())) == len(CHOSEN)
        assert (
            main(["export", "--study", STUDY, "--tracking-uri", pictured["uri"], "--out", str(out), "--no-pictures"])
            == 0
        )
    assert json.loads((out / "export.json").read_text())["predictions"] == {}
    assert not list((out / "predictions").glob("*.png"))

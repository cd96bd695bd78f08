"""Study -> trials (pure), the dry run, and refusal of bad input before Ray starts."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import yaml

from orchestrator.driver import _gpu_fraction
from orchestrator.expand import expand, trial_table
from orchestrator.run import main
from trainables.config import load_study, parse_study

ROOT = Path(__file__).resolve().parent.parent


def study(**changes):
    data = {
        "study": "s",
        "variants": ["unet", "noskip_unet"],
        "seeds": [0, 1],
        "image_size": 32,
        "model": {"channels": [4, 8, 16], "strides": [2, 2]},
        "datasets": {"synthetic": {"levels": [0.3, 0.9]}},
    }
    data.update(changes)
    return parse_study(data)


def test_expand_is_the_full_grid_with_stable_ids() -> None:
    specs = expand(study())
    assert len(specs) == 2 * 2 * 2
    assert len({spec.trial_id for spec in specs}) == 8
    assert specs[0].run_name == "noskip_unet a0.30 s0 synthetic"
    assert [s.trial_id for s in specs] == [s.trial_id for s in expand(study())]


def test_expand_does_not_depend_on_listing_order() -> None:
    reordered = study(variants=["noskip_unet", "unet"], seeds=[1, 0], datasets={"synthetic": {"levels": [0.9, 0.3]}})
    assert [s.trial_id for s in expand(reordered)] == [s.trial_id for s in expand(study())]


def test_adding_a_seed_adds_exactly_its_trials() -> None:
    before = {s.trial_id for s in expand(study())}
    after = {s.trial_id for s in expand(study(seeds=[0, 1, 2]))}
    assert before < after and len(after - before) == 4


def test_released_convention_gives_the_same_trials() -> None:
    released = study(datasets={"synthetic": {"levels": [0.7, 0.1], "alpha_convention": "released"}})
    assert [s.trial_id for s in expand(released)] == [s.trial_id for s in expand(study())]


def test_full_protocols_expand_to_the_papers_grids(tmp_path: Path, monkeypatch) -> None:
    from medical_fixtures import write_all

    write_all(tmp_path)  # the medical data sets are read from $SKIPSWEEP_DATA: tiny stand-ins in the real layouts
    monkeypatch.setenv("SKIPSWEEP_DATA", str(tmp_path))
    # synthetic: variants x alpha levels x seeds; medical: data sets x variants x seeds
    assert len(expand(load_study(ROOT / "conf" / "miccai2023.yaml"))) == 3 * 9 * 3 + 3 * 3 * 3
    assert len(expand(load_study(ROOT / "conf" / "journal2025.yaml"))) == 2 * 6 * 15 * 3 + 4 * 6 * 3  # two directions


def test_trial_table_counts_and_estimate() -> None:
    config = study(resources={"gpu": 0.25})
    table = trial_table(expand(config), config, {"unet": 2.0, "noskip_unet": 1.0})
    assert "8 trial(s)" in table
    assert "per variant: noskip_unet 4, unet 4" in table
    assert "per alpha:   0.30 4, 0.90 4" in table
    # (4 x 2 s + 4 x 1 s) x 100 epochs = 1200 s = 0.33 trial-hours; x 0.25 GPU = 0.08 GPU-hours
    assert "0.33 trial-hours, 0.08 GPU-hours" in table


def test_trial_table_uses_each_data_sets_own_epochs(tmp_path: Path) -> None:
    from medical_fixtures import FOLDERS, write_all

    write_all(tmp_path)
    config = study(
        variants=["unet"],
        seeds=[0],
        training={"epochs": 10},
        test_levels={"in_domain": {"kind": "none"}},
        datasets={
            "synthetic": {"levels": [0.3, 0.9]},
            "busi": {"path": str(tmp_path / FOLDERS["busi"]), "training": {"epochs": 40}},
        },
    )
    table = trial_table(expand(config), config, {"unet": 9.0})
    assert "busi 40, synthetic 10 epochs" in table
    # 2 synthetic trials x 10 epochs + 1 busi trial x 40 epochs = 60 epochs x 9 s = 0.15 trial-hours
    assert "0.15 trial-hours" in table


def test_dry_run_prints_the_table_and_touches_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(ROOT / "conf" / "quick.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "study quick: 6 trial(s)" in out and "unet a0.90 s0 synthetic" in out
    assert list(tmp_path.iterdir()) == []  # no MLflow store, no cache, no results


def test_dry_run_refuses_a_missing_texture_file(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    study = {"study": "t", "variants": ["unet"], "seeds": [0], "datasets": {"synthetic": {"levels": [0.5]}}}
    study["datasets"]["synthetic"]["foreground"] = "missing.png"
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(study))
    assert main(["--config", str(tmp_path / "t.yaml"), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "datasets.synthetic.foreground" in error and "missing.png" in error and "trial(s)" not in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["t.yaml"]


def test_gpu_fraction_becomes_zero_with_one_warning_on_a_cpu_cluster(recwarn) -> None:
    assert _gpu_fraction(0.25, {"CPU": 2.0}) == 0.0
    assert len(recwarn) == 1 and "no GPU" in str(recwarn[0].message)
    assert _gpu_fraction(0.25, {"CPU": 2.0, "GPU": 1.0}) == 0.25


def test_bad_study_fails_with_status_2_before_ray_or_mlflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"study": "b", "variants": ["unet"], "seeds": [0], "datasets": {"synthetic": {"levels": [1.5]}}})
    )
    code = (
        "import sys\nfrom orchestrator.run import main\n"
        f"status = main(['--config', {str(bad)!r}])\n"
        "print('RAY_IMPORTED' if 'ray' in sys.modules else 'RAY_NOT_IMPORTED')\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "RAY_NOT_IMPORTED" in result.stdout
    assert "bad.yaml" in result.stderr and "datasets.synthetic.levels" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


class _Stop(Exception):
    pass


def test_a_trial_given_no_gpu_trains_on_the_cpu_even_on_a_gpu_node(monkeypatch) -> None:
    from orchestrator import sweep

    handed: list[dict] = []

    def capture(trainable, **parameters):
        handed.append(parameters)
        raise _Stop  # what Tune would do with it is not the question

    monkeypatch.setattr(sweep.tune, "with_parameters", capture)
    study = load_study(ROOT / "conf" / "quick.yaml")
    paths = sweep.SweepPaths("sqlite:////tmp/unused.db", "/tmp/cache", "/tmp/storage")
    for gpu in (0.0, 0.25):
        with contextlib.suppress(_Stop):
            sweep.run_sweep(study, expand(study), paths, gpu)
    assert [parameters["device"] for parameters in handed] == ["cpu", None]  # None: CUDA where Ray gave a GPU

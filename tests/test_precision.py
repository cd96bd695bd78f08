"""Precision, layout and threads of a trial on the device it gets; system metrics; a last batch of one image."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from trial_studies import small_study

from orchestrator.preflight import check_precision
from orchestrator.run import main
from trainables import precision as precision_module
from trainables.config import ModelConfig, StudyConfigError, parse_study
from trainables.loop import autocast, batch_bounds, seed_everything, train_epoch
from trainables.models import build_model
from trainables.precision import (
    PrecisionError,
    cpu_has_native_bf16,
    resolve_channels_last,
    resolve_precision,
)
from trainables.runtime import RuntimeOptions
from trainables.trial import TrialSpec, run_trial

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
SMALL_MODEL = ModelConfig(channels=(4, 8, 16), strides=(2, 2))
NO_NATIVE_BF16 = "this CPU has no native bf16 (torch.cpu.get_capabilities): bf16 would be emulated"


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("asked", "native", "expected"),
    [("none", True, "fp32"), ("bf16", False, "bf16"), ("auto", True, "bf16"), ("auto", False, "fp32")],
)
def test_precision_resolves_on_a_cpu(monkeypatch, asked, native, expected) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision(asked, CPU) == expected


@pytest.mark.parametrize(("bf16_supported", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_follows_the_gpu(monkeypatch, bf16_supported, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    assert resolve_precision("auto", CUDA) == expected
    assert resolve_precision("fp16", CUDA) == "fp16"


def test_fp16_on_a_cpu_is_refused_naming_the_key() -> None:
    with pytest.raises(PrecisionError, match=r"^training.mixed_precision: fp16 needs a CUDA GPU.*on the cpu"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="fp16 autocast needs a CUDA device"):
        autocast(CPU, "fp16")


@pytest.mark.parametrize(
    ("asked", "device", "precision", "expected"),
    [
        (False, CPU, "bf16", False),
        (True, CUDA, "fp32", True),
        ("auto", CPU, "fp32", True),
        ("auto", CUDA, "fp32", False),
        ("auto", CUDA, "bf16", True),
    ],
)
def test_channels_last_auto_follows_device_and_precision(asked, device, precision, expected) -> None:
    assert resolve_channels_last(asked, device, precision) is expected


@pytest.mark.parametrize(
    ("count", "batch", "bounds"),
    [
        (9, 4, [(0, 4), (4, 9)]),  # 4, 4, 1 -> 4, 5
        (8, 4, [(0, 4), (4, 8)]),
        (10, 4, [(0, 4), (4, 8), (8, 10)]),
        (1, 4, [(0, 1)]),
        (3, 1, [(0, 1), (1, 2), (2, 3)]),
    ],
)
def test_a_last_batch_of_one_joins_the_batch_before(count, batch, bounds) -> None:
    assert batch_bounds(count, batch) == bounds


def tiny_training(images: int, batch_size: int, precision: str, epochs: int, shape=SMALL_MODEL) -> list[float]:
    """Train-epoch losses of a batch-norm U-Net on ``images`` random 16 px images."""
    generator = seed_everything(0)
    model = build_model("unet", shape)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(images, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    y = (x > 0.5).float()
    runtime = RuntimeOptions(CPU, precision=precision)
    return [
        train_epoch(model, optimizer, x, y, generator, runtime, batch_size=batch_size, rotate_prob=0.0)
        for _ in range(epochs)
    ]


def test_a_last_batch_of_one_image_trains() -> None:
    five_levels = ModelConfig()  # 16 px down to 1 px: batch norm sees one value per channel in a batch of one
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):  # what the merge avoids
        build_model("unet", five_levels).train()(torch.rand(1, 1, 16, 16))
    losses = tiny_training(images=9, batch_size=4, precision="fp32", epochs=2, shape=five_levels)
    assert np.isfinite(losses).all()


@pytest.mark.skipif(not cpu_has_native_bf16(), reason=NO_NATIVE_BF16)
def test_bf16_trains_on_a_cpu_with_native_bf16() -> None:
    model = build_model("unet", SMALL_MODEL)
    with autocast(CPU, "bf16"):
        assert model(torch.rand(2, 1, 16, 16)).dtype == torch.bfloat16  # autocast is on, not a no-op
    losses = tiny_training(images=8, batch_size=4, precision="bf16", epochs=6)
    assert losses[-1] < losses[0] - 0.01, losses


def test_auto_precision_threads_and_system_metrics_are_logged(tmp_path: Path, keep_threads) -> None:
    study = parse_study(
        small_study(
            "auto",
            training={"mixed_precision": "auto", "channels_last": "auto"},
            tracking={"system_metrics_seconds": 60},  # longer than the run: only the closing sample is logged
        )
    )
    spec = TrialSpec("auto", "synthetic", "unet", 1.0, 0)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_trial(spec, study, work_dir=tmp_path / "w", tracking_uri=uri, cache_root=tmp_path / "c", threads=1)
    run = MlflowClient(uri).get_run(result.run_id)
    params = run.data.params
    assert params["mixed_precision"] == "auto"
    assert params["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert params["channels_last"] == "True" and params["torch_threads"] == "1" and torch.get_num_threads() == 1
    cpu = MlflowClient(uri).get_metric_history(result.run_id, "system/cpu_utilization_percentage")
    assert len(cpu) >= 1 and all(0 <= metric.value <= 100 for metric in cpu)
    assert run.data.metrics["system/system_memory_usage_megabytes"] > 0


def test_run_trial_refuses_fp16_on_a_cpu_before_any_work(tmp_path: Path) -> None:
    study = parse_study(small_study("fp16", training={"epochs": 1, "mixed_precision": "fp16"}))
    spec = TrialSpec("fp16", "synthetic", "unet", 1.0, 0)
    with pytest.raises(PrecisionError, match="training.mixed_precision: fp16 needs a CUDA GPU"):
        run_trial(spec, study, work_dir=tmp_path / "w", tracking_uri=f"sqlite:///{tmp_path}/m.db", device="cpu")
    assert list(tmp_path.iterdir()) == []


def fp16_study(tmp_path: Path, gpu: float) -> Path:
    study = small_study("fp16", training={"epochs": 1, "mixed_precision": "fp16"}, resources={"cpu": 1, "gpu": gpu})
    path = tmp_path / "in" / "study.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.mark.parametrize(
    ("gpu", "why"),
    [
        (0, "resources.gpu is 0"),
        pytest.param(
            0.5,
            "this machine has no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: fp16 may run"),
        ),
    ],
)
def test_the_main_command_refuses_fp16_on_cpu_trials(tmp_path: Path, capsys, monkeypatch, gpu, why) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config, out = fp16_study(tmp_path, gpu), tmp_path / "out"
    out.mkdir()
    status = main(
        [
            "--config",
            str(config),
            "--tracking-uri",
            f"sqlite:///{out}/m.db",
            "--storage",
            str(out / "r"),
            "--cache",
            str(out / "c"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert err == (
        f"error: {config}: training.mixed_precision: fp16 needs a CUDA GPU, but the trials run on the cpu ({why});"
        " use bf16, auto or none"
    )
    assert list(out.iterdir()) == []
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


def test_fp16_is_left_to_a_remote_cluster_that_may_have_gpus(tmp_path: Path) -> None:
    from trainables.config import load_study

    study = load_study(fp16_study(tmp_path, 0.5))
    check_precision(study, "study.yaml", address="ray://head:10001")  # no error: the trials may get a GPU there
    with pytest.raises(StudyConfigError, match="resources.gpu is 0"):
        check_precision(study.model_copy(update={"resources": study.resources.model_copy(update={"gpu": 0})}), "s")

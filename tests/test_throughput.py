"""Speed options change how fast a trial runs, not what it computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from trial_studies import small_study

from trainables.config import ModelConfig, StudyConfigError, parse_study
from trainables.datasets.arrays import TestCondition as Condition  # aliased: pytest would try to collect Test*
from trainables.evaluate import evaluate_conditions
from trainables.loop import compile_with_fallback, predict, rotate90, seed_everything, train_epoch
from trainables.metrics import dice_scores
from trainables.models import build_model
from trainables.runtime import RuntimeOptions
from trainables.trial import TrialSpec, run_trial, trial_params

SMALL_MODEL = ModelConfig(channels=(4, 8, 16), strides=(2, 2))


def study(**training):
    return parse_study(
        {
            "study": "speed",
            "variants": ["unet"],
            "seeds": [0],
            "image_size": 32,
            "datasets": {"synthetic": {}},
            "training": training,
        }
    )


def rotate90_one_by_one(images, masks, prob, generator):
    """The per-sample loop that ``rotate90`` replaced: the same draws, one rot90 per sample."""
    apply = torch.rand(images.shape[0], generator=generator) < prob
    turns = torch.randint(1, 4, (images.shape[0],), generator=generator)
    images, masks = images.clone(), masks.clone()
    for index in torch.nonzero(apply).flatten().tolist():
        images[index] = torch.rot90(images[index], int(turns[index]), dims=(1, 2))
        masks[index] = torch.rot90(masks[index], int(turns[index]), dims=(1, 2))
    return images, masks


@pytest.mark.parametrize("prob", [0.0, 0.5, 1.0])
def test_grouped_rotation_equals_the_per_sample_loop_and_draws_the_same(prob) -> None:
    images = torch.rand(16, 1, 8, 8)
    masks = (torch.rand(16, 1, 8, 8) > 0.5).float()
    grouped, one_by_one = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(3):
        got = rotate90(images, masks, prob, grouped)
        expected = rotate90_one_by_one(images, masks, prob, one_by_one)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert torch.equal(grouped.get_state(), one_by_one.get_state())


def conditions(rng: np.random.Generator) -> tuple[Condition, ...]:
    found = []
    for number, count in enumerate((5, 3, 7)):
        images = rng.random((count, 16, 16)).astype(np.float32)
        masks = (rng.random((count, 16, 16)) > 0.6).astype(np.uint8)
        ids = tuple(f"i{k}" for k in range(count))
        found.append(Condition(f"c{number}", float(number), images, masks, rng.random(count), ids))
    return tuple(found)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_one_stream_over_all_conditions_gives_the_per_condition_dice(batch_size) -> None:
    seed_everything(0)
    model = build_model("unet", SMALL_MODEL)
    tests = conditions(np.random.default_rng(0))
    per_image = evaluate_conditions(model, tests, study().evaluation, RuntimeOptions("cpu", eval_batch_size=batch_size))
    assert list(per_image.condition) == ["c0"] * 5 + ["c1"] * 3 + ["c2"] * 7
    for condition in tests:  # the old path: each condition on its own, two images at a time
        prediction = predict(
            model, torch.from_numpy(condition.images)[:, None], RuntimeOptions("cpu", eval_batch_size=2)
        )
        expected = dice_scores(prediction, torch.from_numpy(condition.masks.astype(np.float32))[:, None])
        got = per_image.loc[per_image.condition == condition.name, "dice"].to_numpy()
        np.testing.assert_array_equal(got, expected.numpy().astype(np.float64))


def test_channels_last_trains_to_the_same_losses_on_cpu() -> None:
    losses = {}
    for channels_last in (False, True):
        generator = seed_everything(0)
        model = build_model("unet", SMALL_MODEL)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        images = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1))
        masks = (images > 0.5).float()
        runtime = RuntimeOptions("cpu", channels_last=channels_last)
        losses[channels_last] = [
            train_epoch(model, optimizer, images, masks, generator, runtime, batch_size=4, rotate_prob=0.5)
            for _ in range(3)
        ]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)


def test_a_failing_compiler_falls_back_to_the_untouched_eager_model(monkeypatch, caplog) -> None:
    def broken_compile(model, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken_compile)
    seed_everything(0)
    model = build_model("unet", SMALL_MODEL)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    network, mode = compile_with_fallback(model, torch.rand(2, 1, 16, 16))
    assert network is model and mode == "eager"
    assert "no C++ compiler" in caplog.text
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_trial_whose_compile_fails_trains_eagerly_and_says_so(tmp_path, monkeypatch) -> None:
    def broken_compile(model, **kwargs):
        raise RuntimeError("inductor unavailable")

    monkeypatch.setattr(torch, "compile", broken_compile)
    config = parse_study(small_study("compiled", training={"compile": True, "channels_last": True}))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = TrialSpec("compiled", "synthetic", "unet", 1.0, 0)
    result = run_trial(spec, config, work_dir=tmp_path / "w", tracking_uri=uri, cache_root=tmp_path / "cache")
    run = MlflowClient(uri).get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["skipsweep.compiled"] == "false"
    assert run.data.params["compile"] == "True" and run.data.params["channels_last"] == "True"


def test_the_warm_up_leaves_weights_and_batch_norm_statistics_as_they_were(monkeypatch) -> None:
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)  # eager "compilation": same code path
    seed_everything(0)
    model = build_model("unet", SMALL_MODEL)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    network, mode = compile_with_fallback(model, torch.rand(2, 1, 16, 16))
    assert mode == "compiled"
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(parameter.grad is None for parameter in model.parameters())


def test_speed_options_are_study_fields_logged_as_params_but_not_hashed() -> None:
    base = study()
    assert base.training.mixed_precision == "none" and base.training.eval_batch_size == 32
    assert not base.training.channels_last and not base.training.compile and base.training.cudnn_benchmark
    assert study(mixed_precision=True).training.mixed_precision == "bf16"  # older study files
    assert study(mixed_precision=False).training.mixed_precision == "none"
    assert study(mixed_precision="fp16").training.mixed_precision == "fp16"
    with pytest.raises(StudyConfigError, match="training.mixed_precision"):
        study(mixed_precision="fp8")
    faster = study(channels_last=True, compile=True, cudnn_benchmark=False, evaluation_batch_size=64)
    assert faster.config_hash() == base.config_hash()
    assert study(mixed_precision="bf16").config_hash() != base.config_hash()
    params = trial_params(faster)
    assert {key: params[key] for key in ("channels_last", "compile", "cudnn_benchmark", "evaluation_batch_size")} == {
        "channels_last": True,
        "compile": True,
        "cudnn_benchmark": False,
        "evaluation_batch_size": 64,
    }

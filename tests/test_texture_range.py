"""Training on a texture range (training.train_range): the journal's narrow vs wide training sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from trial_studies import small_study

from orchestrator.expand import expand
from trainables.config import StudyConfigError, load_study, parse_study
from trainables.datasets.synthetic.prepare import synthetic_trial_data, train_levels
from trainables.trial import run_trial

LEVELS = [0.2, 0.5, 0.8, 1.0]


def ranged(train_range: float = 0.0, epochs: int = 2) -> dict:
    return small_study(
        "range", datasets={"synthetic": {"levels": LEVELS}}, training={"train_range": train_range, "epochs": epochs}
    )


def test_the_levels_of_a_range_are_clipped_at_the_study_ends() -> None:
    alphas = (0.2, 0.5, 0.8, 1.0)
    assert train_levels(alphas, 0.5, 0.0) == (0.5,)
    assert train_levels(alphas, 0.5, 0.3) == (0.2, 0.5, 0.8)  # both neighbours at exactly the range
    assert train_levels(alphas, 1.0, 0.3) == (0.8, 1.0)  # one side only at the end
    assert train_levels(alphas, 0.2, 1.0) == alphas


def test_a_range_mixes_equal_shares_of_the_same_crops_and_leaves_testing_as_it_was(tmp_path: Path) -> None:
    single = {alpha: synthetic_trial_data(parse_study(ranged()), alpha, tmp_path) for alpha in LEVELS}
    mixed = synthetic_trial_data(parse_study(ranged(0.3)), 0.5, tmp_path)
    order = [0.2, 0.5, 0.8]  # image i at the i-th level in turn
    for split in ("train", "val"):
        images = getattr(mixed, f"{split}_images")
        assert images.shape == getattr(single[0.5], f"{split}_images").shape  # the same number of images
        for i in range(len(images)):
            np.testing.assert_array_equal(images[i], getattr(single[order[i % 3]], f"{split}_images")[i])
        np.testing.assert_array_equal(getattr(mixed, f"{split}_masks"), getattr(single[0.5], f"{split}_masks"))
    assert not np.array_equal(mixed.train_images, single[0.5].train_images)
    assert [c.name for c in mixed.conditions] == [c.name for c in single[0.5].conditions]
    for ours, theirs in zip(mixed.conditions, single[0.5].conditions, strict=True):
        np.testing.assert_array_equal(ours.images, theirs.images)  # tested on every level as always
    none = synthetic_trial_data(parse_study(ranged(0.0)), 0.5, tmp_path)
    np.testing.assert_array_equal(none.train_images, single[0.5].train_images)


def test_a_range_is_in_the_hash_a_sweep_axis_and_refused_for_medical_data() -> None:
    assert load_study("conf/quick.yaml").config_hash() == "3cee8a887325b0b0"  # as before the field existed
    assert parse_study(ranged(0.0)).config_hash() != parse_study(ranged(0.3)).config_hash()
    swept = parse_study(
        small_study("range", datasets={"synthetic": {"levels": LEVELS}}, sweep={"training.train_range": [0.0, 0.3]})
    )
    names = {spec.run_name for spec in expand(swept) if spec.train_alpha == 0.5}
    assert names == {"unet a0.50 s0 train_range=0.0 synthetic", "unet a0.50 s0 train_range=0.3 synthetic"}
    medical = small_study(
        "m",
        datasets={"busi": {"path": "/nowhere"}},
        test_levels={"in_domain": {"kind": "none"}},
        training={"train_range": 0.2},
    )
    with pytest.raises(
        StudyConfigError, match=r"training.train_range: a texture range needs synthetic alpha levels; \['busi'\]"
    ):
        parse_study(medical)


def test_a_ranged_trial_records_the_levels_it_trained_on(tmp_path: Path) -> None:
    study = parse_study(ranged(0.3, epochs=1))
    spec = next(spec for spec in expand(study) if spec.train_alpha == 1.0)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_trial(spec, study, work_dir=tmp_path / "work", tracking_uri=uri, cache_root=tmp_path / "cache")
    params = MlflowClient(uri).get_run(result.run_id).data.params
    assert params["train_levels"] == "0.80,1.00" and params["train_range"] == "0.3"

"""Skip subsets: the U-Net with each level's skip connection kept or dropped (UDTransNet's ablation, Wang et al.).

``unet_skips_<flags>`` (one 0/1 per level, shallowest first) ends in today's two variants: all dropped is
``noskip_unet``, all kept is ``unet``, with the same parameters and the same outputs from the same seed.
``unet_skips_*`` in a study's variants is every subset.
"""

from __future__ import annotations

import pytest
import torch
import yaml
from test_trial import run, tiny_study
from trial_studies import small_study

from trainables.config import ModelConfig, StudyConfigError, parse_study
from trainables.models import build_model, count_parameters

SYNTHETIC = ModelConfig(channels=(4, 8, 16, 32, 64), strides=(2, 2, 2, 2))
MEDICAL = ModelConfig(channels=(4, 8, 16, 32, 64, 128), strides=(2, 2, 2, 2, 2))  # the papers' 6-level medical net


def _seeded(variant: str, model: ModelConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(variant, model).eval()


@pytest.mark.parametrize("model", [SYNTHETIC, MEDICAL], ids=["5 levels", "6 levels"])
def test_no_skips_kept_is_the_noskip_unet_and_all_kept_is_the_unet(model: ModelConfig) -> None:
    levels = len(model.strides)
    images = torch.randn(2, 1, 64, 64)
    for flags, twin in (("0" * levels, "noskip_unet"), ("1" * levels, "unet")):
        ours, theirs = _seeded(f"unet_skips_{flags}", model), _seeded(twin, model)
        assert count_parameters(ours) == count_parameters(theirs)
        with torch.no_grad():
            assert torch.equal(ours(images), theirs(images)), twin


def test_dropping_one_skip_removes_exactly_its_channels_from_that_level_up_layer() -> None:
    # The up layer of level i is a transposed 3x3 convolution; its skip brings channels[i] more inputs, each
    # with (out channels of that up layer) x 3 x 3 weights: the top level's up layer outputs the 1 logit channel,
    # level 1's outputs channels[0].
    full = count_parameters(_seeded("unet_skips_1111", SYNTHETIC))
    assert full - count_parameters(_seeded("unet_skips_0111", SYNTHETIC)) == 4 * 1 * 9
    assert full - count_parameters(_seeded("unet_skips_1011", SYNTHETIC)) == 8 * 4 * 9
    assert full - count_parameters(_seeded("unet_skips_1101", SYNTHETIC)) == 16 * 8 * 9
    with torch.no_grad():
        assert tuple(_seeded("unet_skips_0101", SYNTHETIC)(torch.randn(1, 1, 32, 32)).shape) == (1, 1, 32, 32)


def test_every_subset_by_shorthand_and_a_wrong_subset_refused_in_one_line() -> None:
    study = parse_study(small_study("subsets", variants=["noskip_unet", "unet_skips_*"]))  # 2 strides: 4 subsets
    assert study.variants == ("noskip_unet", "unet_skips_00", "unet_skips_01", "unet_skips_10", "unet_skips_11")
    with pytest.raises(StudyConfigError, match=r"variants: unet_skips_011 has 3 skip flags for 2 levels"):
        parse_study(small_study("wrong", variants=["unet_skips_011"]))
    with pytest.raises(StudyConfigError, match=r"unknown variant\(s\) \['unet_skips_2'\]"):
        parse_study(small_study("typo", variants=["unet_skips_2"]))
    raw = small_study("medical", variants=["unet_skips_11"], test_levels={"in_domain": {"kind": "none"}})
    raw["datasets"]["glas"] = {"path": "/data/glas", "model": {"channels": [4, 8, 16, 32], "strides": [2, 2, 2]}}
    with pytest.raises(StudyConfigError, match=r"2 skip flags for 3 levels \(one per stride\) \(datasets\.glas"):
        parse_study(raw)
    assert yaml.safe_dump(raw)  # the study file a user would write


def test_a_skip_subset_trains_as_a_trial_of_its_own(tmp_path) -> None:
    store = {"uri": f"sqlite:///{tmp_path}/mlflow.db", "cache": tmp_path / "cache", "root": tmp_path}
    result = run(tiny_study("subset", epochs=2, variants=["unet_skips_01"]), store, variant="unet_skips_01")
    assert result.spec.run_name.startswith("unet_skips_01 a1.00 s0")
    assert 0.0 <= result.test_metrics["test_dice.alpha_1.00"] <= 1.0


def test_skip_subsets_are_drawn_along_one_gradient_and_the_papers_variants_keep_their_colours() -> None:
    from trainables.schema import variant_colour

    assert variant_colour("unet_skips_0000") == "#440154" and variant_colour("unet_skips_1111") == "#fde725"
    subsets = {variant_colour(f"unet_skips_{i:04b}") for i in range(16)}
    assert len(subsets) == 16  # the 8-colour palette would repeat
    assert (variant_colour("noskip_unet"), variant_colour("unet")) == ("#1b1b1b", "#0072b2")

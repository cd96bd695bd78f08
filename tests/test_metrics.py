"""Per-image metrics: hand-computable cases, empty masks decided explicitly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from trainables.metrics import dice_scores, surface_metrics


def batch(*masks) -> torch.Tensor:
    return torch.tensor(np.array(masks), dtype=torch.float32)[:, None]


def test_dice_of_a_4x4_pair_by_hand() -> None:
    prediction = np.zeros((4, 4))
    prediction[0, :] = 1  # 4 pixels
    target = np.zeros((4, 4))
    target[0, :2] = 1
    target[1, :2] = 1  # 4 pixels, 2 shared -> 2*2 / (4+4) = 0.5
    assert_allclose(dice_scores(batch(prediction), batch(target)).numpy(), [0.5])


@pytest.mark.parametrize(
    ("prediction_pixels", "target_pixels", "expected"),
    [(0, 0, 1.0), (0, 3, 0.0), (3, 0, 0.0), (3, 3, 1.0)],
    ids=["both empty", "empty prediction", "empty target", "identical"],
)
def test_dice_with_empty_masks(prediction_pixels, target_pixels, expected) -> None:
    prediction = np.zeros((4, 4))
    prediction.flat[:prediction_pixels] = 1
    target = np.zeros((4, 4))
    target.flat[:target_pixels] = 1
    assert_allclose(dice_scores(batch(prediction), batch(target)).numpy(), [expected])


def test_surface_metrics_of_identical_masks() -> None:
    mask = np.zeros((16, 16))
    mask[4:10, 4:10] = 1
    assert surface_metrics(mask, mask) == {"hd95": 0.0, "asd": 0.0, "nsd": 1.0}


def test_surface_metrics_of_a_shifted_square() -> None:
    target = np.zeros((16, 16))
    target[4:10, 4:10] = 1
    prediction = np.roll(target, 2, axis=1)  # every boundary pixel is at most 2 px away
    result = surface_metrics(prediction, target, tolerance=1.0)
    assert result["hd95"] == pytest.approx(2.0)
    assert 0.0 < result["asd"] <= 2.0
    assert 0.0 < result["nsd"] < 1.0


@pytest.mark.parametrize(
    ("prediction_empty", "target_empty", "expected"),
    [
        (True, True, {"hd95": 0.0, "asd": 0.0, "nsd": 1.0}),
        (True, False, {"hd95": np.hypot(16, 16), "asd": np.hypot(16, 16), "nsd": 0.0}),
        (False, True, {"hd95": np.hypot(16, 16), "asd": np.hypot(16, 16), "nsd": 0.0}),
    ],
)
def test_surface_metrics_with_empty_masks_are_finite_and_documented(prediction_empty, target_empty, expected) -> None:
    square = np.zeros((16, 16))
    square[4:8, 4:8] = 1
    result = surface_metrics(
        np.zeros((16, 16)) if prediction_empty else square, np.zeros((16, 16)) if target_empty else square
    )
    assert result == pytest.approx(expected)
    assert all(np.isfinite(list(result.values())))

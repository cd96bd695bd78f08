"""Per-image segmentation metrics on binary masks (MONAI underneath).

Empty masks are decided here, explicitly, so that no NaN or infinity reaches a mean:

| prediction | ground truth | dice | hd95, asd             | nsd |
| ---------- | ------------ | ---- | --------------------- | --- |
| empty      | empty        | 1    | 0                     | 1   |
| empty      | not empty    | 0    | the image diagonal    | 0   |
| not empty  | empty        | 0    | the image diagonal    | 0   |

The image diagonal is the largest distance two pixels of the image can have: a
prediction that misses the structure entirely scores the worst distance possible.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_surface_dice,
)


def dice_scores(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice of each image of a batch of binary masks (B, 1, H, W) -> (B,).

    Two empty masks score 1, one empty mask 0 (MONAI's ``ignore_empty=False``).
    """
    return compute_dice(prediction.float(), target.float(), include_background=True, ignore_empty=False)[:, 0]


def surface_metrics(
    prediction: np.ndarray, target: np.ndarray, percentile: float = 95.0, tolerance: float = 1.0
) -> dict[str, float]:
    """HD (at ``percentile``), symmetric average surface distance and normalised surface Dice of one image.

    Args:
        prediction: binary 2D mask.
        target: binary 2D mask, same shape.
        percentile: Hausdorff percentile (95 for HD95).
        tolerance: NSD tolerance in pixels.

    Returns:
        ``{"hd95": ..., "asd": ..., "nsd": ...}``, finite by the table in the module docstring.
    """
    prediction = np.asarray(prediction) > 0
    target = np.asarray(target) > 0
    has_prediction, has_target = bool(prediction.any()), bool(target.any())
    if not has_prediction and not has_target:
        return {"hd95": 0.0, "asd": 0.0, "nsd": 1.0}
    if not has_prediction or not has_target:
        diagonal = float(np.hypot(*prediction.shape))
        return {"hd95": diagonal, "asd": diagonal, "nsd": 0.0}
    y_pred = torch.from_numpy(prediction)[None, None].float()
    y = torch.from_numpy(target)[None, None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        hd = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=percentile)
        asd = compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True)
        nsd = compute_surface_dice(y_pred, y, class_thresholds=[tolerance], include_background=True)
    return {"hd95": float(hd.item()), "asd": float(asd.item()), "nsd": float(nsd.item())}

"""Figures: cell texts equal the matrix, diverging map centred at 0, NaN never crashes, files are written."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import SymLogNorm

from analysis.frames import TESTED_ON, TRAINED_ON
from analysis.report import figures


def matrix(values) -> pd.DataFrame:
    frame = pd.DataFrame(values, index=[0.3, 0.7], columns=[0.3, 0.7])
    frame.index.name, frame.columns.name = TRAINED_ON, TESTED_ON
    return frame


def test_heatmap_cell_texts_equal_the_matrix():
    values = matrix([[0.1234, -0.5], [np.nan, 0.25]])
    marks = matrix([[True, False], [False, False]])
    figure = figures.plot_matrix_heatmap(values, "unet vs noskip_unet", significant=marks)
    ax = figure.axes[0]
    assert [text.get_text() for text in ax.texts] == ["0.12*", "-0.50", "NaN", "0.25"]
    assert ax.get_xlabel() == TESTED_ON and ax.get_ylabel() == TRAINED_ON
    assert [label.get_text() for label in ax.get_xticklabels()] == ["0.30", "0.70"]
    norm = ax.images[0].norm
    # symmetric limits at the 95th percentile of |value| (0.475 of 0.1234, 0.25, 0.5); -0.50 saturates
    assert isinstance(norm, SymLogNorm) and np.isclose(norm(0.0), 0.5) and norm.vmin == -norm.vmax
    # past +-0.05 the scale is logarithmic: a 2% gain and a 50% gain both get visibly coloured
    assert 0.5 < norm(0.02) < norm(0.1) < norm(0.45) < 1.0
    assert np.isclose(norm.vmax, np.percentile([0.1234, 0.5, 0.25], 95)) and np.isclose(norm.vmax, 0.475)
    assert ax.images[0].colorbar.extend == "both"


def test_heatmap_of_raw_dice_and_all_nan_do_not_crash(tmp_path):
    raw = figures.plot_matrix_heatmap(matrix([[0.8, 0.6], [0.7, 0.9]]), "Dice", diverging=False)
    assert [text.get_text() for text in raw.axes[0].texts] == ["0.80", "0.60", "0.70", "0.90"]
    empty = figures.plot_matrix_heatmap(matrix([[np.nan, np.nan], [np.nan, np.nan]]), "nothing yet")
    assert {text.get_text() for text in empty.axes[0].texts} == {"NaN"}
    for path in figures.save_figure(empty, tmp_path, "empty"):
        assert path.stat().st_size > 0


def test_relative_improvement_curves_with_nan_and_grayscale_styles(tmp_path):
    relative = pd.DataFrame(
        {
            "dataset": ["synthetic"] * 4,
            "variant": ["unet", "unet", "attention_unet", "attention_unet"],
            "train_alpha": [0.3, 0.7, 0.3, 0.7],
            "mean": [0.2, np.nan, 0.1, 0.05],
            "std": [0.02, np.nan, np.nan, 0.01],
            "n_seeds": [3, 2, 3, 3],
        }
    )
    figure = figures.plot_relative_improvement(relative, "noskip_unet")
    lines = [container.lines[0] for container in figure.axes[0].containers]  # the data line of each errorbar
    assert len({line.get_marker() for line in lines}) == len(lines) == 2  # told apart without colour
    assert len({str(line.get_linestyle()) for line in lines}) == 2
    png, pdf = figures.save_figure(figure, tmp_path, "relative_improvement")
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"


def test_learning_curves_and_dice_vs_texture(tmp_path):
    runs = pd.DataFrame({"run_id": ["a", "b"], "dataset": ["busi", "busi"], "variant": ["unet", "noskip_unet"]})
    epochs = pd.DataFrame(
        {
            "run_id": ["a"] * 4 + ["b"] * 4,
            "epoch": [0, 1, 2, 3] * 2,
            "val_dice": [np.nan, 0.4, np.nan, 0.7, np.nan, 0.3, np.nan, 0.5],
        }
    )
    curves = figures.plot_learning_curves(epochs, runs)
    plotted = {line.get_label(): list(line.get_ydata()) for line in curves.axes[0].get_lines()}
    assert plotted["unet"] == [0.4, 0.7] and plotted["noskip_unet"] == [0.3, 0.5]
    images = pd.DataFrame(
        {
            "dataset": "busi",
            "variant": ["unet"] * 3 + ["noskip_unet"] * 3,
            "ts": [0.1, 0.5, 0.9] * 2,
            "dice": [0.5, 0.7, np.nan, 0.4, 0.6, 0.8],
        }
    )
    scatter = figures.plot_dice_vs_texture(images, n_bins=2)
    assert scatter.axes[0].get_xlabel().startswith("texture similarity")
    for figure, stem in ((curves, "curves"), (scatter, "scatter")):
        assert all(path.stat().st_size > 1000 for path in figures.save_figure(figure, tmp_path, stem))

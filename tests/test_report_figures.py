"""The report's redrawn figures and tables: masked ratios over a baseline near 0, one spelling of inf and NaN,
learning curves per (data set, training alpha) with bands inside [0, 1], Dice-vs-TS lines that never span an
empty TS range, and the Dice change of each test level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from numpy.testing import assert_allclose

from analysis.frames import TESTED_ON, TRAINED_ON
from analysis.report import figures, sections
from analysis.report.formatting import format_number, frame_markdown, write_matrix_csv
from analysis.tables.levels import dice_against_name, level_dice_line, level_summary

ALPHAS = [0.3, 0.5, 0.7]


def matrix(values) -> pd.DataFrame:
    frame = pd.DataFrame(values, index=ALPHAS, columns=ALPHAS, dtype="float64")
    frame.index.name, frame.columns.name = TRAINED_ON, TESTED_ON
    return frame


RELATIVE = matrix([[0.10, -0.20, 0.05], [0.30, 159.0, -0.40], [np.inf, 0.02, np.nan]])
BASELINE = matrix([[0.80, 0.70, 0.60], [0.50, 0.003, 0.40], [0.0, 0.90, 0.95]])
OTHERS = [0.10, 0.20, 0.05, 0.30, 0.40, 0.02]  # |value| of the cells neither masked nor missing


def cell_texts(figure) -> list[list[str]]:
    texts = [text.get_text() for text in figure.axes[0].texts]
    return [texts[row * len(ALPHAS) : (row + 1) * len(ALPHAS)] for row in range(len(ALPHAS))]


def test_a_ratio_over_a_baseline_near_zero_is_masked_and_does_not_set_the_colour_scale():
    figure = figures.plot_matrix_heatmap(RELATIVE, "unet vs noskip_unet", baseline=BASELINE)
    ax = figure.axes[0]
    norm = ax.images[0].norm
    assert_allclose(norm.vmax, np.percentile(OTHERS, 95))  # 0.37, not 159
    assert norm.vmin == -norm.vmax and np.isclose(norm(0.0), 0.5)
    assert figure.axes[0].images[0].colorbar.extend == "both"  # 0.40 lies beyond the 95th percentile and saturates
    assert cell_texts(figure) == [["0.10", "-0.20", "0.05"], ["0.30", "n/a", "-0.40"], ["inf", "0.02", "NaN"]]
    assert "baseline Dice < 0.10, ratio not shown" in ax.get_title()
    assert "inf: baseline Dice 0" in ax.get_title()
    assert np.ma.is_masked(ax.images[0].get_array()[1, 1])  # the 159 cell gets no colour
    hatched = [(patch.get_x(), patch.get_y()) for patch in ax.patches if patch.get_hatch()]
    assert sorted(hatched) == [(-0.5, 1.5), (0.5, 0.5)]  # the inf cell (row 2, column 0) and the 159 cell


def test_without_a_baseline_only_infinite_cells_are_masked_and_the_colour_scale_is_not_extended():
    figure = figures.plot_matrix_heatmap(matrix([[0.1, -0.2, 0.0], [0.2, -np.inf, 0.1], [0.0, 0.1, 0.2]]), "t")
    assert cell_texts(figure)[1] == ["0.20", "-inf", "0.10"]
    assert_allclose(figure.axes[0].images[0].norm.vmax, 0.2)
    assert figure.axes[0].images[0].colorbar.extend == "neither"
    assert "n/a" not in figure.axes[0].get_title()


def test_inf_and_nan_read_the_same_in_the_figure_the_markdown_and_the_csv(tmp_path):
    assert [format_number(v) for v in (np.inf, -np.inf, np.nan, None, pd.NA, 0.5)] == [
        "inf",
        "-inf",
        "NaN",
        "NaN",
        "NaN",
        "0.500",
    ]
    markdown = frame_markdown(RELATIVE, digits=2)
    assert "| 0.70 | inf | 0.02 | NaN |" in markdown
    write_matrix_csv(RELATIVE, tmp_path / "relative.csv")
    lines = (tmp_path / "relative.csv").read_text().splitlines()
    assert lines[2] == "0.50,0.3,159,-0.4" and lines[3] == "0.70,inf,0.02,NaN"  # the CSV keeps the numbers
    assert cell_texts(figures.plot_matrix_heatmap(RELATIVE, "t", baseline=BASELINE))[2] == ["inf", "0.02", "NaN"]


def test_the_relative_markdown_shows_masked_cells_as_na_and_says_why():
    text = sections.relative_markdown(RELATIVE, BASELINE, "noskip_unet")
    assert "| 0.50 | 0.300 | n/a (baseline < 0.10) | -0.400 |" in text
    assert "| 0.70 | inf | 0.020 | NaN |" in text  # inf wins over the floor, as in the figure
    assert "noskip_unet's mean Dice over seeds in that cell is below 0.10" in text
    assert "inf: noskip_unet's Dice is 0 for at least one seed" in text
    plain = sections.relative_markdown(matrix(np.full((3, 3), 0.1)), matrix(np.full((3, 3), 0.5)), "noskip_unet")
    assert "n/a" not in plain and "inf" not in plain


def learning_frames(with_alpha: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, epochs = [], []
    keys = [("synthetic", alpha) for alpha in (0.3, 0.9)] + [("busi", np.nan)]
    for dataset, alpha in keys:
        for variant in ("noskip_unet", "unet"):
            for seed in (0, 1):
                run_id = f"{dataset}-{alpha}-{variant}-{seed}"
                runs.append(
                    {"run_id": run_id, "dataset": dataset, "variant": variant, "train_alpha": alpha, "seed": seed}
                )
                top = 0.95 if seed == 0 else 0.55  # mean 0.75, std 0.28: mean + std > 1 at the top
                for epoch in range(4):
                    dice = top if epoch else (0.02 if seed == 0 else 0.3)
                    epochs.append({"run_id": run_id, "epoch": epoch, "train_loss": 1.0, "val_dice": dice})
    runs = pd.DataFrame(runs)
    return pd.DataFrame(epochs), runs if with_alpha else runs.drop(columns=["train_alpha", "seed"])


def band_ys(ax) -> np.ndarray:
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    return np.concatenate([path.vertices[:, 1] for band in bands for path in band.get_paths()])


def test_learning_curves_have_one_panel_per_dataset_and_alpha_with_bands_inside_zero_one():
    epochs, runs = learning_frames()
    figure = figures.plot_learning_curves(epochs, runs)
    assert [ax.get_title() for ax in figure.axes] == ["synthetic, alpha 0.30", "synthetic, alpha 0.90", "busi"]
    for ax in figure.axes:
        assert ax.get_ylim() == (0.0, 1.0)
        assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 2  # one band per variant
        ys = band_ys(ax)
        assert ys.min() >= 0.0 and ys.max() <= 1.0 and ys.max() == 1.0  # mean + std = 1.03 is clipped
        lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
        assert_allclose(lines["unet"], [0.16, 0.75, 0.75, 0.75])  # the mean over the two seeds
    assert "mean and std over seeds, per training alpha" in figure.get_suptitle()
    assert len(figure.legends) == 1 and [t.get_text() for t in figure.legends[0].get_texts()] == [
        "noskip_unet",
        "unet",
    ]


@pytest.mark.parametrize(("width", "columns"), [(3.6, 2), (7.2, 4), (1.5, 1)])
def test_the_figure_legend_stays_inside_the_figure_for_sixteen_skip_subsets(width, columns):
    figure, axes = figures.new_figure(1, width=width, height=4.0)
    for flags in range(16):
        axes[0].plot([0, 1], [flags, flags], label=f"unet_skips_{flags:04b}")
    figures.figure_legend(figure, axes)
    figure.canvas.draw()
    legend = figure.legends[0]
    assert len({round(text.get_window_extent().x0) for text in legend.get_texts()}) == columns
    box = legend.get_window_extent()
    if columns > 1:  # a single column wider than the figure has nowhere to go
        assert box.x0 >= 0 and box.x1 <= figure.bbox.x1, (box, figure.bbox)


def test_learning_curves_without_alpha_or_seed_columns_pool_a_data_set_in_one_panel():
    epochs, runs = learning_frames(with_alpha=False)
    figure = figures.plot_learning_curves(epochs, runs)
    assert [ax.get_title() for ax in figure.axes] == ["busi", "synthetic"]
    synthetic = {line.get_label(): line.get_ydata() for line in figure.axes[1].get_lines()}
    assert_allclose(synthetic["noskip_unet"], [0.16, 0.75, 0.75, 0.75])


def texture_images() -> pd.DataFrame:
    rows = []
    for variant in ("noskip_unet", "unet"):
        for image, ts in enumerate([0.06, 0.07, 0.08, 0.96, 0.97, 0.98]):  # nothing between 0.08 and 0.96
            for condition, test_alpha, dice in (
                ("alpha_0.50", 0.5, 0.9),
                ("alpha_0.90", 0.9, 0.1),
                ("harder", 0.5, 0.2),
            ):
                rows.append(
                    {
                        "dataset": "synthetic",
                        "variant": variant,
                        "train_alpha": 0.5,
                        "seed": 0,
                        "condition": condition,
                        "test_alpha": test_alpha,
                        "image_id": f"i{image}",
                        "dice": dice,
                        "ts": ts,
                    }
                )
        for condition in ("in_domain", "easier"):
            rows.append({"dataset": "busi", "variant": variant, "condition": condition, "dice": 0.5, "ts": 0.4})
    images = pd.DataFrame(rows)
    extra = images[images["condition"] == "alpha_0.50"].assign(condition="in_domain")  # the same unchanged images
    return pd.concat([images, extra], ignore_index=True)


def test_dice_vs_texture_separates_conditions_and_breaks_lines_over_empty_ts():
    figure = figures.plot_dice_vs_texture(texture_images(), n_bins=8)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [
        "busi: in_domain",
        "busi: easier",
        "synthetic: harder",
        "synthetic: in_domain (tested on its training alpha)",
    ]
    in_domain = figure.axes[3]
    for line in in_domain.get_lines():
        x, y = line.get_xdata(), line.get_ydata()
        gaps = np.flatnonzero(np.isnan(x))
        assert len(gaps) == 1 and x[: gaps[0]].max() < 0.1 and x[gaps[0] + 1 :].min() > 0.9
        assert_allclose(y[~np.isnan(y)], 0.9)  # the off-diagonal alpha_0.90 rows (Dice 0.1) are left out
        finite = x[~np.isnan(x)]
        steps = np.diff(x)
        assert np.all(steps[np.isfinite(steps)] <= 2 * (finite.max() - finite.min()) / 8)
    scattered = sum(len(c.get_offsets()) for c in in_domain.collections)
    assert scattered == 12  # 6 images x 2 variants, the in_domain level rows not counted twice


@pytest.mark.parametrize(
    ("ts", "expected_gaps"),
    [([0.0, 0.1, 0.2, 0.3], 0), ([0.0, 0.01, 0.8, 0.81], 1), ([0.5, 0.5], 0)],
)
def test_binned_means_break_only_over_empty_bins(ts, expected_gaps):
    ts = pd.Series(ts)
    x, y = figures.binned_means(ts, pd.Series(np.linspace(0.1, 0.9, len(ts))), figures.ts_edges(ts, 4))
    assert int(np.isnan(x).sum()) == expected_gaps and np.array_equal(np.isnan(x), np.isnan(y))


def level_images() -> pd.DataFrame:
    cells = {  # (dataset, train_alpha, level) -> Dice of noskip_unet and unet (one image each)
        ("busi", np.nan, "harder"): (0.5, 0.7),
        ("busi", np.nan, "in_domain"): (0.6, 0.8),
        ("busi", np.nan, "easier"): (0.8, 0.9),
        ("synthetic", 0.9, "harder"): (0.99, 0.99),
        ("synthetic", 0.9, "in_domain"): (0.96, 0.98),
        ("synthetic", 0.9, "easier"): (0.36, 0.40),
    }
    ts = {"harder": 0.5, "in_domain": 1.0, "easier": 2.0}
    rows = [
        {"dataset": d, "train_alpha": a, "condition": level, "variant": v, "dice": dice, "ts": ts[level]}
        for (d, a, level), pair in cells.items()
        for v, dice in zip(("noskip_unet", "unet"), pair, strict=True)
    ]
    return pd.DataFrame(rows)


def test_level_summary_gives_the_dice_change_against_in_domain():
    summary = level_summary(level_images())
    assert list(summary.columns)[-3:] == ["ts_change", "as_expected", "dice_change"]
    changes = summary.set_index(["label", "level"])["dice_change"]
    assert_allclose(changes[("busi", "harder")], 0.6 - 0.7)
    assert_allclose(changes[("busi", "easier")], 0.85 - 0.7)
    assert_allclose(changes[("synthetic (alpha 0.90)", "harder")], 0.99 - 0.97)
    assert_allclose(changes[("synthetic (alpha 0.90)", "easier")], 0.38 - 0.97)
    assert changes[("busi", "in_domain")] == 0.0
    assert dice_against_name(summary).tolist() == [False, False, False, True, False, True]
    line = level_dice_line(summary)
    assert "harder -0.04 (mean over 2 (data set, alpha) blocks, from -0.10 to +0.02)" in line
    assert "harder raises mean Dice at 1 of 2 (data set, alpha) blocks (synthetic (alpha 0.90): 0.97 -> 0.99)" in line
    assert "easier lowers mean Dice at 1 of 2 (data set, alpha) blocks (synthetic (alpha 0.90): 0.97 -> 0.38)" in line


class _Writer:
    def csv(self, name: str, frame: pd.DataFrame, index: bool = False) -> str:
        self.frame = frame
        return f"tables/{name}"


def test_the_levels_section_shows_the_dice_change_and_names_levels_against_their_name():
    writer = _Writer()
    text = sections.levels_section(writer, level_images())
    assert "| Dice vs in_domain |" in text
    against = (
        "| synthetic (alpha 0.90) | harder | 2 | 0.500 | -0.500 (as named) | 0.990 | +0.020 (**against its name**) |"
    )
    assert against in text
    assert "|  | easier | 2 | 2.000 | +1.000 (as named) | 0.850 | +0.150 | 0.800 | 0.900 |" in text
    assert text.index("Check (harder levels lower TS") < text.index("Dice vs in_domain (the level's mean Dice")
    assert "dice_change" in writer.frame.columns

"""The numbers claims are checked on, computed once: per-seed scores and effects, per-cell seed-level tests.

Everything here is per trained model (per seed) first: a model's score on a test condition is the mean of its
per-image metric, and an effect between two variants is computed seed by seed (pairing the models trained with
the same seed) before any test (:mod:`analysis.statistics.seeds`). :class:`Evidence` also holds the per-cell
tables the report prints (cross-alpha matrices, out-of-domain tables), so a claim's verdict rests on the same
seed-level tests as the tables beside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.frames import LEVEL_ORDER, cross_alpha_rows
from analysis.statistics.cells import seed_tests
from analysis.tables.ood import ood_table
from analysis.tables.relative import seed_level_scores


class Evidence:
    """Per-seed scores and seed-level tests of a study, computed once per metric and baseline.

    Args:
        images: Per-image rows (:func:`analysis.frames.image_scores`).
        n_resamples: Resamples of the hierarchical bootstrap intervals.
        seed: Bootstrap seed.
        level: Family-wise error rate of the Holm corrections and the level of every test.

    Attributes:
        matrix_tests: ``(dataset, variant, baseline, metric) -> seed_tests`` of one cross-alpha matrix (relative
            effects, one Holm family per matrix).
        ood_tables: ``(baseline, metric) -> ood_table`` with its seed-level tests.
    """

    def __init__(self, images: pd.DataFrame, n_resamples: int = 2000, seed: int = 0, level: float = 0.05) -> None:
        self.images, self.n_resamples, self.seed, self.level = images, n_resamples, seed, level
        self.matrix_tests: dict[tuple, pd.DataFrame] = {}
        self.ood_tables: dict[tuple, pd.DataFrame] = {}
        self._scores: dict[str, pd.DataFrame] = {}
        self._level_scores: dict[str, pd.DataFrame] = {}

    # --- what the study holds -------------------------------------------------------------------------------

    def synthetic_datasets(self) -> list[str]:
        """Data sets with cross-alpha results."""
        return sorted(cross_alpha_rows(self.images)["dataset"].unique())

    def level_datasets(self, medical: bool = False) -> list[str]:
        """Data sets with an ``in_domain`` test level (with ``medical``, only those without a training alpha)."""
        rows = self.images[self.images["condition"] == "in_domain"]
        if medical:
            rows = rows[rows["train_alpha"].isna()]
        return sorted(rows["dataset"].unique())

    def n_seeds(self, dataset: str, variants) -> int:
        """Fewest seeds any of ``variants`` has on a data set (0 when one is absent)."""
        rows = self.images[self.images["dataset"] == dataset]
        counts = rows.groupby("variant")["seed"].nunique()
        return int(min(counts.get(variant, 0) for variant in variants)) if len(variants) else 0

    def absent(self, dataset: str, variants, levels: bool = False) -> list[str]:
        """The variants with no cross-alpha result (or, with ``levels``, no test-level result) on a data set."""
        rows = self.images[self.images["condition"].isin(LEVEL_ORDER)] if levels else cross_alpha_rows(self.images)
        present = set(rows.loc[rows["dataset"] == dataset, "variant"])
        return [variant for variant in dict.fromkeys(variants) if variant not in present]

    # --- per-seed scores ------------------------------------------------------------------------------------

    def scores(self, metric: str) -> pd.DataFrame:
        """Seed-level cross-alpha scores (:func:`analysis.tables.relative.seed_level_scores`)."""
        if metric not in self._scores:
            self._scores[metric] = seed_level_scores(self.images, metric)
        return self._scores[metric]

    def level_scores(self, metric: str) -> pd.DataFrame:
        """Per model and test level, the mean metric over the test images.

        Returns:
            Columns ``dataset, train_alpha, variant, seed, level, <metric>``.
        """
        if metric not in self._level_scores:
            rows = self.images[self.images["condition"].isin(LEVEL_ORDER)]
            keys = ["dataset", "train_alpha", "variant", "seed", "condition"]
            means = rows.groupby(keys, dropna=False)[metric].mean().reset_index()
            self._level_scores[metric] = means.rename(columns={"condition": "level"})
        return self._level_scores[metric]

    def cross(self, dataset: str, variant: str, metric: str) -> pd.DataFrame:
        """A variant's per-seed cross-alpha scores: index seed, columns ``(train_alpha, test_alpha)``."""
        scores = self.scores(metric)
        rows = scores[(scores["dataset"] == dataset) & (scores["variant"] == variant)]
        return rows.pivot_table(
            index="seed", columns=["train_alpha", "test_alpha"], values=metric, aggfunc="first", dropna=False
        )

    def in_domain(self, dataset: str, variant: str, metric: str) -> pd.DataFrame:
        """A variant's per-seed in-domain scores: index seed, columns train_alpha (ascending)."""
        return _diagonal(self.cross(dataset, variant, metric))

    def relative_gain(self, dataset: str, variant: str, baseline: str, metric: str) -> pd.DataFrame:
        """Per-seed in-domain relative gain ``(D_v - D_b) / D_b`` (same seed): index seed, columns train_alpha."""
        return _diagonal(self.relative_cross(dataset, variant, baseline, metric)).dropna(how="all")

    def relative_cross(self, dataset: str, variant: str, baseline: str, metric: str) -> pd.DataFrame:
        """Per-seed relative difference in every cross-alpha cell: index seed, columns ``(train, test)``."""
        mine, base = self.cross(dataset, variant, metric), self.cross(dataset, baseline, metric)
        return (mine - base) / base

    def level_table(self, dataset: str, metric: str) -> pd.DataFrame:
        """Per-seed scores on the test levels of one data set: index ``(variant, seed)``, columns levels.

        Meant for medical data sets (no training alpha); a synthetic data set's training alphas are averaged.
        """
        rows = self.level_scores(metric)
        rows = rows[rows["dataset"] == dataset]
        return rows.pivot_table(index=["variant", "seed"], columns="level", values=metric, aggfunc="mean")

    # --- the report's per-cell tables -----------------------------------------------------------------------

    def matrix(self, dataset: str, variant: str, baseline: str, metric: str) -> pd.DataFrame:
        """Seed-level tests of one cross-alpha matrix (relative effects), Holm-corrected across its cells."""
        key = (dataset, variant, baseline, metric)
        if key not in self.matrix_tests:
            rows = cross_alpha_rows(self.images)
            self.matrix_tests[key] = seed_tests(
                rows[rows["dataset"] == dataset],
                ["train_alpha", "test_alpha"],
                [variant],
                baseline,
                metric,
                relative=True,
                n_resamples=self.n_resamples,
                seed=self.seed,
                level=self.level,
            )
        return self.matrix_tests[key]

    def ood(self, baseline: str, metric: str) -> pd.DataFrame:
        """The out-of-domain table of a metric with seed-level tests against the baseline (as in the report)."""
        key = (baseline, metric)
        if key not in self.ood_tables:
            self.ood_tables[key] = ood_table(
                self.images, metric, baseline, n_resamples=self.n_resamples, seed=self.seed, level=self.level
            )
        return self.ood_tables[key]


def _diagonal(cross: pd.DataFrame) -> pd.DataFrame:
    """The in-domain cells (trained alpha == tested alpha) of a per-seed cross-alpha frame, columns train_alpha."""
    keep = [column for column in cross.columns if np.isclose(column[0], column[1])]
    frame = cross[keep]
    frame.columns = [column[0] for column in keep]
    return frame.sort_index(axis=1)

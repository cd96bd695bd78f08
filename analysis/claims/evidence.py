"""The tables a claim is checked on: seed-level scores, per-cell paired tests, the out-of-domain table.

:class:`Evidence` computes each table once per metric and baseline, with the same functions and Holm
families as the report, and takes the ones the report already computed, so a claim's verdict rests on
the same significance as the tables printed beside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.frames import LEVEL_ORDER, cross_alpha_rows
from analysis.statistics.cells import paired_tests
from analysis.tables.ood import ood_table
from analysis.tables.relative import relative_improvement, seed_level_scores


class Evidence:
    """The tables claims are checked on, computed once per metric and baseline.

    Args:
        images: Per-image rows (:func:`analysis.frames.image_scores`).
        n_resamples: Bootstrap resamples of the paired tests it computes itself.
        seed: Bootstrap seed.
        level: Family-wise error rate of the Holm correction.

    Attributes:
        matrix_tests: ``(dataset, variant, baseline, metric) -> paired_tests`` of one cross-alpha matrix
            (the Holm family of the report's matrix); the report fills it with the tests it computed.
        ood_tables: ``(baseline, metric) -> ood_table`` with tests; the report fills it likewise.
    """

    def __init__(self, images: pd.DataFrame, n_resamples: int = 2000, seed: int = 0, level: float = 0.05) -> None:
        self.images, self.n_resamples, self.seed, self.level = images, n_resamples, seed, level
        self.matrix_tests: dict[tuple, pd.DataFrame] = {}
        self.ood_tables: dict[tuple, pd.DataFrame] = {}
        self._scores: dict[str, pd.DataFrame] = {}

    def scores(self, metric: str) -> pd.DataFrame:
        """Seed-level cross-alpha scores (:func:`analysis.tables.relative.seed_level_scores`)."""
        if metric not in self._scores:
            self._scores[metric] = seed_level_scores(self.images, metric)
        return self._scores[metric]

    def synthetic_datasets(self) -> list[str]:
        """Data sets with cross-alpha results."""
        return sorted(cross_alpha_rows(self.images)["dataset"].unique())

    def level_datasets(self) -> list[str]:
        """Data sets with an ``in_domain`` test level."""
        return sorted(self.images.loc[self.images["condition"] == "in_domain", "dataset"].unique())

    def absent(self, dataset: str, variants, levels: bool = False) -> list[str]:
        """The variants with no cross-alpha result (or, with ``levels``, no test-level result) on a data set."""
        rows = self.images[self.images["condition"].isin(LEVEL_ORDER)] if levels else cross_alpha_rows(self.images)
        present = set(rows.loc[rows["dataset"] == dataset, "variant"])
        return [variant for variant in variants if variant not in present]

    def matrix(self, dataset: str, variant: str, baseline: str, metric: str) -> pd.DataFrame:
        """Paired tests of one cross-alpha matrix, Holm-corrected across its cells (as in the report)."""
        key = (dataset, variant, baseline, metric)
        if key not in self.matrix_tests:
            rows = cross_alpha_rows(self.images)
            self.matrix_tests[key] = paired_tests(
                rows[rows["dataset"] == dataset],
                ["train_alpha", "test_alpha"],
                [variant],
                baseline,
                metric,
                n_resamples=self.n_resamples,
                seed=self.seed,
                level=self.level,
            )
        return self.matrix_tests[key]

    def ood(self, baseline: str, metric: str) -> pd.DataFrame:
        """The out-of-domain table of a metric with paired tests against the baseline (as in the report)."""
        key = (baseline, metric)
        if key not in self.ood_tables:
            self.ood_tables[key] = ood_table(
                self.images, metric, baseline, n_resamples=self.n_resamples, seed=self.seed, level=self.level
            )
        return self.ood_tables[key]

    def in_domain_cells(self, dataset: str, variant: str, baseline: str, metric: str, effect: float) -> pd.DataFrame:
        """Per training alpha: mean relative gain over seeds, and whether the in-domain cell differs from the baseline.

        A cell differs when its paired test survives the Holm correction of its matrix and the relative gain is
        at least ``effect`` in size.

        Returns:
            Index ``train_alpha`` (ascending); columns ``gain, p_holm, significant, differs``.
        """
        scores = self.scores(metric)
        relative = relative_improvement(scores[scores["dataset"] == dataset], baseline, metric)
        gain = relative[relative["variant"] == variant].set_index("train_alpha")["mean"]
        tests = self.matrix(dataset, variant, baseline, metric)
        diagonal = tests[np.isclose(tests["train_alpha"], tests["test_alpha"])].set_index("train_alpha")
        cells = pd.DataFrame({"gain": gain}).join(diagonal[["p_holm", "significant"]]).sort_index()
        cells["significant"] = flag(cells["significant"])
        cells["differs"] = cells["significant"] & (cells["gain"].abs() >= effect)
        return cells


def flag(values: pd.Series) -> pd.Series:
    """Booleans with a missing value read as False."""
    return values.astype("boolean").fillna(False).astype(bool)

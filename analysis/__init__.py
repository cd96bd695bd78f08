"""Analysis of a study: MLflow runs -> tidy Parquet -> matrices, tables, figures and one report.

    python -m analysis export --study miccai2023 --out results/miccai2023
    python -m analysis report results/miccai2023

Rooms, in the order data flows through them:

- ``export/``: MLflow -> Parquet (``runs`` reads MLflow, ``tables`` types the tables and refuses runs that
  cannot be compared); ``frames`` (beside the rooms) is the Parquet files and their vocabulary.
- ``statistics/``: ``seeds`` (the trained model as the unit of replication: t on per-seed effects, TOST, the
  crossed bootstrap, the power line), ``cells`` (per-cell tests of a table), ``paired`` (Wilcoxon, Holm).
- ``tables/``: ``relative`` (relative improvement, cross-alpha matrices), ``ood`` (out-of-domain tables,
  robustness ranking), ``levels`` (do the test levels move texture similarity as named).
- ``claims/``: the papers' sentences (``paper``), what a claim and a verdict are (``model``), the per-seed
  evidence (``evidence``), one rule per kind (``checks``), Table 1 cell by cell (``table1``).
- ``report/``: ``report.md`` (``summary``, ``sections``, ``notes``, ``figures``, ``formatting``, ``writer``) and
  ``to_mlflow`` (attach it to MLflow).

Only ``export.runs`` and ``report.to_mlflow`` import MLflow; nothing here imports torch, Ray or ``trainables``
but its two standard-library-only modules, ``schema`` (names) and ``files`` (the atomic write).
"""

"""Analysis of a study: MLflow runs -> tidy Parquet -> matrices, tables, figures and one report.

    python -m analysis export --study miccai2023 --out results/miccai2023
    python -m analysis report results/miccai2023

Modules: ``export`` (MLflow -> Parquet), ``export_runs`` (read a study's runs from MLflow),
``export_tables`` (runs -> typed tables, refusing runs that cannot be compared), ``frames`` (the
Parquet files and their vocabulary), ``tables`` (synthetic relative improvement and cross-alpha
matrices), ``ood`` (out-of-domain tables, robustness ranking), ``stats`` (Wilcoxon, bootstrap,
Holm), ``formatting`` (Markdown, LaTeX, CSV), ``figures``, ``evidence`` (the tables a claim is
checked on, computed once), ``claims`` (the paper's claims and the verdict table), ``claim_checks``
(one check and rule per kind of claim), ``levels`` (do the test levels move texture similarity as
named), ``report_notes`` (the report's claims, test-level and methods sections), ``report``
(report.md) and ``mlflow_report`` (attach it to MLflow). Only ``export_runs`` and ``mlflow_report``
import MLflow; nothing here imports torch, Ray or ``trainables``.
"""

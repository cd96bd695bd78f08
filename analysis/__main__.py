"""Command line of the analysis: export a study from MLflow, then build its report offline.

    python -m analysis export --study miccai2023 [--tracking-uri URI] --out results/miccai2023
    python -m analysis report results/miccai2023 [--baseline noskip_unet] [--log-to-mlflow --tracking-uri URI]

The tracking URI is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.
Exit status: 0 on success, 2 on bad input (unknown study, refused runs, missing export, an export
whose files do not belong together, a folder another export or report is writing into), with a
one-line ``error: ...`` on stderr; 130 on Ctrl-C and 143 on SIGTERM, with one ``interrupted: ...``
line. Warnings (runs left out, NaN cells) go to stderr as ``warning: ...``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import FrameType


class _Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that files being written are cleaned up."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="pull a study's MLflow runs into Parquet files")
    export.add_argument("--study", required=True, help="study name (its MLflow experiment)")
    export.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    export.add_argument("--out", required=True, help="output folder, e.g. results/miccai2023")
    export.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs with this sweep value, e.g. training.learning_rate=0.001 (repeatable): one slice of a sweep",
    )
    export.add_argument(
        "--no-pictures", action="store_true", help="keep no predictions.png (an export to publish without images)"
    )
    report = commands.add_parser("report", help="tables, figures and report.md from an export folder")
    report.add_argument("export_dir", help="folder written by `export`")
    report.add_argument("--baseline", default="noskip_unet", help="variant the others are compared with")
    report.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per table cell")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    report.add_argument("--log-to-mlflow", action="store_true", help="attach the report to the study's report run")
    report.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (with --log-to-mlflow)")
    return parser


def _export(args: argparse.Namespace) -> None:
    from analysis.export import export_study

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            print(f"read {done}/{total} runs", file=sys.stderr)

    where = dict(_sweep_value(item) for item in args.where)
    result = export_study(
        args.study,
        args.out,
        tracking_uri=args.tracking_uri,
        progress=progress,
        where=where,
        pictures=not args.no_pictures,
    )
    print(f"exported {result.n_runs} runs of {args.study} to {result.out_dir} ({len(result.excluded)} left out)")


def _sweep_value(item: str) -> tuple[str, object]:
    """``training.learning_rate=0.001`` -> (key, value), the value read as YAML (a number, a list)."""
    import yaml

    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--where {item}: expected KEY=VALUE, e.g. training.learning_rate=0.001")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"--where {item}: the value is not YAML") from None


def _check_report_args(args: argparse.Namespace) -> None:
    """Refuse what would fail halfway through the report: too few resamples, a bad seed, a broken ``export.json``."""
    from analysis.frames import MANIFEST_FILE, read_manifest

    if args.resamples < 1:
        raise ValueError(f"--resamples: must be at least 1, got {args.resamples}")
    if args.seed < 0:
        raise ValueError(f"--seed: must be >= 0, got {args.seed}")
    if (Path(args.export_dir) / MANIFEST_FILE).is_file():
        read_manifest(args.export_dir)


def _report(args: argparse.Namespace) -> None:
    from analysis.frames import load_export
    from analysis.report import build_report

    _check_report_args(args)
    result = build_report(args.export_dir, baseline=args.baseline, n_resamples=args.resamples, seed=args.seed)
    print(f"wrote {result.report} ({len(result.figures)} figure files, {len(result.tables)} table files)")
    if args.log_to_mlflow:
        from analysis.report.to_mlflow import log_report

        study = load_export(args.export_dir).study
        if not study:
            raise ValueError(f"{args.export_dir}/export.json names no study; export it again")
        run_id = log_report(args.export_dir, study, tracking_uri=args.tracking_uri, baseline=args.baseline)
        print(f"logged the report to MLflow run {run_id} of {study}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the analysis command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 on bad input, 130 on Ctrl-C, 143 on SIGTERM.
    """
    args = _parser().parse_args(argv)
    folder = args.out if args.command == "export" else args.export_dir
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set a signal handler
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return _run(args)
    except (KeyboardInterrupt, _Terminated) as stop:
        if args.command == "export":
            left = f"the export into {folder} did not finish; run it again (report refuses a half-written export)"
        else:
            left = f"the report in {folder} did not finish; run it again (its files move in only once all are built)"
        print(f"interrupted: {left}", file=sys.stderr)
        return 143 if isinstance(stop, _Terminated) else 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signum)


def _run(args: argparse.Namespace) -> int:
    from analysis.frames import ExcludedRunsWarning, MissingDataWarning, UnverifiedExportWarning  # loads pandas

    ours = (ExcludedRunsWarning, MissingDataWarning, UnverifiedExportWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if args.command == "export":
                _export(args)
            else:
                _report(args)
            status = 0
        except (ValueError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            status = 2
    printed = set()
    for warning in caught:
        if not issubclass(warning.category, ours):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        elif str(warning.message) not in printed:
            printed.add(str(warning.message))
            print(f"warning: {warning.message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())

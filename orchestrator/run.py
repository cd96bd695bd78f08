"""Run a study as a Ray Tune sweep: the product's main command.

    python -m orchestrator.run                                  # conf/quick.yaml on a local Ray cluster
    python -m orchestrator.run --config conf/miccai2023.yaml --dry-run
    RAY_AUTH_MODE=token ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m orchestrator.run --config conf/miccai2023.yaml --tracking-uri http://MLFLOW:5000

A bad study file, an address nothing answers at or trials larger than every node are
refused (exit status 2) with one line. Finished trials (found by key in MLflow) are never
scheduled again; unfinished ones resume from their last state. Exit status 1 if any trial
finally failed; 74 when a disk the study writes to is full (one line naming it and its free
space; free space, then the same command resumes); 130 / 143 after Ctrl-C / SIGTERM (runs
marked KILLED, the same command resumes).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable

from orchestrator import interrupts
from orchestrator.expand import expand, given_forecast, implausible_estimate, trial_table
from orchestrator.forecast import forecast_text, parse_cluster
from trainables.config import VARIANTS, StudyConfigError, load_study
from trainables.datasets.registry import check_data
from trainables.schema import resolve_tracking_uri

DEFAULT_STUDY = "conf/quick.yaml"


def _epoch_seconds(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    pairs = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            raise StudyConfigError(f"--epoch-seconds: '{item}' is not VARIANT=SECONDS") from None
        if name.strip() not in VARIANTS:
            raise StudyConfigError(f"--epoch-seconds: '{name.strip()}' is not a variant; known: {', '.join(VARIANTS)}")
        if not 0 < seconds < float("inf"):  # also refuses nan
            raise StudyConfigError(f"--epoch-seconds: {name.strip()}: {value} is not a positive, finite number")
        pairs[name.strip()] = seconds
    return pairs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.run", description="Run a skipsweep study.")
    parser.add_argument("--config", default=DEFAULT_STUDY, help=f"study file (default: {DEFAULT_STUDY})")
    parser.add_argument("--dry-run", action="store_true", help="print the trial table and exit")
    parser.add_argument(
        "--tracking-uri", help="MLflow URI (default: study file, $MLFLOW_TRACKING_URI, sqlite:///mlflow.db)"
    )
    parser.add_argument("--storage", help="Ray Tune storage path (default: the study's storage.results)")
    parser.add_argument("--cache", help="prepared-data cache folder (default: the study's storage.cache)")
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else start a local cluster)")
    parser.add_argument("--epoch-seconds", help="for --dry-run estimates: VARIANT=SECONDS,... per epoch")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="with --dry-run: time each kind of trial on the cluster (a few steps each), forecast the study's wall "
        "time and device-hours, and save the forecast for the run's report",
    )
    parser.add_argument(
        "--cluster",
        help="with --calibrate or --epoch-seconds: forecast for this cluster instead of the connected one, "
        "e.g. '8 GPUs, 32 CPUs' or '4 x (8 GPUs, 32 CPUs); 2 x 64 CPUs'",
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=5, help="hand Tune a checkpoint every N epochs (default 5)"
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="run the study's tuning stage (its tune: section) and write <config>_tuned.yaml with the values pinned",
    )
    parser.add_argument("--verbose", action="store_true", help="Ray Tune's own tables and the trials' logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, after_epoch: Callable | None = None) -> int:
    """Validate, expand, skip finished trials, run the rest on Ray, summarise; the exit status.

    ``after_epoch`` is called in each trial's worker after every epoch, once Tune has it
    (``orchestrator.sweep.run_sweep``): e.g. a fault injected by a test. It must be picklable.
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # other libraries: warnings only
    for ours in ("orchestrator", "trainables"):  # (torch logs its cache statistics at INFO when Python exits)
        logging.getLogger(ours).setLevel(logging.INFO)
    if not args.dry_run or args.calibrate:  # MLflow and the rest of a real run, before arming: a stop mid-import
        from orchestrator import calibrate, driver, tuning  # noqa: F401 (would leave them unusable; tuning: --tune)
    previous_handlers = interrupts.arm()  # from here on, a stop signal ends in one line, whatever the phase
    started_ms = int(time.time() * 1000)
    study = uri = None
    try:
        study = load_study(args.config, keep_unset=args.dry_run)  # a dry run reads no data: it names what is absent
        unchecked = []
        if args.dry_run:  # a real run checks the data folders and textures in preflight
            unchecked = check_data(study, args.config, absent_ok=True)
        seconds = _epoch_seconds(args.epoch_seconds)
        if args.checkpoint_every < 1:
            raise StudyConfigError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
        _check_forecast_flags(args, seconds)
        if args.tune:
            from orchestrator import tuning

            tuning.check_tunable(study, args.config)
            if args.dry_run:
                print(tuning.tuning_plan(study))
                return 0
            uri = resolve_tracking_uri(args.tracking_uri or study.tracking.uri)
            return tuning.run_tuning_stage(args, study, uri)
        specs = expand(study)
        if args.dry_run:
            print(trial_table(specs, study, seconds))
            implausible = implausible_estimate(specs, study, seconds)
            for warning in [*unchecked, *([implausible] if implausible else [])]:
                print(f"warning: {warning}", file=sys.stderr)
            if args.calibrate:
                return _calibrated(args, study, specs)
            if args.cluster:
                print(forecast_text(given_forecast(study, specs, seconds, parse_cluster(args.cluster))))
            return 0
        uri = resolve_tracking_uri(args.tracking_uri or study.tracking.uri)

        return driver.run_study(args, study, specs, uri, after_epoch)
    except StudyConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # ours, or Ray's in its place when the signal landed inside a Ray wait
        return _stopped(interrupts.as_interrupted(stop), study, uri, started_ms, argv)
    finally:
        interrupts.restore(previous_handlers)


def _check_forecast_flags(args: argparse.Namespace, seconds: dict[str, float]) -> None:
    """``--calibrate`` and ``--cluster`` only where they mean something; a bad ``--cluster`` before any work."""
    if args.calibrate and not args.dry_run:
        raise StudyConfigError("--calibrate goes with --dry-run (it forecasts a study instead of running it)")
    if args.calibrate and args.tune:
        raise StudyConfigError("--calibrate forecasts the study's grid, not its tuning stage: leave out --tune")
    if args.cluster and not (args.calibrate or seconds):
        raise StudyConfigError("--cluster needs --calibrate (measured trial costs) or --epoch-seconds")
    if args.cluster:
        parse_cluster(args.cluster)


def _calibrated(args: argparse.Namespace, study, specs: list) -> int:
    """``--dry-run --calibrate``: measure, forecast, print, say where the forecast is kept."""
    from orchestrator.calibrate import calibrate

    result, path = calibrate(args, study, specs, resolve_tracking_uri(args.tracking_uri or study.tracking.uri))
    if result is None:
        print(f"[{study.study}] every trial has finished in MLflow: nothing to forecast")
        return 0
    print(forecast_text(result))
    where = f"saved: {path} (the run's report sets it against what the run took)" if path else "not saved"
    print(f"  {where}")
    return 0


def _stopped(stop: interrupts.Interrupted, study, uri: str | None, started_ms: int, argv: list[str] | None) -> int:
    """After SIGINT/SIGTERM: the unfinished runs marked KILLED (once a store was named), one line on how to resume."""
    killed: list[str] = []
    if study is not None and uri is not None:
        from orchestrator.driver import mark_stopped

        killed = mark_stopped(stop, study, uri, started_ms)
    name = study.study if study is not None else "orchestrator"
    print(
        f"[{name}] stopped by {stop.name}; {len(killed)} run(s) marked KILLED, finished trials kept;"
        f" resume with: {interrupts.resume_command(argv)}",
        file=sys.stderr,
        flush=True,
    )
    return stop.exit_status


def _exit_after_a_stop(status: int) -> None:
    """End a stopped run without the interpreter's teardown: the record and the resume line are already out.

    Seen once in CI (a SIGINT 10 s into a sweep): the resume line printed, then SIGSEGV as Python
    tore Ray's core worker down at exit. Ray is already shut down, the runs already marked KILLED.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    status = main()
    if status in interrupts.STOP_STATUSES:
        _exit_after_a_stop(status)
    raise SystemExit(status)

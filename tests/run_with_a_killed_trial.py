"""The main command with one trial SIGKILLed once, mid-way: the tests of a trial that resumes after a hard kill.

    python tests/run_with_a_killed_trial.py --kill-at-epoch 1 --kill-marker /tmp/killed -- --config study.yaml ...

Everything after ``--`` goes to ``orchestrator.run.main``. The first trial that has
reported epoch ``--kill-at-epoch`` to Tune (its checkpoint included) SIGKILLs its own
worker, as an out-of-memory killer or a lost node would; creating ``--kill-marker``
exclusively makes that happen once in the whole sweep, and tells the test it happened.
Tune retries the trial, which must resume without losing or logging an epoch twice.
With ``--truncate-state`` the trial first cuts its own ``state.pt`` short (a crash mid-write on a
network file system): the retry must set it aside and resume from Tune's checkpoint.

The kill is the main command's ``after_epoch`` hook, which the sweep calls in the trial's
worker once Tune has the epoch. This file is the driver's ``__main__``, and Ray sends
functions of ``__main__`` to the workers by value (cloudpickle).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from pathlib import Path


def kill_once(marker: str, truncate: Path | None = None) -> None:
    """SIGKILL this process (cutting ``truncate`` to 100 bytes first) unless another one already created ``marker``."""
    try:
        with open(marker, "x") as handle:  # exclusive create: only the first trial to get here dies
            handle.write(str(os.getpid()))
    except FileExistsError:
        return
    if truncate is not None:
        truncate.write_bytes(truncate.read_bytes()[:100])
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_epoch(epoch: int, marker: str, truncate_state: bool, report) -> None:
    """The sweep's ``after_epoch`` hook: kill the trial (once per sweep) right after it reported ``epoch``."""
    if report.epoch == epoch:
        kill_once(marker, report.checkpoint_dir / "state.pt" if truncate_state else None)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python tests/run_with_a_killed_trial.py")
    parser.add_argument("--kill-at-epoch", type=int, required=True, help="kill the trial after reporting this epoch")
    parser.add_argument("--kill-marker", required=True, help="file created by the one trial that is killed")
    parser.add_argument("--truncate-state", action="store_true", help="cut the killed trial's state.pt short first")
    parser.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then the arguments of orchestrator.run")
    args = parser.parse_args(argv)
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args

    from orchestrator.run import main as run_main

    hook = functools.partial(kill_after_epoch, args.kill_at_epoch, args.kill_marker, args.truncate_state)
    return run_main(run_args, after_epoch=hook)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

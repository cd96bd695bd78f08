"""The main command with one trial SIGKILLed once, mid-way: the tests of a trial that resumes after a hard kill.

    python tests/run_with_a_killed_trial.py --kill-at-epoch 1 --kill-marker /tmp/killed -- --config study.yaml ...

Everything after ``--`` goes to ``orchestrator.run.main``. The first trial that has
reported epoch ``--kill-at-epoch`` to Tune (its checkpoint included) SIGKILLs its own
worker, as an out-of-memory killer or a lost node would; creating ``--kill-marker``
exclusively makes that happen once in the whole sweep, and tells the test it happened.
Tune retries the trial, which must resume without losing or logging an epoch twice.
With ``--truncate-state`` the trial first cuts its own ``state.pt`` short (a crash mid-write on a
network file system): the retry must set it aside and resume from Tune's checkpoint.

The hook wraps the product's trainable from outside, so no test machinery ships in
``orchestrator``: this file is the driver's ``__main__``, and Ray sends a function of
``__main__`` to the workers by value (cloudpickle), closure and all. The wrapper must
keep a name and module of its own: one that named ``orchestrator.sweep._trainable``
would be sent by reference and the workers would run the unwrapped original.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
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


def killing_trainable(
    trainable: Callable[..., None], epoch: int, marker: str, truncate_state: bool = False
) -> Callable[..., None]:
    """``trainable`` with its trial killed (once per sweep) right after it reported ``epoch``."""

    def _trainable(settings: dict, **parameters) -> None:  # runs in a Ray worker; parameters: tune.with_parameters
        import trainables.trial as trial

        run_trial = trial.run_trial

        def run_trial_killed_at_epoch(*args, on_epoch, **kwargs):
            def report(done) -> None:
                on_epoch(done)  # the sweep's own report: tune.report, with the checkpoint
                if done.epoch == epoch:
                    kill_once(marker, done.checkpoint_dir / "state.pt" if truncate_state else None)

            return run_trial(*args, on_epoch=report, **kwargs)

        trial.run_trial = run_trial_killed_at_epoch  # the trainable imports it when it is called
        try:
            trainable(settings, **parameters)
        finally:
            trial.run_trial = run_trial

    return _trainable


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python tests/run_with_a_killed_trial.py")
    parser.add_argument("--kill-at-epoch", type=int, required=True, help="kill the trial after reporting this epoch")
    parser.add_argument("--kill-marker", required=True, help="file created by the one trial that is killed")
    parser.add_argument("--truncate-state", action="store_true", help="cut the killed trial's state.pt short first")
    parser.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then the arguments of orchestrator.run")
    args = parser.parse_args(argv)
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args

    import orchestrator.sweep as sweep
    from orchestrator.run import main as run_main

    sweep._trainable = killing_trainable(sweep._trainable, args.kill_at_epoch, args.kill_marker, args.truncate_state)
    return run_main(run_args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

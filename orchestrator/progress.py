"""Compact progress of a sweep, one line at a time: reads well in ``ray job logs -f``."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from ray.tune import Callback

from trainables.spec import TrialSpec


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressPrinter(Callback):
    """Prints trials done / running / pending / failed, the best val Dice per variant and the time left.

    Args:
        study: study name, the prefix of every line.
        variants: the variant of each scheduled trial.
        started: ``time.monotonic()`` when the sweep started.
        every: seconds between two status lines (a trial finishing or failing prints at once).
    """

    def __init__(self, study: str, variants: list[str], started: float, every: float = 30.0, stream=None) -> None:
        self.study = study
        self.total = len(variants)
        self.started = started
        self.every = every
        self.stream = stream or sys.stdout
        self.best: dict[str, float] = {}
        self.states: dict[str, str] = {}
        self.epochs_done: Counter[str] = Counter()
        self.last_print = 0.0
        self.last_line = ""

    def _count(self, state: str) -> int:
        return sum(1 for value in self.states.values() if value == state)

    def line(self) -> str:
        done, failed, running = self._count("done"), self._count("failed"), self._count("running")
        pending = self.total - done - failed - running
        elapsed = time.monotonic() - self.started
        left = "?"
        if done:
            left = _duration(elapsed / done * (self.total - done - failed))
        best = ", ".join(f"{variant} {dice:.3f}" for variant, dice in sorted(self.best.items())) or "-"
        return (
            f"[{self.study}] {done}/{self.total} done, {running} running, {pending} pending, {failed} failed"
            f" | best val Dice: {best} | elapsed {_duration(elapsed)}, ~{left} left"
        )

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        line = self.line()
        if line != self.last_line and (force or now - self.last_print >= self.every):
            print(line, file=self.stream, flush=True)
            self.last_print, self.last_line = now, line

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.states[trial.trial_id] = "running"
        self._emit()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        variant = result.get("variant")
        dice = result.get("best_val_dice")
        if variant is not None and dice is not None and dice >= 0:
            self.best[variant] = max(self.best.get(variant, -1.0), float(dice))
        self._emit()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.states[trial.trial_id] = "done"
        self._emit(force=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        print(f"[{self.study}] {_name(trial)} failed{_reason(trial)}; no retries left", file=self.stream, flush=True)
        self.states[trial.trial_id] = "failed"
        self._emit(force=True)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        print(
            f"[{self.study}] {_name(trial)} failed{_reason(trial)}; retrying from its last checkpoint",
            file=self.stream,
            flush=True,
        )
        self.states[trial.trial_id] = "running"

    def final(self) -> None:
        self._emit(force=True)


def _name(trial) -> str:
    """The trial's run name (``unet/synthetic/a0.50/s0``), as in MLflow; Tune's id if its key is unreadable."""
    try:
        return TrialSpec(**trial.config["trial"]).run_name
    except (KeyError, TypeError):
        return f"trial {trial.trial_id}"


def _reason(trial) -> str:
    """``: <the error's last line>`` from the traceback Tune kept for the trial (the whole one is in MLflow)."""
    try:
        lines = Path(trial.error_file).read_text().strip().splitlines()
    except (OSError, TypeError):
        return ""
    return f": {lines[-1][:300]}" if lines else ""

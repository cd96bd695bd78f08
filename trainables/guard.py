"""Keep a trial's record whole: one owner at a time, and a corrupt saved state set aside instead of retried forever.

- ``OwnedLock``: an OS file lock (``fcntl`` through ``filelock``) plus a JSON file naming
  the holder (host, pid, since). The kernel drops the lock when its holder dies, even by
  SIGKILL, so a lock is never stale; a second holder fails at once with ``LockBusyError``
  naming the first. The driver holds one per study, each trial one on its work folder.
- ``set_aside_corrupt_state``: a ``state.pt`` that does not load (truncated by a crash
  mid-write on a network file system, empty after a full disk) is renamed
  ``state.pt.corrupt-<UTC time>`` so the trial resumes from an older checkpoint or starts
  again from epoch 0, and the run says so in its ``skipsweep.state_recovered`` tag.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import filelock
import torch

from trainables.files import write_text_atomic
from trainables.schema import STATE_RECOVERED_TAG

log = logging.getLogger(__name__)

TRIAL_LOCK = "trial.lock"
TRIAL_OWNER = "trial.owner.json"
STATE_KEYS = ("model", "best_model", "optimizer", "generator", "next_epoch", "best_val_dice", "best_epoch", "history")


def owner_record(**extra: str) -> dict[str, object]:
    """Who this process is: host, pid and start time (UTC, ISO 8601), plus ``extra`` fields."""
    since = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": since, **extra}


def describe_owner(owner: dict | None) -> str:
    """``pid 12 on host h since 2026-01-01T00:00:00Z`` (or that the holder is not known yet)."""
    if not owner:
        return "another process (it has not written its name yet)"
    return f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')} since {owner.get('since', '?')}"


class LockBusyError(RuntimeError):
    """Someone else holds the lock; ``owner`` is what they wrote about themselves (None if nothing yet)."""

    def __init__(self, lock_path: Path, owner: dict | None) -> None:
        super().__init__(f"{lock_path}: held by {describe_owner(owner)}")
        self.lock_path = lock_path
        self.owner = owner


class OwnedLock:
    """An exclusive, non-blocking OS file lock with an owner file beside it.

    Args:
        lock_path: the lock file (kept on disk: deleting a lock file another process has open would split the lock).
        owner_path: JSON written by the holder while it holds the lock, removed on release.
    """

    def __init__(self, lock_path: Path, owner_path: Path) -> None:
        self.lock_path = Path(lock_path)
        self.owner_path = Path(owner_path)
        self._lock = filelock.FileLock(str(self.lock_path))

    def acquire(self, **extra: str) -> dict | None:
        """Take the lock or raise ``LockBusyError`` at once; return the record a dead holder left, if any."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(blocking=False)
        except filelock.Timeout:
            raise LockBusyError(self.lock_path, read_owner(self.owner_path)) from None
        previous = read_owner(self.owner_path)  # still there: its holder died without releasing
        write_text_atomic(self.owner_path, json.dumps(owner_record(**extra)))
        return previous

    def release(self) -> None:
        """Remove the owner file and drop the lock (a no-op when not held)."""
        if self._lock.is_locked:
            self.owner_path.unlink(missing_ok=True)
            self._lock.release(force=True)


def read_owner(path: Path) -> dict | None:
    """The owner record at ``path``; None when absent or half-written."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class TrialBusyError(RuntimeError):
    """Another process already runs this trial; this one must not log anything."""


@contextmanager
def hold_trial(work_dir: Path, run_name: str):
    """Own the trial's work folder for the block: a second process running the same trial fails fast.

    Raises:
        TrialBusyError: naming the process that holds the trial, before anything is logged.
    """
    lock = OwnedLock(Path(work_dir) / TRIAL_LOCK, Path(work_dir) / TRIAL_OWNER)
    try:
        previous = lock.acquire(trial=run_name)
    except LockBusyError as busy:
        raise TrialBusyError(
            f"{run_name}: already running in {describe_owner(busy.owner)} ({busy.lock_path}); "
            "this duplicate stops before logging anything"
        ) from None
    if previous is not None:
        log.warning("%s: taking over from an attempt that died (%s)", run_name, describe_owner(previous))
    try:
        yield
    finally:
        lock.release()


def set_aside_corrupt_state(path: str | Path, keep_in: str | Path | None = None) -> dict[str, str]:
    """Check a saved trial state; move it aside when it does not load.

    Args:
        path: the ``state.pt`` to check.
        keep_in: folder for the bad file (default: beside it, as ``state.pt.corrupt-<UTC time>``); elsewhere it is
            named ``<folder of path>.state.pt.corrupt-<UTC time>``, so it outlives a work folder that is removed.

    Returns:
        ``{STATE_RECOVERED_TAG: reason}`` when the file was corrupt and moved; ``{}`` when it is absent or loads.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        missing = [key for key in STATE_KEYS if key not in payload] if isinstance(payload, dict) else ["everything"]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
    except PermissionError:
        raise
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        if keep_in is not None:
            aside = Path(keep_in) / f"{path.parent.name}.{aside.name}"
        os.replace(path, aside)
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        reason = f"{path.name} did not load ({type(error).__name__}: {first_line}); kept as {aside}"
        log.warning("%s: %s; resuming from an older checkpoint if there is one, else from epoch 0", path, reason)
        return {STATE_RECOVERED_TAG: reason}
    return {}

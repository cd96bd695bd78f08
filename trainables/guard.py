"""Keep a trial's record whole: one owner at a time (torch-free).

- ``OwnedLock``: an OS file lock (``fcntl`` through ``filelock``) plus a JSON file naming
  the holder (host, pid, since). The kernel drops the lock when its holder dies, even by
  SIGKILL, so a lock is never stale; a second holder fails at once with ``LockBusyError``
  naming the first. The driver holds one per study, each trial one on its work folder.

The check of a saved ``state.pt`` lives in :mod:`trainables.state` (it needs torch; this module does not, so
the driver can take its study lock without loading torch).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import filelock

from trainables.files import write_text_atomic

log = logging.getLogger(__name__)

TRIAL_LOCK = "trial.lock"
TRIAL_OWNER = "trial.owner.json"
DRIVER_LOCK = "driver.lock"  # under <storage>/<study>/: one driver per study (orchestrator.ownership)
DRIVER_OWNER = "driver.json"


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


def lock_held(lock_path: Path) -> bool:
    """Another process holds the ``OwnedLock`` at ``lock_path`` now; creates nothing (no file, no folder)."""
    try:
        handle = os.open(lock_path, os.O_RDONLY)
    except OSError:  # no lock file: nobody has ever held it here
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
    finally:
        os.close(handle)


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

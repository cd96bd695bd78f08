"""One driver per study: a second ``python -m orchestrator.run`` on the same study is refused, naming the first.

Two layers, both taken before the driver touches a trial:

1. Storage lock (``--storage`` is a folder, local or shared): an OS file lock on
   ``<storage>/<study>/driver.lock`` with ``driver.json`` (host, pid, since) beside it.
   Taken before the driver creates the MLflow store or experiment, so two drivers can
   neither race on a fresh store's schema nor train the same trials. The kernel drops
   the lock when the driver dies, even by SIGKILL: a new driver takes over at once.
   On NFS this relies on the server's lock manager (NFSv4, or v3 with ``lockd``).
2. MLflow lease (always): the experiment tag ``skipsweep.driver`` names the owner and
   an expiry that a heartbeat thread pushes forward every ``ttl / 4`` seconds. It covers
   what a folder lock cannot: storage given as a URI (``s3://...``) and two drivers that
   share one tracking store through different storage folders. A driver refused by the
   lease is told when it expires. A lease left by a SIGKILLed driver is taken over when
   it has expired, or at once by a driver holding the storage lock of the same storage
   (the lock proves the old owner is gone). MLflow has no compare-and-set, so the lease
   is claimed by writing it, waiting ``settle`` seconds and reading it back: of drivers
   that start together the last writer wins and the others stop. This holds unless one
   MLflow call stalls for longer than ``settle``; the storage lock has no such window.

The driver's first store work (open it, create or migrate its schema, create the
experiment) happens here, after the storage lock and inside the retry policy: a store
another process holds locked is waited for, and one MLflow cannot use is refused.

The lease is held like an open file: ``with claim_study(...):`` releases it at the end of
the block, whatever ends it.

Each trial also holds a lock on its work folder (``trainables.guard.hold_trial``), so a
duplicate trial can never log, whatever happens to the driver.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator import interrupts
from trainables.config import StudyConfigError
from trainables.guard import DRIVER_LOCK, DRIVER_OWNER, LockBusyError, OwnedLock, describe_owner, owner_record
from trainables.schema import LEASE_TAG
from trainables.tracking import (
    DEFAULT_RETRY_POLICY,
    ForeignExperimentError,
    RetryPolicy,
    explain_unusable,
    open_experiment,
    with_retries,
)

log = logging.getLogger(__name__)

LEASE_SECONDS = 120.0  # a SIGKILLed driver's lease blocks others (without the storage lock) at most this long
SETTLE_SECONDS = 1.0
T = TypeVar("T")


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class StudyLease:
    """What one driver holds for one study: the storage lock (for a folder) and the MLflow lease."""

    def __init__(
        self,
        study: str,
        storage: str,
        tracking_uri: str,
        experiment: str,
        ttl: float,
        settle: float,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        ui_tags: Mapping[str, str] | None = None,
    ) -> None:
        self.study, self.storage, self.experiment, self.ui_tags = study, storage, experiment, ui_tags
        self.tracking_uri = tracking_uri
        self.client: MlflowClient | None = None  # opened in claim(), under the storage lock
        self.ttl, self.settle = ttl, settle
        self.retry_policy = retry_policy
        self.token = uuid.uuid4().hex
        self.owner = owner_record(storage=storage, token=self.token)
        folder = None if "://" in storage else Path(storage) / study
        self.lock = None if folder is None else OwnedLock(folder / DRIVER_LOCK, folder / DRIVER_OWNER)
        self.experiment_id: str | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def claim(self) -> None:
        """Take the storage lock, then the MLflow lease; raise ``StudyConfigError`` naming the owner if taken."""
        if self.lock is not None:
            try:
                dead = self.lock.acquire(study=self.study)
            except LockBusyError as busy:
                raise StudyConfigError(_refusal(str(busy.lock_path), self.study, busy.owner)) from None
            if dead is not None:
                log.warning("[%s] taking over from a driver that died: %s", self.study, describe_owner(dead))
        try:
            experiment_id = self._open_store()
            self.client = MlflowClient(self.tracking_uri)
            self.experiment_id = experiment_id
            self._claim_lease()
        except BaseException:
            self.release()
            raise
        self._heartbeat = threading.Thread(target=self._beat, name=f"lease-{self.study}", daemon=True)
        interrupts.start_quiet(self._heartbeat)  # a stop signal never lands in it

    def __enter__(self) -> StudyLease:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _open_store(self) -> str:
        """Open (and if new, create) the store and the experiment; a store that stays unusable is one line."""
        try:
            opening = functools.partial(open_experiment, self.tracking_uri, self.experiment, self.ui_tags)
            return self._retry(opening, "open the store")
        except ForeignExperimentError as error:
            raise StudyConfigError(str(error)) from None
        except (MlflowException, OSError) as error:  # the retry budget is spent
            explain_unusable(self.tracking_uri)  # an older schema, another program's database: say which
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise StudyConfigError(
                f"tracking URI {self.tracking_uri}: the store did not answer within "
                f"{self.retry_policy.budget_seconds:.0f} s of retries ({first})"
            ) from None

    def _retry(self, call: Callable[[], T], what: str) -> T:
        return with_retries(call, what, self.retry_policy)

    def _read_lease(self) -> dict | None:
        experiment = self._retry(lambda: self.client.get_experiment(self.experiment_id), "read lease")
        try:
            lease = json.loads(experiment.tags.get(LEASE_TAG, "null"))
        except ValueError:
            return None
        return lease if isinstance(lease, dict) else None

    def _write_lease(self) -> None:
        lease = json.dumps({**self.owner, "expires": time.time() + self.ttl})
        self._retry(lambda: self.client.set_experiment_tag(self.experiment_id, LEASE_TAG, lease), "write lease")

    def _claim_lease(self) -> None:
        where = f"{self.tracking_uri} (experiment {self.experiment})"
        current = self._read_lease()
        if current is not None and not self._may_take(current):
            raise StudyConfigError(_refusal(where, self.study, current, until=current.get("expires")))
        if current is not None:
            log.warning("[%s] taking over the lease of a driver that stopped: %s", self.study, describe_owner(current))
        self._write_lease()
        time.sleep(self.settle)  # a driver that read the lease before our write has written its own by now
        winner = self._read_lease()
        if winner is None or winner.get("token") != self.token:
            raise StudyConfigError(_refusal(where, self.study, winner))

    def _may_take(self, lease: dict) -> bool:
        if lease.get("token") == self.token:
            return True
        if float(lease.get("expires", 0)) < time.time():
            return True
        return self.lock is not None and lease.get("storage") == self.storage  # its storage lock is ours now

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                current = self._read_lease()
                if current is not None and current.get("token") != self.token:
                    log.error("[%s] the study's lease was taken by %s", self.study, describe_owner(current))
                    return
                self._write_lease()
            except Exception as error:  # the store is down for longer than the retry budget: try again next beat
                log.warning("[%s] could not renew the study's lease: %s", self.study, error)

    def release(self) -> None:
        """Give the lease and the lock back (both also lapse by themselves if this process dies)."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        try:
            if self.experiment_id is not None and (self._read_lease() or {}).get("token") == self.token:
                self.client.delete_experiment_tag(self.experiment_id, LEASE_TAG)
        except Exception as error:  # it expires by itself
            log.warning("[%s] could not clear the study's lease: %s", self.study, error)
        finally:
            if self.lock is not None:
                self.lock.release()


def _refusal(where: str, study: str, owner: dict | None, until: float | None = None) -> str:
    expiry = f"; its lease expires at {_utc(float(until))} unless it is renewed" if until else ""
    return (
        f"{where}: study '{study}' is already being run by {describe_owner(owner)}{expiry}; "
        "wait for that driver to finish, or stop it and run this command again"
    )


def claim_study(
    study: str,
    storage: str,
    tracking_uri: str,
    experiment: str,
    ttl: float = LEASE_SECONDS,
    settle: float = SETTLE_SECONDS,
    retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    ui_tags: Mapping[str, str] | None = None,
) -> StudyLease:
    """Make this process the study's only driver until ``release()``, or the end of its ``with`` block.

    Args:
        study: the study's name (its folder under ``storage``).
        storage: absolute Ray Tune storage path or URI.
        tracking_uri: the MLflow store; it is opened and its experiment created here, after the storage lock.
        experiment: the study's experiment name.
        ttl: seconds a lease lives without a heartbeat.
        settle: seconds between writing the lease and reading it back.
        retry_policy: how long each MLflow call keeps trying (the study's ``tracking.retries`` / ``retry_wait``).
        ui_tags: experiment tags for MLflow's UI, the description and the study's view (set each time a driver
            opens it).

    Returns:
        The lease, held (``with claim_study(...):`` gives it back at the end of the block).

    Raises:
        StudyConfigError: another driver owns the study (one line naming it: host, pid, since when), or the
            store cannot be used (not an MLflow store, an older schema, no answer within the retries).
    """
    lease = StudyLease(study, storage, tracking_uri, experiment, ttl, settle, retry_policy, ui_tags)
    lease.claim()
    return lease

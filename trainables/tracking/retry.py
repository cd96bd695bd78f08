"""How long a tracking call keeps trying: the retry policy and ``with_retries``, which every MLflow call goes through.

Every call takes its ``RetryPolicy`` from its caller (the study's ``tracking.retries`` and
``tracking.retry_wait``); nothing here is a module-level setting, and nothing is set at import.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mlflow.exceptions import MlflowException

from trainables.config import TrackingConfig

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long a tracking call keeps trying: ``attempts`` tries, waits doubling from ``first_wait`` to ``max_wait``."""

    attempts: int = 8
    first_wait: float = 0.5
    max_wait: float = 30.0

    @classmethod
    def from_config(cls, tracking: TrackingConfig) -> RetryPolicy:
        """The policy a study file asks for: ``tracking.retries`` attempts, waits from ``tracking.retry_wait``."""
        return cls(tracking.retries, tracking.retry_wait)

    @property
    def budget_seconds(self) -> float:
        """Total time spent waiting before the last attempt."""
        return sum(min(self.first_wait * 2**i, self.max_wait) for i in range(self.attempts - 1))


DEFAULT_RETRY_POLICY = RetryPolicy()  # the study file's defaults (tracking.retries, tracking.retry_wait)


def only_our_retries() -> None:
    """Make our back-off the one retry budget in force; call it where the work starts (a trial, the driver).

    MLflow's own HTTP retries (up to minutes against a server that is down) are turned
    off unless the user set ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` explicitly. MLflow reads
    the variable at each request, and has no other way to set it.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def with_retries(call: Callable[[], T], what: str, policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> T:
    """Run one tracking call, retrying with exponential back-off when the store does not answer.

    Raises the last error once the policy's attempts are used up, so a trial fails
    clearly instead of training on without its record.
    """
    wait = policy.first_wait
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except (MlflowException, OSError) as error:
            if attempt == policy.attempts:
                raise
            log.warning("MLflow %s failed (%s); retry %d/%d in %.1f s", what, error, attempt, policy.attempts - 1, wait)
            time.sleep(wait)
            wait = min(wait * 2, policy.max_wait)
    raise AssertionError("unreachable")

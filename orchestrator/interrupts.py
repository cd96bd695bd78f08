"""Ctrl-C and SIGTERM stop a study cleanly: exit status 130 / 143 and one line saying how to resume.

While armed, SIGINT and SIGTERM raise ``Interrupted`` in the driver's main thread,
wherever it is (preparing data, waiting in ``Tuner.fit``). The driver then shuts Ray
down, marks the study's unfinished runs KILLED with the reason, and prints the command
that resumes it. Signals that arrive after the first are ignored, so the clean-up
itself is not cut short (SIGKILL still works, and a rerun recovers from that too).

``Interrupted`` is a ``KeyboardInterrupt``: Ray checks for signals while it waits
(``CoreWorker.wait``, ``ray.get``) and turns a ``KeyboardInterrupt`` raised there into
its own, plain ``KeyboardInterrupt``; any other exception from a signal handler is left
set inside Ray's C++ code and surfaces as a ``SystemError``. The signal is remembered
here, so ``as_interrupted`` gives Ray's plain ``KeyboardInterrupt`` its signal back.

The driver arms as ``main`` starts. In the second before (Python importing the driver's
modules) a stop signal has Python's default effect: nothing has started then.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_STATUSES = frozenset(128 + signum for signum in STOP_SIGNALS)  # the driver's exit status after a stop

_received: list[int] = []  # the stop signals this process got, first first


class Interrupted(KeyboardInterrupt):
    """The driver received SIGINT or SIGTERM.

    A ``KeyboardInterrupt``, so that no ``except Exception`` on the way up (ours, Ray's, MLflow's)
    swallows it, and so that Ray, when the signal lands inside its wait, stops waiting cleanly.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        """``SIGINT`` or ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


def interrupted_by(signum: int) -> Interrupted:
    """The ``Interrupted`` for ``signum``, with later stop signals ignored: one stop, the clean-up runs to its end.

    Also for a signal another handler caught first (Ray's own SIGTERM handler during ``ray.init``).
    """
    for each in STOP_SIGNALS:
        signal.signal(each, signal.SIG_IGN)
    _received.append(signum)
    return Interrupted(signum)


def as_interrupted(stop: KeyboardInterrupt) -> Interrupted:
    """The ``Interrupted`` behind ``stop``: Ray raises a plain ``KeyboardInterrupt`` in place of ours.

    A ``KeyboardInterrupt`` no signal of ours explains (``_thread.interrupt_main``) counts as Ctrl-C.
    """
    if isinstance(stop, Interrupted):
        return stop
    return Interrupted(_received[0] if _received else signal.SIGINT)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise interrupted_by(signum)


def arm() -> dict:
    """Make SIGINT and SIGTERM raise ``Interrupted`` (again after ``ray.init``, which installs its own SIGTERM).

    Returns:
        The handlers in place before, for ``restore``.
    """
    previous = {each: signal.getsignal(each) for each in STOP_SIGNALS}
    for each in STOP_SIGNALS:
        signal.signal(each, _raise_interrupted)
    return previous


def restore(previous: dict) -> None:
    """Put back the handlers ``arm`` returned (a caller such as a test keeps its own)."""
    for each, handler in previous.items():
        signal.signal(each, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block, then deliver them: for steps a signal must not cut in half.

    An import of MLflow interrupted half-way leaves it unusable for the clean-up; Ray's core worker,
    stopped while it connects, ends the process in SIGABRT.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def start_quiet(thread: threading.Thread) -> None:
    """Start ``thread`` with SIGINT and SIGTERM blocked in it for its whole life (a thread inherits the mask it is
    started with), so that a stop signal goes to the main thread, or waits while :func:`held` blocks it there.

    A driver thread that took a SIGTERM while ``ray.init`` had Ray's failure handler in place (the lease heartbeat,
    started before Ray, the only other thread then) ended the process in SIGABRT: 4 of 6 hunts of 20 random stops
    (``tests/test_stop_anywhere.py``, ``SKIPSWEEP_STOPS=20``, seeds 11 to 16); with it started here, the 4 that
    had aborted ran their 80 stops without one.
    """
    with held():
        thread.start()


def resume_command(argv: list[str] | None) -> str:
    """The command line that resumes the study: the same one."""
    return shlex.join(["python", "-m", "orchestrator.run", *(sys.argv[1:] if argv is None else argv)])

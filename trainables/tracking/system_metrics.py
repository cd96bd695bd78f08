"""MLflow's own system-metrics monitor for one run: CPU and memory (GPU where nvidia-ml-py finds one),
plus the trial process's own CPU and memory.

The monitor samples ``system/...`` metrics in its own thread. MLflow's figures are the
machine's (every trial on a node reads the same CPU and memory), so the trial's own process
is sampled too: ``system/process_cpu_percent`` (100 = one core kept busy) and
``system/process_rss_megabytes``. The interval is ``tracking.system_metrics_seconds``, or with
``auto`` paced to the trial: :data:`AUTO_SAMPLES` samples over its expected length, re-estimated
after every epoch (:func:`auto_interval`). Resource figures are worth having, not worth failing a
trial for: every error here is logged as a warning and the trial goes on.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import psutil
from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

log = logging.getLogger(__name__)

AUTO_SAMPLES = 20  # samples an auto-paced trial aims for
AUTO_FLOOR, AUTO_CEILING = 1.0, 60.0  # seconds: each sample also reads the run back from the store
AUTO_FIRST = AUTO_FLOOR  # before the first epoch says how long the trial will take


def auto_interval(expected_seconds: float) -> float:
    """The sampling interval that gives a trial of ``expected_seconds`` about :data:`AUTO_SAMPLES` samples."""
    return min(max(expected_seconds / AUTO_SAMPLES, AUTO_FLOOR), AUTO_CEILING)


class ProcessMonitor:
    """The trial process's CPU (% of one core, summed over its threads) and resident memory, per sample.

    Shaped like MLflow's monitors (``collect_metrics``, ``aggregate_metrics``, ``clear_metrics``,
    ``metrics``), so that it rides along in their loop.
    """

    MIN_CPU_WINDOW = 0.5  # seconds: psutil counts CPU time in 10 ms ticks, so a shorter window reads 1000%

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading is 0 by psutil's design: it starts the clock
        self._since = time.monotonic()
        self._metrics: dict[str, list[float]] = {}

    @property
    def metrics(self) -> dict[str, list[float]]:
        return self._metrics

    def collect_metrics(self) -> None:
        """One reading; the CPU share only once the window since the last one is long enough to mean something."""
        if time.monotonic() - self._since >= self.MIN_CPU_WINDOW:
            self._metrics.setdefault("process_cpu_percent", []).append(self._process.cpu_percent(None))
            self._since = time.monotonic()
        self._metrics.setdefault("process_rss_megabytes", []).append(self._process.memory_info().rss / 2**20)

    def aggregate_metrics(self) -> dict[str, float]:
        return {key: round(sum(values) / len(values), 1) for key, values in self._metrics.items() if values}

    def clear_metrics(self) -> None:
        self._metrics.clear()


def start_system_metrics(
    client: MlflowClient, run_id: str, run_name: str, seconds: float | str, resumed: bool
) -> SystemMetricsMonitor | None:
    """Start sampling into the run (a resumed run continues its steps); None when ``seconds`` is 0.

    Args:
        client: the client of the run's store.
        run_id: the run to log into.
        run_name: the readable run name, for warnings.
        seconds: sampling interval; ``"auto"`` starts at :data:`AUTO_FIRST` (see :func:`pace`); 0 = no monitor.
        resumed: whether the run continues an earlier attempt (its system metrics go on from their last step).
    """
    if seconds == "auto":
        seconds = AUTO_FIRST
    if float(seconds) <= 0:
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # psutil: only when sampling

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # four INFO lines a run otherwise
        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=float(seconds), resume_logging=resumed, tracking_uri=client.tracking_uri
        )
        monitor.monitors.append(ProcessMonitor())
        monitor.start()
        return monitor
    except Exception as error:  # resource figures are worth having, not worth failing a trial for
        log.warning("%s: no system metrics: %s: %s", run_name, type(error).__name__, error)
        return None


def pace(monitor: SystemMetricsMonitor | None, expected_seconds: float) -> None:
    """Re-pace an auto monitor to a trial now expected to last ``expected_seconds`` in all (from its next wait)."""
    if monitor is not None:
        monitor.sampling_interval = auto_interval(expected_seconds)


def stop_system_metrics(monitor: SystemMetricsMonitor, client: MlflowClient, run_id: str, run_name: str) -> None:
    """Stop the monitor and log what it sampled; call it before the run ends, while it is still RUNNING.

    A run shorter than the monitor's first round (or its first store read) gets one closing sample.
    """
    monitor.finish()
    try:
        metrics = client.get_run(run_id).data.metrics
        if not any(key.startswith("system/") for key in metrics):
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()
    except Exception as error:
        log.warning("%s: no closing system metrics: %s: %s", run_name, type(error).__name__, error)

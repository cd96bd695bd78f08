"""MLflow's own system-metrics monitor for one run: CPU and memory (GPU where nvidia-ml-py finds one).

The monitor samples ``system/...`` metrics in its own thread every
``tracking.system_metrics_seconds``. Resource figures are worth having, not worth
failing a trial for: every error here is logged as a warning and the trial goes on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

log = logging.getLogger(__name__)


def start_system_metrics(
    client: MlflowClient, run_id: str, run_name: str, seconds: float, resumed: bool
) -> SystemMetricsMonitor | None:
    """Start sampling every ``seconds`` into the run (a resumed run continues its steps); None when ``seconds`` <= 0.

    Args:
        client: the client of the run's store.
        run_id: the run to log into.
        run_name: the readable run name, for warnings.
        seconds: sampling interval; 0 = no monitor.
        resumed: whether the run continues an earlier attempt (its system metrics go on from their last step).
    """
    if seconds <= 0:
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # psutil: only when sampling

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # four INFO lines a run otherwise
        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=seconds, resume_logging=resumed, tracking_uri=client.tracking_uri
        )
        monitor.start()
        return monitor
    except Exception as error:  # resource figures are worth having, not worth failing a trial for
        log.warning("%s: no system metrics: %s: %s", run_name, type(error).__name__, error)
        return None


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

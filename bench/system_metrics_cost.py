"""What one sample of MLflow's system metrics costs, against the interval trials sample at.

    python -m bench.system_metrics_cost --samples 200 --interval 15

Times ``SystemMetricsMonitor.collect_metrics()`` (CPU, memory, disk and network through psutil;
GPU where nvidia-ml-py finds one) after one warm-up call, the work the monitor thread of every
trial run does once per ``tracking.system_metrics_seconds``, and prints it as a share of one core.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.system_metrics_cost")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between samples (the study's setting)")
    args = parser.parse_args(argv)
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        monitor = SystemMetricsMonitor(
            "unused", sampling_interval=args.interval, tracking_uri=f"sqlite:///{folder}/m.db"
        )
        monitor.collect_metrics()
        started = time.perf_counter()
        for _ in range(args.samples):
            monitor.collect_metrics()
        seconds = (time.perf_counter() - started) / args.samples
    share = seconds / args.interval * 100
    print(f"one sample: {seconds * 1e3:.3f} ms; one sample per {args.interval:g} s: {share:.4f}% of one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

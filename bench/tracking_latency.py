"""What logging one epoch costs the training thread: synchronous calls vs the background writer.

    python -m bench.tracking_latency --epochs 100 --epoch-seconds 0.02
    python -m bench.tracking_latency --epochs 100 --epoch-seconds 0.02 --server   # also via a local mlflow server

For each store (a fresh SQLite file; with ``--server`` also an ``mlflow server`` on
127.0.0.1 that this starts and stops by its process group) and each mode, a
``TrialRun`` logs ``--epochs`` epochs of three metrics, sleeping ``--epoch-seconds``
between them as a fast GPU epoch would. Prints the time each ``log_epoch`` call kept
the training thread (median, 95th percentile, mean), the final flush and the whole
run's wall time.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from bench.ports import free_port
from trainables.tracking import TrialRun, ensure_experiment


def measure(uri: str, background: bool, epochs: int, epoch_seconds: float) -> dict[str, float]:
    """Log ``epochs`` epochs into a new run of ``uri``; return call, flush and wall times in ms."""
    mode = "async" if background else "sync"
    ensure_experiment(uri, "latency")
    calls = []
    started = time.perf_counter()
    with TrialRun(uri, "latency", f"{mode}-{time.time_ns()}", mode, {}, {"mode": mode}, background=background) as run:
        for epoch in range(epochs):
            time.sleep(epoch_seconds)  # the epoch's training
            call = time.perf_counter()
            run.log_epoch(epoch, {"train_loss": 1.0 / (epoch + 1), "val_dice": epoch / epochs, "epoch_seconds": 0.1})
            calls.append(time.perf_counter() - call)
        flush = time.perf_counter()
        run.flush()
        flush = time.perf_counter() - flush
    wall = time.perf_counter() - started
    calls_ms = sorted(1000 * c for c in calls)
    return {
        "median_ms": statistics.median(calls_ms),
        "p95_ms": calls_ms[int(0.95 * (len(calls_ms) - 1))],
        "mean_ms": statistics.fmean(calls_ms),
        "flush_ms": 1000 * flush,
        "wall_s": wall,
    }


@contextmanager
def mlflow_server(folder: Path):
    """An ``mlflow server`` on a free local port, stopped (its whole process group) on exit."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder}/server.db",
        "--default-artifact-root",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with (folder / "server.log").open("w") as log, serving(command, port, log, f"see {folder / 'server.log'}") as url:
        yield url


@contextmanager
def serving(command: list[str], port: int, log, hint: str):
    """Run ``command`` (an MLflow server or UI on ``port``), yield its URL once ``/health`` answers; stop it after.

    Its whole process group is stopped (SIGTERM, then SIGKILL after 20 s). ``hint`` ends the error raised
    when it never answers (within 120 s) or exits first.
    """
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start on port {port}; {hint}") from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracking_latency")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--epoch-seconds", type=float, default=0.02, help="simulated training time per epoch")
    parser.add_argument("--server", action="store_true", help="also measure through a local mlflow server")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        stores = [("sqlite", lambda: f"sqlite:///{root}/store.db")]
        print(f"{args.epochs} epochs, {args.epoch_seconds * 1000:.0f} ms of simulated training each")
        print("| store | mode | call median ms | call p95 ms | call mean ms | final flush ms | wall s |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")

        def report(store: str, uri: str) -> None:
            for background in (False, True):
                row = measure(uri, background, args.epochs, args.epoch_seconds)
                mode = "async (writer thread)" if background else "sync"
                print(
                    f"| {store} | {mode} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} | {row['mean_ms']:.2f} "
                    f"| {row['flush_ms']:.1f} | {row['wall_s']:.2f} |",
                    flush=True,
                )

        for store, uri in stores:
            report(store, uri())
        if args.server:
            with mlflow_server(root) as uri:
                report("mlflow server", uri)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

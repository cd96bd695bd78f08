"""How many concurrent trials one ``mlflow server`` holds: SQLite vs PostgreSQL behind it, loaded until it breaks.

    python -m bench.tracking_load                                          # 8 32 128 trials, both back ends
    python -m bench.tracking_load --trials 8 32 128 256 --epochs 15 --epoch-seconds 2 --out load.csv
    python -m bench.tracking_load --backends postgresql --trials 32 --fault database   # a restart mid-load
    python -m bench.tracking_load --trials 2 --epochs 2 --epoch-seconds 0.2              # a quick look

For each back end and each N of ``--trials``: a fresh ``mlflow server`` on 127.0.0.1
(``--workers`` processes; served artifacts in a temporary folder) over a fresh SQLite file
or a fresh database in a throw-away PostgreSQL server (``bench.postgres``: made, dropped and
stopped here). N simulated trials then each do what a trial does, through the trial's own
``TrialRun`` and its own client: create (or find) its run by trial key with its params and tags,
sample system metrics every ``--system-seconds``, log one batch of 3 epoch metrics every
``--epoch-seconds`` (its background writer), upload ``--artifacts`` files of ``--artifact-kb``
at the end and finish. They run as threads spread over at most ``--processes`` client
processes (a process imports MLflow: ~100 MB each, so 128 processes would not fit 24 GiB) and
start together (a barrier after the imports): the burst of a study's start. On one machine the
clients share its cores with the server: the figures are a lower bound for a server of its own.

Per configuration it prints and writes (``--out``, CSV) a row: epochs logged vs expected, read
back from the store (``lost``: missing steps; ``duplicated``: extra rows of a step), the
latency of the writer's calls (p50 / p95 / max: the server's answer to one batch, retries
included), the most batches waiting behind a call (``backlog_max``), retries, failed trials,
the server's CPU (cores, all its processes) and the wall time against the ideal (epochs x
epoch seconds). ``keeps_up``: nothing lost or duplicated, no trial failed, p95 latency under
the epoch time and a backlog of at most one batch. ``--fault server`` (or ``database``)
restarts the server (or PostgreSQL) ``--fault-after`` seconds into the epochs; the retry
policy (``--retries``, ``--retry-wait``) must carry the trials across it.

Loopback only; every configuration is bounded by ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from bench.postgres import PostgresUnavailable, ThrowawayPostgres
from bench.tracking_latency import free_port

EXPERIMENT = "load"
METRICS = ("train_loss", "val_dice", "epoch_seconds")


@dataclass
class Load:
    """One configuration's settings."""

    backend: str  # sqlite or postgresql
    trials: int
    epochs: int
    epoch_seconds: float
    workers: int
    system_seconds: float
    artifacts: int
    artifact_kb: int
    retries: int
    retry_wait: float
    processes: int = 1  # client processes the trials run in, as threads spread evenly over them
    pool_size: int = 0  # the server's SQLAlchemy pool per worker (MLFLOW_SQLALCHEMYSTORE_POOL_SIZE); 0: MLflow's 5
    max_overflow: int = 0  # connections beyond it (MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW); 0: MLflow's 10
    fault: str = "none"  # none, server or database
    fault_after: float = 5.0


@dataclass
class Outcome:
    """One configuration's results (a CSV row with :class:`Load`'s fields)."""

    expected: int = 0
    logged: int = 0
    lost: int = 0
    duplicated: int = 0
    failed: int = 0
    retried: int = 0  # tracking calls the trials retried
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    max_ms: float = float("nan")
    backlog_max: int = 0
    server_cores: float = float("nan")
    wall_seconds: float = float("nan")
    ideal_seconds: float = float("nan")
    keeps_up: bool = False
    errors: list[str] = field(default_factory=list)


class _Retries(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "; retry " in record.getMessage():
            self.count += 1


def trial_process(uri: str, indices: list[int], load: Load, barrier, results) -> None:
    """A process of simulated trials (one thread each): what ``run_trial`` does with MLflow, without the training.

    Puts one outcome per trial on ``results``, then ``{"retries": n}``: the retries its trials logged.
    """
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - MLflow prints a "View run" line per finished run
    retries = _Retries()
    logging.getLogger("trainables.tracking").addHandler(retries)
    from trainables.tracking import TrialRun  # noqa: F401  (imported before the barrier: not part of the burst)

    folder = Path(tempfile.mkdtemp(prefix="load-"))
    files = []
    for number in range(load.artifacts):
        path = folder / f"artifact_{number}.bin"
        path.write_bytes(bytes(load.artifact_kb * 1024))
        files.append(path)
    barrier.wait()
    threads = [threading.Thread(target=lambda i=i: results.put(_one_trial(uri, i, load, files))) for i in indices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put({"retries": retries.count})


def _one_trial(uri: str, index: int, load: Load, files: list[Path]) -> dict:
    from trainables.tracking import RetryPolicy, TrialRun

    outcome = {"index": index, "writes": [], "backlog": 0, "error": ""}
    try:
        params = {"learning_rate": 0.001, "batch_size": 8, "epochs": load.epochs, "variant": "unet", "seed": index}
        tags = {"study": EXPERIMENT, "variant": "unet", "seed": str(index)}
        with TrialRun(
            uri,
            EXPERIMENT,
            f"trial-{index:04d}",
            f"unet s{index}",
            tags,
            params,
            system_metrics_seconds=load.system_seconds,
            retry_policy=RetryPolicy(load.retries, load.retry_wait),
            epochs=load.epochs,
        ) as run:
            for epoch in range(load.epochs):
                time.sleep(load.epoch_seconds)
                run.log_epoch(
                    epoch, {"train_loss": 1 / (epoch + 1), "val_dice": epoch / load.epochs, "epoch_seconds": 1}
                )
            run.flush()
            outcome["writes"] = list(run.writer.write_seconds)
            outcome["backlog"] = run.writer.backlog_max
            for path in files:
                run.log_artifact(path)
    except Exception as error:  # a trial that fails is counted, its first line kept
        outcome["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    return outcome


class _Server:
    """An ``mlflow server`` on a free loopback port, in a process group of its own; restarted on the same port."""

    def __init__(self, backend_uri: str, folder: Path, workers: int, pool: tuple[int, int] = (0, 0)) -> None:
        self.folder = folder
        self.env = dict(os.environ)
        for name, value in zip(("POOL_SIZE", "MAX_OVERFLOW"), pool, strict=True):
            if value:
                self.env[f"MLFLOW_SQLALCHEMYSTORE_{name}"] = str(value)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.command = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.cpu_of_stopped = 0.0  # CPU seconds of servers stopped by a restart

    def start(self, timeout: float = 120) -> None:
        self.starts += 1
        log = (self.folder / f"server-{self.starts}.log").open("w")
        self.process = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mlflow server did not start; see {self.folder}/server-{self.starts}.log"
                    ) from None
                time.sleep(0.3)

    def cpu(self) -> float:
        """CPU seconds of every process of the server so far (restarted ones included)."""
        return self.cpu_of_stopped + (_group_cpu(self.process.pid) if self.process else 0.0)

    def stop(self) -> None:
        if self.process is None:
            return
        self.cpu_of_stopped += _group_cpu(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None


def _group_cpu(leader: int) -> float:
    """CPU seconds used so far by ``leader`` and its descendants."""
    try:
        process = psutil.Process(leader)
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for member in members:
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _count_epochs(uri: str, trials: int, epochs: int) -> tuple[int, int, int]:
    """Rows logged, steps missing and extra rows, over every trial run and epoch metric, read back from the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=10_000) if experiment else []
    logged = lost = duplicated = 0
    for run in runs:
        for key in METRICS:
            steps = [metric.step for metric in client.get_metric_history(run.info.run_id, key)]
            logged += len(steps)
            lost += len(set(range(epochs)) - set(steps))
            duplicated += len(steps) - len(set(steps))
    lost += (trials - len(runs)) * epochs * len(METRICS)  # trials that never made a run
    return logged, lost, duplicated


def run_load(load: Load, root: Path, database: ThrowawayPostgres | None, timeout: float) -> Outcome:
    """One configuration: a fresh server and store, ``load.trials`` simulated trials, the store read back."""
    folder = Path(tempfile.mkdtemp(prefix=f"{load.backend}-{load.trials}-", dir=root))
    name = f"load_{load.trials}_{int(time.time() * 1000)}"
    backend_uri = database.create(name) if database is not None else f"sqlite:///{folder}/server.db"
    outcome = Outcome(expected=load.trials * load.epochs * len(METRICS), ideal_seconds=load.epochs * load.epoch_seconds)
    context = multiprocessing.get_context("spawn")
    server = _Server(backend_uri, folder, load.workers, (load.pool_size, load.max_overflow))
    processes = []
    try:
        server.start()
        groups = [list(range(load.trials))[start :: load.processes] for start in range(load.processes)]
        groups = [group for group in groups if group]
        barrier, results = context.Barrier(len(groups) + 1), context.Queue()
        processes = [
            context.Process(target=trial_process, args=(server.uri, group, load, barrier, results)) for group in groups
        ]
        for process in processes:
            process.start()
        barrier.wait(timeout=timeout)
        cpu_before, started = server.cpu(), time.monotonic()
        if load.fault != "none":
            threading.Thread(target=_fault, args=(load, server, database), daemon=True).start()
        messages = [
            results.get(timeout=max(1.0, timeout - (time.monotonic() - started)))
            for _ in range(load.trials + len(processes))
        ]
        found = [message for message in messages if "index" in message]
        outcome.wall_seconds = time.monotonic() - started
        outcome.server_cores = (server.cpu() - cpu_before) / outcome.wall_seconds
        for process in processes:
            process.join(timeout=30)
        outcome.logged, outcome.lost, outcome.duplicated = _count_epochs(server.uri, load.trials, load.epochs)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        server.stop()
        if database is not None:
            database.drop(name)
    writes = sorted(1000 * seconds for entry in found for seconds in entry["writes"])
    if writes:
        outcome.p50_ms = statistics.median(writes)
        outcome.p95_ms = writes[int(0.95 * (len(writes) - 1))]
        outcome.max_ms = writes[-1]
    outcome.backlog_max = max(entry["backlog"] for entry in found)
    outcome.retried = sum(message["retries"] for message in messages if "retries" in message)
    outcome.errors = sorted({entry["error"] for entry in found if entry["error"]})
    outcome.failed = sum(1 for entry in found if entry["error"])
    outcome.keeps_up = (
        outcome.lost == outcome.duplicated == outcome.failed == 0
        and outcome.p95_ms < 1000 * load.epoch_seconds
        and outcome.backlog_max <= 1
    )
    return outcome


def _fault(load: Load, server: _Server, database: ThrowawayPostgres | None) -> None:
    """Restart the server (on the same port and store) or the database, ``fault_after`` seconds into the epochs."""
    time.sleep(load.fault_after)
    if load.fault == "database" and database is not None:
        print(f"  fault: restarting PostgreSQL at {load.fault_after:g} s", flush=True)
        database.restart()
        return
    print(f"  fault: restarting the mlflow server at {load.fault_after:g} s", flush=True)
    server.stop()
    server.start()


def row(load: Load, outcome: Outcome) -> dict:
    return {
        **asdict(load),
        **{k: v for k, v in asdict(outcome).items() if k != "errors"},
        "errors": "; ".join(outcome.errors),
    }


def markdown(rows: list[dict]) -> str:
    """The RESULTS.md table: one line per configuration."""
    header = ["back end", "trials", "pool", "fault", "logged / expected", "lost", "dup", "failed", "retries"]
    header += ["p50 ms", "p95 ms", "max ms", "backlog", "server cores", "wall s (ideal)", "keeps up"]
    lines = ["| " + " | ".join(header) + " |", "| --- | ---: | ---: | --- |" + " ---: |" * 11 + " --- |"]
    for r in rows:
        pool = f"{r['pool_size'] or 5}+{r['max_overflow'] or 10}"
        cells = [r["backend"], str(r["trials"]), pool, r["fault"], f"{r['logged']} / {r['expected']}", str(r["lost"])]
        cells += [str(r["duplicated"]), str(r["failed"]), str(r["retried"]), f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}"]
        cells += [f"{r['max_ms']:.0f}", str(r["backlog_max"]), f"{r['server_cores']:.2f}"]
        cells += [f"{r['wall_seconds']:.1f} ({r['ideal_seconds']:.0f})", "yes" if r["keeps_up"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracking_load", description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--trials", nargs="+", type=int, default=[8, 32, 128], help="N concurrent trials, each a row")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--epoch-seconds", type=float, default=2.0, help="a GPU-like epoch (default 2 s)")
    parser.add_argument("--workers", type=int, default=4, help="mlflow server --workers (default 4)")
    parser.add_argument("--system-seconds", type=float, default=5.0, help="system-metric sampling (0: none)")
    parser.add_argument("--artifacts", type=int, default=3, help="files each trial uploads at its end")
    parser.add_argument("--artifact-kb", type=int, default=256)
    parser.add_argument("--retries", type=int, default=8, help="the retry policy of each trial (tracking.retries)")
    parser.add_argument("--retry-wait", type=float, default=0.5)
    parser.add_argument(
        "--processes",
        type=int,
        default=32,
        help="at most this many client processes, the trials as threads in them (memory: ~100 MB each; default 32)",
    )
    parser.add_argument("--pool-size", type=int, default=0, help="server's SQLAlchemy pool per worker (0: MLflow's 5)")
    parser.add_argument("--max-overflow", type=int, default=0, help="connections beyond the pool (0: MLflow's 10)")
    parser.add_argument("--fault", choices=["none", "server", "database"], default="none")
    parser.add_argument("--fault-after", type=float, default=5.0, help="seconds into the epochs")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a configuration may take")
    parser.add_argument("--out", type=Path, help="CSV of the rows (appended as each ends)")
    args = parser.parse_args(argv)
    if min(args.trials) < 1 or args.epochs < 1 or args.processes < 1 or args.epoch_seconds < 0:
        parser.error("--trials, --epochs and --processes must be >= 1, --epoch-seconds >= 0")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tracking-load-") as folder:
        for backend in args.backends:
            database = None
            if backend == "postgresql":
                try:
                    database = ThrowawayPostgres()
                except PostgresUnavailable as missing:
                    print(f"postgresql: skipped: {missing}", flush=True)
                    continue
            try:
                for trials in args.trials:
                    load = Load(
                        backend=backend,
                        trials=trials,
                        epochs=args.epochs,
                        epoch_seconds=args.epoch_seconds,
                        workers=args.workers,
                        system_seconds=args.system_seconds,
                        artifacts=args.artifacts,
                        artifact_kb=args.artifact_kb,
                        retries=args.retries,
                        retry_wait=args.retry_wait,
                        processes=min(trials, args.processes),
                        pool_size=args.pool_size,
                        max_overflow=args.max_overflow,
                        fault=args.fault,
                        fault_after=args.fault_after,
                    )
                    print(
                        f"{backend}: {trials} trials x {args.epochs} epochs of {args.epoch_seconds:g} s ...", flush=True
                    )
                    outcome = run_load(load, Path(folder), database, args.timeout)
                    rows.append(row(load, outcome))
                    print(markdown(rows[-1:]).splitlines()[-1], flush=True)
                    for error in outcome.errors[:3]:
                        print(f"  error: {error}", flush=True)
                    if args.out is not None:
                        _append(args.out, rows[-1])
            finally:
                if database is not None:
                    database.close()
    print("\n" + markdown(rows))
    return 0


def _append(path: Path, entry: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(entry))
        if new:
            writer.writeheader()
        writer.writerow(entry)


if __name__ == "__main__":
    raise SystemExit(main())

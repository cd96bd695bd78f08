"""Shared fixtures: a Ray head started with `ray start` and stopped by its own processes."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from bench.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def command_lines() -> dict[int, str]:
    """pid -> command line of every other process on this machine (never this test process)."""
    lines = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            lines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return lines


def processes_mentioning(text: str) -> list[int]:
    """PIDs of processes whose command line contains ``text`` (e.g. a cluster's own temp dir)."""
    return [pid for pid, cmdline in command_lines().items() if text in cmdline]


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


RAY_TOKEN = secrets.token_hex(32)  # one per test session: every node, driver and client of a test shares it
# Inherited by every process this test session starts (Ray workers inherit it from their raylet), so the
# clean-up below touches this session's processes only, never those of another test run on the machine. Under
# pytest-xdist each worker is a session of its own: the workers inherit the controller's mark, and each adds its
# name, so that one worker's check never takes the other's clusters for leaks.
SESSION_MARK = (
    "SKIPSWEEP_TEST_SESSION",
    os.environ.setdefault("SKIPSWEEP_TEST_SESSION", secrets.token_hex(8)).split("/")[0]
    + (f"/{os.environ['PYTEST_XDIST_WORKER']}" if "PYTEST_XDIST_WORKER" in os.environ else ""),
)
os.environ[SESSION_MARK[0]] = SESSION_MARK[1]
LOOPBACK_HEAD, LOOPBACK_WORKER = "127.0.0.2", "127.0.0.3"  # Ray rewrites 127.0.0.1 to the host's own address
CLUSTER_MARKERS = (
    "ray::",
    "/ray/_private/",
    "/ray/core/src/",
    "/ray/dashboard/",
    "ray.util.client.server",
    "/bin/ray ",
    "gcs_server",
    "raylet",
    "mlflow",
)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: token auth set explicitly (Ray 2.60), loopback only, no usage stats."""
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": RAY_TOKEN,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
        "SKIPSWEEP_RAY_NODE_IP": LOOPBACK_HEAD,
        # `python` in a job's entrypoint is this environment's, as in an activated venv
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra)
    return env


def started_by_this_session(pid: int) -> bool:
    """Whether ``pid`` carries this test session's mark in its environment."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"{SESSION_MARK[0]}={SESSION_MARK[1]}".encode() in environ


def cluster_pids() -> set[int]:
    """PIDs of the Ray and MLflow processes this test session started (never this test process)."""
    return {
        pid
        for pid, cmdline in command_lines().items()
        if "pytest" not in cmdline
        and any(marker in cmdline for marker in CLUSTER_MARKERS)
        and started_by_this_session(pid)
    }


def _parents() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def process_tree(leader: int) -> set[int]:
    """The process group ``leader`` leads and every descendant of it, as they are now.

    Descendants matter: Ray starts each worker in a session of its own, so a node's
    trials are not in the node's process group. Take it before killing ``leader``: the
    children of a dead process are re-parented and no longer lead back to it.
    """
    table = _parents()
    tree = {pid for pid, (_, group) in table.items() if group == leader} | {leader}
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in table.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


def kill_group(leader: int, also: set[int] = frozenset()) -> None:
    """SIGKILL a process group started with ``start_new_session=True``, every descendant of it, and ``also``."""
    doomed = process_tree(leader) | set(also)
    doomed.discard(os.getpid())
    kill_all(sorted(doomed))


def check_no_stray_processes(before: set[int], grace: float = 15.0) -> None:
    """Fail when Ray or MLflow processes started since ``before`` outlive ``grace`` seconds; kill them first.

    The leak is reported even though it is cleaned up, so the next test starts clean and this one fails.
    """
    deadline = time.monotonic() + grace  # a normal shutdown takes a few seconds to finish
    leaked = sorted(cluster_pids() - before)
    while leaked and time.monotonic() < deadline:
        time.sleep(0.5)
        leaked = sorted(cluster_pids() - before)
    if not leaked:
        return
    lines = command_lines()
    named = "; ".join(f"{pid}: {lines.get(pid, '?')[:120]}" for pid in leaked)
    kill_all(leaked)
    pytest.fail(f"{len(leaked)} Ray/MLflow process(es) outlived the test (killed now): {named}", pytrace=False)


@pytest.fixture(autouse=True)
def no_stray_processes():
    """After every test, no Ray or MLflow process it started survives, also when it failed."""
    before = cluster_pids()
    yield
    check_no_stray_processes(before)


def start_ray_node(
    temp_dir: str, *, num_cpus: int, head_port: int = 0, dashboard_port: int = 0, address: str = "", num_gpus: int = 0
) -> int:
    """``ray start`` in a new session; returns its PID, the process group of every process the node starts."""
    command = [
        str(BIN / "ray"),
        "start",
        f"--temp-dir={temp_dir}",
        f"--num-cpus={num_cpus}",
        f"--num-gpus={num_gpus}",  # declared only: no GPU exists here (the scheduling is what is tested)
        "--disable-usage-stats",
        "--min-worker-port=20000",
        "--max-worker-port=29999",
    ]
    if head_port:
        command += [
            "--head",
            f"--port={head_port}",
            f"--node-ip-address={LOOPBACK_HEAD}",
            f"--dashboard-port={dashboard_port}",
            "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={free_port()}",
        ]
    else:
        command += [f"--address={address}", f"--node-ip-address={LOOPBACK_WORKER}"]
    process = subprocess.Popen(
        command,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output[-3000:]
    return process.pid


@pytest.fixture
def ray_head():
    """A real Ray head (`ray start --head`, 2 CPUs) on loopback; its whole process group is killed after."""
    temp_dir = tempfile.mkdtemp(prefix="ssr", dir="/tmp")  # short: Ray puts unix sockets under it
    gcs_port, dashboard_port = free_port(), free_port()
    groups: list[int] = []
    try:
        groups.append(start_ray_node(temp_dir, num_cpus=2, head_port=gcs_port, dashboard_port=dashboard_port))
        yield {
            "address": f"{LOOPBACK_HEAD}:{gcs_port}",
            "dashboard": f"http://127.0.0.1:{dashboard_port}",
            "temp_dir": temp_dir,
            "groups": groups,
        }
    finally:
        for group in groups:
            kill_group(group)


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 (a SQLite back end, or ``backend``; served artifacts) that a test stops
    and restarts."""

    def __init__(self, root: Path, backend: str | None = None) -> None:
        self.root = root
        self.backend = backend or f"sqlite:///{root}/server.db"
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.group: int | None = None
        self.starts = 0

    def start(self, timeout: float = 90) -> None:
        command = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            self.backend,
            "--artifacts-destination",
            str(self.root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        self.starts += 1
        log = open(self.root / f"server-{self.starts}.log", "w")  # noqa: SIM115 - the server keeps writing it
        process = subprocess.Popen(
            command, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.group = process.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                return
            assert process.poll() is None, (self.root / f"server-{self.starts}.log").read_text()[-3000:]
            time.sleep(0.3)
        raise AssertionError(f"mlflow server on port {self.port} did not answer in {timeout} s")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.group is not None:
            kill_group(self.group)
            self.group = None
        deadline = time.monotonic() + 20
        while self.answers() and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture
def mlflow_server(tmp_path: Path):
    root = tmp_path / "mlflow_server"
    root.mkdir()
    server = MlflowServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL server on loopback (bench.postgres); the test is skipped, saying why, without one."""
    from bench.postgres import PostgresUnavailable, ThrowawayPostgres

    try:
        database = ThrowawayPostgres()
    except PostgresUnavailable as missing:
        pytest.skip(f"no PostgreSQL here: {missing}")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def mlflow_server_postgres(tmp_path: Path, postgres):
    """A real ``mlflow server`` whose back end is a PostgreSQL database of its own (``postgres`` fixture)."""
    root = tmp_path / "mlflow_server"
    root.mkdir()
    server = MlflowServer(root, backend=postgres.create("mlflow"))
    server.database = postgres
    try:
        server.start()
        yield server
    finally:
        server.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort: file order otherwise), so that under pytest-xdist the long ones start early
    and no worker is left alone with them at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

"""Connecting the driver to Ray: refuse what would hang, expose as little as Ray allows.

- An address that nothing answers at is refused in seconds, naming it (``ray.init``
  alone retries for minutes, printing only ``Failed to connect to GCS``).
- A local cluster binds its node address to loopback (``127.0.0.2``: Ray rewrites
  ``127.0.0.1`` to the host's own address) and starts no dashboard; ``SKIPSWEEP_RAY_NODE_IP``
  picks another address. Ray's gRPC servers still listen on every interface (see README).
- Inside ``ray job submit``, the job's own ``env_vars`` win: the driver forwards only the
  ``MLFLOW_*`` / ``SKIPSWEEP_*`` variables the job does not already set (Ray refuses a
  ``ray.init`` runtime env that repeats a key of the job's).
- A trial asking for more CPUs than the largest node has would pend forever: refused.
"""

from __future__ import annotations

import json
import logging
import os
import socket

from trainables.config import StudyConfigError

NODE_IP_ENV = "SKIPSWEEP_RAY_NODE_IP"  # address a local cluster binds to (default: LOOPBACK_NODE_IP where it exists)
LOOPBACK_NODE_IP = "127.0.0.2"  # loopback, and not one Ray rewrites to the host's address as it does 127.0.0.1
FORWARDED_PREFIXES = ("SKIPSWEEP_", "MLFLOW_")
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray in a submitted job's driver: the job's runtime env
CONNECT_SECONDS = 10.0


def check_ray_address(address: str | None, timeout: float = CONNECT_SECONDS) -> None:
    """The Ray cluster at ``address`` (else ``$RAY_ADDRESS``) accepts a connection within ``timeout`` seconds.

    ``auto`` and no address at all are Ray's to resolve; ``ray://HOST:PORT`` and
    ``HOST:PORT`` are probed with one TCP connection.

    Raises:
        StudyConfigError: one line naming the flag or variable and the address.
    """
    flag, target = ("--address", address) if address else ("RAY_ADDRESS", os.environ.get("RAY_ADDRESS"))
    if not target or target == "auto":
        return
    host, separator, port = target.removeprefix("ray://").rpartition(":")
    if "://" in host or not separator or not port.isdigit():
        raise StudyConfigError(f"{flag}: {target}: expected HOST:PORT of a Ray head (or ray://HOST:PORT)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise StudyConfigError(f"{flag}: {target}: no Ray cluster answers there ({reason})") from None


def job_env_vars() -> dict[str, str]:
    """The ``env_vars`` of the runtime env of the Ray job this driver runs in (empty outside a job)."""
    text = os.environ.get(JOB_CONFIG_ENV)
    if not text:
        return {}
    runtime_env = json.loads(text).get("runtime_env") or {}
    return dict(runtime_env.get("env_vars") or {})


def forwarded_env(environ: dict[str, str], job_vars: dict[str, str]) -> dict[str, str]:
    """The driver's ``MLFLOW_*`` / ``SKIPSWEEP_*`` variables that the job's runtime env does not already set."""
    return {key: value for key, value in environ.items() if key.startswith(FORWARDED_PREFIXES) and key not in job_vars}


def local_node_ip() -> str | None:
    """The address a local cluster binds to: ``$SKIPSWEEP_RAY_NODE_IP``, else loopback where it can be bound."""
    if os.environ.get(NODE_IP_ENV):
        return os.environ[NODE_IP_ENV]
    try:
        with socket.socket() as probe:  # 127.0.0.2 exists on Linux; not on macOS, where Ray keeps its choice
            probe.bind((LOOPBACK_NODE_IP, 0))
    except OSError:
        return None
    return LOOPBACK_NODE_IP


def connect_ray(address: str | None, verbose: bool):
    """``ray.init`` for the study: a loopback local cluster, or the given cluster; returns the ``ray`` module."""
    import ray

    hooks = forwarded_env(dict(os.environ), job_env_vars())  # trials on every node see these settings
    local = address is None and not os.environ.get("RAY_ADDRESS")
    options = {"_node_ip_address": local_node_ip(), "include_dashboard": False} if local else {}
    ray.init(
        address=address,
        logging_level=logging.INFO if verbose else logging.WARNING,
        log_to_driver=verbose,
        runtime_env={"env_vars": hooks} if hooks else None,
        **options,
    )
    return ray


def check_trial_fits(cpu_per_trial: float, nodes: list[dict], source: str, gpu_per_trial: float = 0.0) -> None:
    """Refuse a study whose trials ask more than any alive node has (CPUs, or CPUs and GPU share together): they
    would pend forever.

    Args:
        cpu_per_trial: the study's ``resources.cpu``.
        nodes: ``ray.nodes()``.
        source: the study file, for the message.
        gpu_per_trial: the GPU share each trial will ask (0 when the cluster has no GPU: it then runs on CPUs).
    """
    alive = [node["Resources"] for node in nodes if node.get("Alive")]
    largest = max((resources.get("CPU", 0.0) for resources in alive), default=0.0)
    if cpu_per_trial > largest:
        raise StudyConfigError(
            f"{source}: resources.cpu: {cpu_per_trial:g} CPUs per trial, but the largest node of the Ray cluster"
            f" has {largest:g}: no trial could start"
        )
    if gpu_per_trial <= 0:
        return
    gpus = max((resources.get("GPU", 0.0) for resources in alive), default=0.0)
    if gpu_per_trial > gpus:
        raise StudyConfigError(
            f"{source}: resources.gpu: {gpu_per_trial:g} GPUs per trial, but no node of the Ray cluster has more"
            f" than {gpus:g}: no trial could start (a trial runs on one node; ask a share of one node's GPUs)"
        )
    if not any(r.get("CPU", 0.0) >= cpu_per_trial and r.get("GPU", 0.0) >= gpu_per_trial for r in alive):
        raise StudyConfigError(
            f"{source}: resources: no node of the Ray cluster has both {cpu_per_trial:g} CPUs and {gpu_per_trial:g}"
            " GPUs for one trial: no trial could start"
        )


def check_local_fit(cpu_per_trial: float, address: str | None, source: str) -> None:
    """Before anything is prepared: refuse trials larger than the local cluster this driver will start.

    Only for a local cluster (no ``--address``, no ``$RAY_ADDRESS``): its size is known
    before it starts (Ray's own count of this machine's CPUs, cgroup limits included). A
    remote cluster is asked once connected (``check_trial_fits``).
    """
    if address or os.environ.get("RAY_ADDRESS"):
        return
    from ray._private.utils import get_num_cpus  # what ray.init gives a local cluster

    check_trial_fits(cpu_per_trial, [{"Alive": True, "Resources": {"CPU": float(get_num_cpus())}}], source)

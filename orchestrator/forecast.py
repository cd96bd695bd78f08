"""What a study will cost: trials at once from the resource shapes, wall time and device-hours (pure, no Ray).

The arithmetic of ``python -m orchestrator.run --dry-run --calibrate``: the calibration
(``orchestrator.calibrate``) measures what one trial's parts take; this module packs the
trials onto a cluster the way Ray does and schedules them the way Tune does:

- A node holds ``floor(CPUs / cpu)`` trials by CPU; by GPU, a share below one must fit on
  one GPU (Ray never splits a fractional request across GPUs), so each GPU holds
  ``floor(1 / gpu)`` trials: two GPUs at 0.4 hold 4 trials, not 5. Ray counts resources in
  units of 1/10000, and so does this module (0.1 + 0.2 fits 0.3).
- Tune starts the trials in the study's order, each as soon as a slot is free, and keeps
  its workers (``reuse_actors``): a worker starts once per slot, not once per trial.

    from orchestrator.forecast import Node, parse_cluster, slots
    slots([Node(cpu=32, gpu=8)], cpu=2, gpu=0.25)   # 16: the CPUs bind before the 32 GPU shares
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from trainables.config import StudyConfigError
from trainables.schema import duration_text

UNITS = 10_000  # Ray's fixed-point resolution for resource quantities
ASSUMPTIONS = (
    "trials run as fast as the calibration measured them with {measured_at} at once on {measured_on}; "
    "every node is as fast; a worker starts once per slot (Tune reuses workers); no trial fails or is retried"
)


@dataclass(frozen=True)
class Node:
    """One node's resources as Ray sees them."""

    cpu: float
    gpu: float = 0.0

    def describe(self) -> str:
        gpus = f", {self.gpu:g} GPU" if self.gpu else ""
        return f"{self.cpu:g} CPU{gpus}"


def _units(value: float) -> int:
    return int(round(value * UNITS))


def cpu_slots(node: Node, cpu: float) -> int:
    """Trials asking ``cpu`` CPUs that ``node``'s CPUs hold at once."""
    return _units(node.cpu) // _units(cpu)


def gpu_slots(node: Node, gpu: float) -> int:
    """Trials asking a ``gpu`` share (> 0) that ``node``'s GPUs hold: a share below one never spans two GPUs."""
    whole, part = int(node.gpu), _units(node.gpu - int(node.gpu))
    if gpu >= 1:  # Ray gives a request of one or more whole GPUs
        return whole // int(gpu)
    capacities = [UNITS] * whole + ([part] if part else [])
    return sum(capacity // _units(gpu) for capacity in capacities)


def node_slots(node: Node, cpu: float, gpu: float) -> int:
    """How many trials asking ``cpu`` CPUs and ``gpu`` GPUs ``node`` runs at once (Ray's packing)."""
    by_cpu = cpu_slots(node, cpu)
    return by_cpu if gpu <= 0 else min(by_cpu, gpu_slots(node, gpu))


def slots(nodes: Sequence[Node], cpu: float, gpu: float, cap: int | None = None) -> int:
    """Trials the whole cluster runs at once: each node's :func:`node_slots`, summed, at most ``cap``."""
    total = sum(node_slots(node, cpu, gpu) for node in nodes)
    return min(total, cap) if cap is not None else total


def binding(nodes: Sequence[Node], cpu: float, gpu: float, cap: int | None = None) -> str:
    """What limits the trials at once: ``CPUs``, ``GPUs``, ``CPUs and GPUs`` (nodes differ, or a tie) or
    ``max_concurrent_trials``."""
    if cap is not None and cap < slots(nodes, cpu, gpu):
        return "max_concurrent_trials"
    if gpu <= 0:
        return "CPUs"
    limits = set()
    for node in nodes:
        by_cpu, by_gpu = cpu_slots(node, cpu), gpu_slots(node, gpu)
        if by_gpu > 0:
            limits.add("CPUs" if by_cpu < by_gpu else "GPUs" if by_gpu < by_cpu else "both")
    return "GPUs" if limits == {"GPUs"} else "CPUs" if limits == {"CPUs"} else "CPUs and GPUs"


def makespan(seconds: Sequence[float], parallel: int, startup: float = 0.0) -> float:
    """Wall seconds for trials of ``seconds`` (in the order Tune starts them) on ``parallel`` slots.

    Each trial starts on the slot that frees first; each slot's worker first takes ``startup`` seconds.
    """
    if not seconds:
        return 0.0
    if parallel < 1:
        raise ValueError("no trial fits the cluster")
    free = [startup] * min(parallel, len(seconds))
    heapq.heapify(free)
    for duration in seconds:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


_GROUP = re.compile(r"^\s*(?:(\d+)\s*[x×*]\s*)?\(?(.*?)\)?\s*$", re.IGNORECASE)
_AMOUNT = re.compile(r"(\d+(?:\.\d+)?)\s*(cpus?|gpus?)\b", re.IGNORECASE)


def parse_cluster(text: str) -> list[Node]:
    """``--cluster`` text -> nodes: groups split by ``;`` or ``+``, each ``[N x] C CPUs[, G GPUs]``.

    ``"8 GPUs, 32 CPUs"`` is one node; ``"4 x (8 GPUs, 32 CPUs); 2 x 64 CPUs"`` six.

    Raises:
        StudyConfigError: one line naming the part that is not understood.
    """
    nodes: list[Node] = []
    for part in re.split(r"[;+]", text):
        if not part.strip():
            continue
        match = _GROUP.match(part)
        body = match.group(2) if match else ""
        amounts = {"cpu": 0.0, "gpu": 0.0}
        seen = _AMOUNT.findall(body)
        leftover = _AMOUNT.sub("", body).replace(",", " ").replace("and", " ").strip()
        if not seen or leftover:
            raise StudyConfigError(
                f"--cluster: '{part.strip()}' is not '[N x] C CPUs[, G GPUs]' (e.g. '4 x (8 GPUs, 32 CPUs)')"
            )
        for amount, kind in seen:
            amounts[kind.lower().rstrip("s")] += float(amount)
        if amounts["cpu"] <= 0:
            raise StudyConfigError(f"--cluster: '{part.strip()}' has no CPUs (a Ray node needs at least one)")
        count = int(match.group(1) or 1)
        if count < 1:
            raise StudyConfigError(f"--cluster: '{part.strip()}': a group needs at least one node")
        nodes += [Node(amounts["cpu"], amounts["gpu"])] * count
    if not nodes:
        raise StudyConfigError("--cluster: no node given (e.g. '8 GPUs, 32 CPUs')")
    return nodes


def describe_cluster(nodes: Sequence[Node]) -> str:
    """``2 nodes (1 x 32 CPU, 8 GPU; 1 x 4 CPU)``: nodes of one shape counted together."""
    shapes: dict[str, int] = {}
    for node in sorted(nodes, key=lambda node: (-node.gpu, -node.cpu)):  # GPU nodes first, whatever Ray's order
        shapes[node.describe()] = shapes.get(node.describe(), 0) + 1
    inside = "; ".join(f"{count} x {shape}" if count > 1 else shape for shape, count in shapes.items())
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} ({inside})"


@dataclass(frozen=True)
class TrialCost:
    """What one trial's parts take, in seconds, as measured for its (variant, size, precision)."""

    epoch: float  # one training pass over the training set, the epoch's checkpoint included
    validation: float  # one validation pass
    test: float  # the final evaluation on every test condition
    setup: float = 0.0  # per trial: model built, data made ready
    startup: float = 0.0  # per worker (once per slot): process start and imports

    def trial_seconds(self, epochs: int, val_every: int) -> float:
        """One trial of ``epochs`` epochs validated every ``val_every`` (and at the last): not its worker's start."""
        return self.setup + epochs * self.epoch + validations(epochs, val_every) * self.validation + self.test


def validations(epochs: int, val_every: int) -> int:
    """How many epochs of ``epochs`` validate: every ``val_every``-th, and the last."""
    return sum(1 for epoch in range(epochs) if (epoch + 1) % val_every == 0 or epoch == epochs - 1)


@dataclass
class Forecast:
    """A study's cost on a cluster, from measured trial costs; :meth:`to_json` is what is saved."""

    study: str
    config_hash: str
    cluster: str  # described, e.g. "1 node (2 CPU)"
    cpu: float  # per trial
    gpu: float  # per trial, as Ray will be asked (0 on a cluster without GPUs)
    parallel: int  # trials at once
    binding: str
    wall_seconds: float  # from the first worker's start to the last trial's end
    trials_seconds: float  # from the first trial's start to the last trial's end (what the runs' times show)
    trial_hours: float
    gpu_hours: float  # GPU share x trial time
    cpu_hours: float  # CPUs x trial time
    per_variant: dict[str, dict] = field(default_factory=dict)  # variant -> trials, seconds per trial, parts
    assumptions: str = ""
    created: str = ""  # ISO time
    finished_before: int = 0  # the study's trials already finished in MLflow when it was made: not in it

    def to_json(self) -> dict:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


def forecast(
    study: str,
    config_hash: str,
    trials: Sequence[tuple[str, TrialCost, int, int]],
    nodes: Sequence[Node],
    cpu: float,
    gpu: float,
    *,
    cap: int | None = None,
    measured_at: int = 1,
    measured_on: str = "",
    created: str = "",
) -> Forecast:
    """The study's forecast: ``trials`` are (variant, cost, epochs, val_every) in the order Tune starts them.

    Raises:
        StudyConfigError: no trial fits any node of ``nodes``.
    """
    parallel = slots(nodes, cpu, gpu, cap)
    if parallel < 1:
        raise StudyConfigError(
            f"forecast: a trial asks {cpu:g} CPU and {gpu:g} GPU, more than any node of "
            f"{describe_cluster(nodes)} has: no trial could start"
        )
    seconds = [cost.trial_seconds(epochs, val_every) for _, cost, epochs, val_every in trials]
    startup = max((cost.startup for _, cost, _, _ in trials), default=0.0)
    per_variant: dict[str, dict] = {}
    for (variant, cost, epochs, val_every), trial in zip(trials, seconds, strict=True):
        entry = per_variant.setdefault(variant, {"trials": 0, "seconds": 0.0, "parts": {}})
        entry["trials"] += 1
        entry["seconds"] += trial
        entry["parts"] = {
            "epoch": cost.epoch,
            "validation": cost.validation,
            "test": cost.test,
            "setup": cost.setup,
            "startup": cost.startup,
            "epochs": epochs,
            "validations": validations(epochs, val_every),
        }
    for entry in per_variant.values():
        entry["seconds_per_trial"] = entry.pop("seconds") / entry["trials"]
    hours = sum(seconds) / 3600
    return Forecast(
        study=study,
        config_hash=config_hash,
        cluster=describe_cluster(nodes),
        cpu=cpu,
        gpu=gpu,
        parallel=min(parallel, len(seconds)) if seconds else parallel,
        binding=binding(nodes, cpu, gpu, cap),
        wall_seconds=makespan(seconds, parallel, startup),
        trials_seconds=makespan(seconds, parallel),
        trial_hours=hours,
        gpu_hours=hours * gpu,
        cpu_hours=hours * cpu,
        per_variant=dict(sorted(per_variant.items())),
        assumptions=ASSUMPTIONS.format(measured_at=measured_at, measured_on=measured_on or "this cluster"),
        created=created,
    )


def forecast_text(result: Forecast) -> str:
    """The forecast as the dry run prints it: a row per variant, then the study."""
    lines = [f"forecast for study {result.study} on {result.cluster}:"]
    lines.append(
        f"  {'variant':<16} {'trials':>6} {'s/epoch':>8} {'s/val':>7} {'s/test':>7} {'s/trial':>8} {'start-up':>9}"
    )
    for variant, entry in result.per_variant.items():
        parts = entry["parts"]
        lines.append(
            f"  {variant:<16} {entry['trials']:>6} {parts['epoch']:>8.2f} {parts['validation']:>7.2f}"
            f" {parts['test']:>7.2f} {entry['seconds_per_trial']:>8.1f} {parts['startup']:>9.1f}"
        )
    device = f"{result.gpu_hours:.2f} GPU-hours" if result.gpu else f"{result.cpu_hours:.2f} CPU-hours"
    lines.append(
        f"  {result.parallel} trial(s) at once (each asks {result.cpu:g} CPU and {result.gpu:g} GPU; "
        f"{result.binding} bind); wall time {duration_text(result.wall_seconds)}; "
        f"{result.trial_hours:.2f} trial-hours, {device}"
    )
    lines.append(f"  assumes: {result.assumptions}")
    if result.finished_before:
        lines.append(f"  not in it: the {result.finished_before} trial(s) already finished in MLflow")
    return "\n".join(lines)

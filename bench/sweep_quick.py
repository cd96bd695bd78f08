"""Wall time of a study: the hand-written loop vs the orchestrator, in one bench run.

    python -m bench.sweep_quick --config conf/quick.yaml --concurrent 2

(a) baseline: every trial one after another in this process with ``run_trial``;
(b) ``python -m orchestrator.run`` on a local Ray cluster it starts itself, with
``--concurrent`` trials at once (each asks ``cpu = cores / concurrent``). Each gets a
fresh MLflow store and a warm data cache, so both measure training and tracking.
Prints both wall times, their ratio and the Ray start-up overhead.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from orchestrator.expand import expand
from trainables.config import load_study, parse_study
from trainables.datasets.synthetic.prepare import prepare_synthetic
from trainables.trial import run_trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep_quick")
    parser.add_argument("--config", default="conf/quick.yaml")
    parser.add_argument("--concurrent", type=int, default=2)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    data = load_study(args.config).model_dump(mode="json")
    data["resources"]["cpu"] = cores / args.concurrent
    data["resources"]["gpu"] = 0
    study = parse_study(data)
    specs = expand(study)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        prepare_synthetic(study, root / "cache")
        started = time.perf_counter()
        for spec in specs:
            run_trial(
                spec,
                study,
                work_dir=root / "loop" / spec.trial_id,
                tracking_uri=f"sqlite:///{root}/loop.db",
                cache_root=root / "cache",
            )
        loop_seconds = time.perf_counter() - started

        config = root / "study.yaml"
        config.write_text(yaml.safe_dump(data))
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator.run",
                "--config",
                str(config),
                "--tracking-uri",
                f"sqlite:///{root}/sweep.db",
                "--storage",
                str(root / "results"),
                "--cache",
                str(root / "cache"),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SystemExit(f"the orchestrator failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
        sweep_seconds = time.perf_counter() - started
    inner = re.search(r"sweep took ([\d.]+) s", result.stdout)
    sweep_inner = float(inner.group(1)) if inner else float("nan")
    print(f"trials: {len(specs)}, cores: {cores}, concurrent trials: {args.concurrent}")
    print(f"(a) sequential run_trial loop:   {loop_seconds:7.1f} s")
    print(f"(b) orchestrator, whole command: {sweep_seconds:7.1f} s  (Tune sweep itself {sweep_inner:.1f} s)")
    print(
        f"ratio (b)/(a): {sweep_seconds / loop_seconds:.2f}; "
        f"Ray start-up and driver overhead: {sweep_seconds - sweep_inner:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Hand-made MLflow studies for the analysis tests: real SQLite stores, no training.

:func:`log_trial` writes one trial run exactly as the trial contract says (tags, params,
metric histories, ``per_image.parquet`` and ``split_manifest.json`` artifacts).
:func:`build_toy_store` builds the study the tests compute by hand:

synthetic, alphas 0.3 and 0.7, seeds 0 and 1, two test images per tested alpha:
    noskip_unet  dice(image i, seed s) = 0.40 + 0.10 i + 0.10 s        (every trained/tested alpha)
                 -> mean over images 0.45 (seed 0), 0.55 (seed 1)
    unet         dice = noskip dice + DELTA[(trained, tested)] -/+ 0.01 (image 0 / image 1)
    unet a0.70 s1 synthetic FAILED, attention_unet a0.30 s0 synthetic still RUNNING.
busi, seeds 0 and 1, test levels harder / in_domain / easier, images b0 and b1: BUSI_DICE below.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from analysis.frames import DATA_FILES, file_record

STUDY = "toy_study"
CONFIG_HASH = "cfg0001"
DELTA = {(0.3, 0.3): 0.09, (0.3, 0.7): -0.045, (0.7, 0.7): 0.11, (0.7, 0.3): 0.0}
BUSI_DICE = {  # (variant, level, seed) -> dice of images b0, b1
    ("noskip_unet", "harder", 0): (0.50, 0.60),
    ("noskip_unet", "harder", 1): (0.55, 0.65),
    ("noskip_unet", "in_domain", 0): (0.60, 0.80),
    ("noskip_unet", "in_domain", 1): (0.70, 0.90),
    ("noskip_unet", "easier", 0): (0.70, 0.80),
    ("noskip_unet", "easier", 1): (0.75, 0.85),
    ("unet", "harder", 0): (0.40, 0.50),
    ("unet", "harder", 1): (0.45, 0.55),
    ("unet", "in_domain", 0): (0.80, 0.90),
    ("unet", "in_domain", 1): (0.85, 0.95),
    ("unet", "easier", 0): (0.85, 0.90),
    ("unet", "easier", 1): (0.90, 0.95),
}
BUSI_HD95 = {"noskip_unet": (10.0, 12.0), "unet": (8.0, 9.0)}  # per image, every level and seed
TRAIN_LOSS = [1.0, 0.8, 0.6, 0.5]
VAL_DICE = {1: 0.4, 3: 0.7}


def create_study(client: MlflowClient, root: Path, study: str) -> str:
    """An experiment named after the study, its artifacts under ``root``."""
    location = (root / "artifacts" / study).as_uri()
    return client.create_experiment(study, artifact_location=location, tags={"skipsweep.study": study})


def log_trial(
    client: MlflowClient,
    experiment_id: str,
    *,
    study: str,
    dataset: str,
    variant: str,
    seed: int,
    per_image: pd.DataFrame,
    train_alpha: float | None = None,
    status: str = "FINISHED",
    config_hash: str = CONFIG_HASH,
    split_hash: str | None = None,
) -> str:
    """Log one trial run following the MLflow contract of the trial; returns its run id."""
    alpha = "" if train_alpha is None else f"{train_alpha:.2f}"
    name = f"{variant} a{alpha} s{seed} {dataset}" if alpha else f"{variant} s{seed} {dataset}"
    split_hash = split_hash or f"split-{dataset}"
    tags = {
        "skipsweep.kind": "trial",
        "skipsweep.trial_id": name.replace("/", "-"),
        "study": study,
        "dataset": dataset,
        "variant": variant,
        "train_alpha": alpha,
        "seed": str(seed),
        "config_hash": config_hash,
        "split_hash": split_hash,
        "git_commit": "abc123",
        "skipsweep.status": "running",
    }
    run_id = client.create_run(experiment_id, tags=tags, run_name=name).info.run_id
    params = {
        "learning_rate": "0.001",
        "batch_size": "8",
        "epochs": str(len(TRAIN_LOSS)),
        "val_every": "2",
        "image_size": "64",
        "channels": "(16, 32)",
    }
    metrics = [Metric("train_loss", loss, 1000 + epoch, epoch) for epoch, loss in enumerate(TRAIN_LOSS)]
    metrics += [Metric("epoch_seconds", 2.0, 1000 + epoch, epoch) for epoch in range(len(TRAIN_LOSS))]
    metrics += [Metric("val_dice", dice, 1000 + epoch, epoch) for epoch, dice in VAL_DICE.items()]
    if status == "FINISHED":
        metrics += [Metric("best_val_dice", max(VAL_DICE.values()), 2000, 0), Metric("best_epoch", 3.0, 2000, 0)]
        for condition, block in per_image.groupby("condition"):
            for metric in ("dice", "hd95", "asd", "nsd"):
                if metric in block:
                    metrics.append(Metric(f"test_{metric}.{condition}", float(block[metric].mean()), 3000, 0))
    client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    if status == "RUNNING":
        return run_id
    if status == "FINISHED":
        with tempfile.TemporaryDirectory() as scratch:
            table = Path(scratch) / "per_image.parquet"
            per_image.to_parquet(table, index=False)
            manifest = Path(scratch) / "split_manifest.json"
            ids = sorted(per_image["image_id"].unique())
            manifest.write_text(
                json.dumps({"dataset": dataset, "train": [], "val": [], "test": ids, "hash": split_hash})
            )
            client.log_artifact(run_id, str(table))
            client.log_artifact(run_id, str(manifest))
    client.set_tag(run_id, "skipsweep.status", status.lower())
    if status == "FAILED":
        client.set_tag(run_id, "error", "CUDA out of memory")
    client.set_terminated(run_id, status=status)
    return run_id


def synthetic_images(variant: str, train_alpha: float, seed: int) -> pd.DataFrame:
    """Per-image results of a synthetic run tested on alphas 0.3 and 0.7 (see the module docstring)."""
    rows = []
    for test_alpha in (0.3, 0.7):
        for image in (0, 1):
            dice = 0.40 + 0.10 * image + 0.10 * seed
            if variant != "noskip_unet":
                dice += DELTA[(train_alpha, test_alpha)] + (0.01 if image else -0.01)
            rows.append(
                {
                    "condition": f"alpha_{test_alpha:.2f}",
                    "test_alpha": test_alpha,
                    "image_id": f"img{image}",
                    "dice": dice,
                    "ts": 2.0 * test_alpha + 0.1 * image,
                }
            )
    return pd.DataFrame(rows)


def busi_images(variant: str, seed: int) -> pd.DataFrame:
    """Per-image results of a BUSI run on three test levels, with HD95 (see :data:`BUSI_DICE`)."""
    rows = []
    for level in ("harder", "in_domain", "easier"):
        for image, dice in enumerate(BUSI_DICE[(variant, level, seed)]):
            rows.append(
                {
                    "condition": level,
                    "test_alpha": float("nan"),
                    "image_id": f"b{image}",
                    "dice": dice,
                    "ts": 0.5 + image,
                    "hd95": BUSI_HD95[variant][image],
                }
            )
    return pd.DataFrame(rows)


def build_toy_store(root: Path) -> str:
    """Create the toy study (and two refused studies) in a SQLite store under ``root``; returns the URI.

    Besides :data:`STUDY`, the store holds ``mixed_config`` (two runs with different config hashes)
    and ``mixed_split`` (two runs of one data set with different split hashes).
    """
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = create_study(client, root, STUDY)
    for variant in ("noskip_unet", "unet"):
        for alpha in (0.3, 0.7):
            for seed in (0, 1):
                status = "FAILED" if (variant, alpha, seed) == ("unet", 0.7, 1) else "FINISHED"
                log_trial(
                    client,
                    experiment,
                    study=STUDY,
                    dataset="synthetic",
                    variant=variant,
                    seed=seed,
                    train_alpha=alpha,
                    per_image=synthetic_images(variant, alpha, seed),
                    status=status,
                )
        for seed in (0, 1):
            log_trial(
                client,
                experiment,
                study=STUDY,
                dataset="busi",
                variant=variant,
                seed=seed,
                per_image=busi_images(variant, seed),
            )
    log_trial(
        client,
        experiment,
        study=STUDY,
        dataset="synthetic",
        variant="attention_unet",
        seed=0,
        train_alpha=0.3,
        per_image=synthetic_images("unet", 0.3, 0),
        status="RUNNING",
    )
    for study, changes in (("mixed_config", {"config_hash": "cfg0002"}), ("mixed_split", {"split_hash": "other"})):
        experiment = create_study(client, root, study)
        log_trial(
            client, experiment, study=study, dataset="busi", variant="unet", seed=0, per_image=busi_images("unet", 0)
        )
        log_trial(
            client,
            experiment,
            study=study,
            dataset="busi",
            variant="unet",
            seed=1,
            per_image=busi_images("unet", 1),
            **changes,
        )
    return uri


CLAIM_ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
SEED_SIGNS = (1.0, -1.0, 0.5, -0.5, 0.0, 0.25, -0.25)


@dataclass(frozen=True)
class ClaimScenario:
    """A study written straight to Parquet, built so that each claim of the papers is true or false at will.

    Per-image Dice of variant v trained on alpha a (index j in ``alphas``) with seed s, image i; a medical data set
    is trained "at" a = 0.7 with ``medical_gains`` instead of ``gains``:

        in-domain   D = 0.5 + 0.4 a + gains[v][a] + seed_noise[v] * SEED_SIGNS[s]
                        + jagged[v] * (-1)^j * (1 + 0.25 s) + 0.01 (i - 4.5) / 4.5
        tested on b D * (1 - ood_loss[v] |a - b|); on a test level: D * (1 - ood_loss[v] * LEVEL_LOSS[level])

    With ``hd95``, an image's HD95 is 20 (1 - Dice). TS of an image: 0.1 + 0.5 a + 0.01 i, times
    ``level_ts[level]`` on a test level. The defaults make every claim of :data:`analysis.claims.CLAIMS` true
    (on the medical data sets named in ``medical``).
    """

    gains: dict = field(default_factory=lambda: {"attention_unet": {0.1: 0.20, 0.2: 0.15}})
    medical_gains: dict = field(default_factory=lambda: {"attention_unet": 0.1})
    seed_noise: dict = field(default_factory=lambda: {"noskip_unet": 0.004, "unet": 0.012, "attention_unet": 0.0})
    jagged: dict = field(default_factory=lambda: {"unet": 0.003})
    ood_loss: dict = field(default_factory=lambda: {"noskip_unet": 0.1, "unet": 0.5, "attention_unet": 0.5})
    level_ts: dict = field(default_factory=lambda: {"harder": 0.5, "in_domain": 1.0, "easier": 1.5})
    variants: tuple = ("noskip_unet", "unet", "attention_unet")
    alphas: tuple = CLAIM_ALPHAS
    seeds: tuple = (0, 1, 2, 3, 4)
    n_images: int = 10
    medical: tuple = ()
    hd95: bool = False
    params: dict = field(default_factory=dict)  # extra run params, e.g. {"precision": ["bf16", "none"]} per run


LEVEL_LOSS = {"harder": 0.5, "in_domain": 0.0, "easier": 0.25}


def scenario_frames(scenario: ClaimScenario) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``runs.parquet`` and ``per_image.parquet`` frames of a :class:`ClaimScenario`."""
    runs, images = [], []
    keys = [("synthetic", alpha) for alpha in scenario.alphas] + [(name, None) for name in scenario.medical]
    for dataset, alpha in keys:
        for variant in scenario.variants:
            for seed in scenario.seeds:
                run_id = f"{variant}-{dataset}-{alpha}-{seed}"
                row = {"run_id": run_id, "run_name": run_id, "dataset": dataset, "variant": variant}
                row |= {"train_alpha": float("nan") if alpha is None else alpha, "seed": seed, "status": "FINISHED"}
                for name, values in scenario.params.items():
                    row[f"param.{name}"] = values[len(runs) % len(values)]
                runs.append(row)
                images += _scenario_images(scenario, run_id, variant, seed, alpha)
    return pd.DataFrame(runs), pd.DataFrame(images)


def _scenario_base(scenario: ClaimScenario, variant: str, seed: int, train_alpha: float | None) -> float:
    alpha = 0.7 if train_alpha is None else train_alpha
    base = 0.5 + 0.4 * alpha + scenario.seed_noise.get(variant, 0.0) * SEED_SIGNS[seed]
    if train_alpha is None:
        return base + scenario.medical_gains.get(variant, 0.0)
    sign = (-1) ** scenario.alphas.index(train_alpha)
    return (
        base
        + scenario.gains.get(variant, {}).get(alpha, 0.0)
        + scenario.jagged.get(variant, 0.0) * sign * (1 + 0.25 * seed)
    )


def _scenario_images(scenario, run_id, variant, seed, train_alpha) -> list[dict]:
    base = _scenario_base(scenario, variant, seed, train_alpha)
    alpha = 0.7 if train_alpha is None else train_alpha
    loss = scenario.ood_loss.get(variant, 0.0)
    conditions = (
        [] if train_alpha is None else [(f"alpha_{b:.2f}", b, 1 - loss * abs(alpha - b), 1.0) for b in scenario.alphas]
    )
    conditions += [(level, float("nan"), 1 - loss * LEVEL_LOSS[level], ts) for level, ts in scenario.level_ts.items()]
    rows = []
    for condition, tested, factor, ts_factor in conditions:
        test_alpha = alpha if np.isnan(tested) else tested
        for image in range(scenario.n_images):
            dice = (base + 0.01 * (image - 4.5) / 4.5) * factor
            ts = (0.1 + 0.5 * test_alpha + 0.01 * image) * ts_factor
            row = {"run_id": run_id, "condition": condition, "test_alpha": tested, "image_id": f"i{image}"}
            row |= {"dice": dice, "ts": ts}
            if scenario.hd95:
                row["hd95"] = 20.0 * (1.0 - dice)
            rows.append(row)
    return rows


def write_export(folder: Path, runs: pd.DataFrame, per_image: pd.DataFrame, study: str = "claims_study") -> Path:
    """Write an export folder (the three Parquet files and ``export.json``) as ``analysis export`` would."""
    folder.mkdir(parents=True, exist_ok=True)
    epochs = pd.DataFrame(
        [
            {"run_id": r, "epoch": e, "train_loss": 1.0 - 0.2 * e, "val_dice": 0.5 + 0.1 * e}
            for r in runs["run_id"]
            for e in range(2)
        ]
    )
    runs.to_parquet(folder / "runs.parquet", index=False)
    epochs.to_parquet(folder / "epochs.parquet", index=False)
    per_image.to_parquet(folder / "per_image.parquet", index=False)
    files = {name: file_record(folder / name) for name in DATA_FILES}  # written last, like the real export
    manifest = {"study": study, "n_runs": len(runs), "excluded": [], "files": files}
    (folder / "export.json").write_text(json.dumps(manifest))
    return folder

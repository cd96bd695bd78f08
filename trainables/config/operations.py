"""Operational sections of a study: cluster resources, run tracking, file storage.

None of them changes a trial's result, so none is part of the config hash.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from trainables.config.base import Section


class ResourcesConfig(Section):
    """What each trial asks the cluster for."""

    cpu: float = Field(1.0, gt=0, description="CPUs per trial.")
    gpu: float = Field(0.25, ge=0, le=1, description="Fraction of a GPU per trial (0.25: four trials share one).")
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Cap on trials running at once; null = as resources allow."
    )
    max_failures: int = Field(2, ge=0, description="Retries of a failed trial from its last checkpoint.")
    require_gpu: bool = Field(
        False,
        description="Refuse to train on a CPU: a cluster without GPUs is refused before any trial starts (instead "
        "of running on CPUs), and a trial given a GPU share on a node where CUDA is not usable fails at once.",
    )


class TrackingConfig(Section):
    """Where runs are logged."""

    uri: str | None = Field(
        None,
        description="MLflow tracking URI; null = $MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the working directory.",
    )
    experiment: str | None = Field(None, description="MLflow experiment; null = the study name.")
    retries: int = Field(
        8,
        ge=1,
        le=50,
        description="Attempts per tracking call before the trial fails (waits double from retry_wait, at most 30 s "
        "each: the default rides out about a minute of a server that is down).",
    )
    retry_wait: float = Field(0.5, gt=0, le=60, description="First wait between attempts, in seconds.")
    system_metrics_seconds: Annotated[float, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="Sampling interval of the system metrics in each trial run (MLflow's machine-wide "
        "system/cpu_utilization_percentage, memory, GPU with nvidia-ml-py; the trial process's own "
        "system/process_cpu_percent and system/process_rss_megabytes): seconds, 0 = off, or auto = about 20 "
        "samples over the trial's expected length (re-estimated each epoch; 1 to 60 s apart).",
    )
    prediction_examples: int = Field(
        3,
        ge=0,
        le=8,
        description="Test images per shown condition in each run's predictions.png (image, ground truth and "
        "prediction outlines, Dice; the same images in every trial of a data set); 0 = no picture.",
    )


class StorageConfig(Section):
    """Where files go."""

    results: str = Field(
        "ray_results", description="Ray Tune storage path (a shared file system or object store on a cluster)."
    )
    cache: str = Field(".skipsweep_cache", description="Per-node cache of prepared data sets.")

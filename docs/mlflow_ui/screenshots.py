"""Screenshots of a study in MLflow's UI, as a researcher sees it: the runs, the study's view (Dice against
train_alpha per variant, the curves, the trials' resources), one run's curves and system metrics, and its
predictions picture; for a study with a tuning stage, the tuning's view.

    python docs/mlflow_ui/screenshots.py --tracking-uri sqlite:///mlflow.db --experiment quick --out docs/mlflow_ui

Starts ``mlflow ui`` on a free loopback port, drives Debian's ``chromium`` headless through
Playwright (``pip install playwright``; no browser download: the system one is used), saves PNGs
and stops the server. The UI's markup is MLflow's and changes between releases: a step that does
not find what it looks for says so and the other screenshots are still taken.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from bench.tracking_latency import free_port, serving
from orchestrator.driver import runs_page
from trainables.tracking.view import TUNING_VIEW_KEY, TUNING_VIEW_TAG, view_address

VIEWPORT = {"width": 1500, "height": 950}
TALL = {"width": 1500, "height": 1900}
MODEL_TRAINING = "workflowType=machine_learning"  # MLflow 3.17's UI opens in its GenAI mode without it


@contextlib.contextmanager
def mlflow_ui(uri: str):
    """``mlflow ui`` on a free loopback port for the block; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1"]
    with serving([*command, "--port", str(port)], port, subprocess.DEVNULL, f"store {uri}") as base:
        yield base


def shoot(page, path: Path, what: str) -> None:
    page.wait_for_timeout(2500)  # charts draw after their data arrive
    page.screenshot(path=str(path))
    print(f"wrote {path} ({what})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True, help="the study's experiment name")
    parser.add_argument("--out", default="docs/mlflow_ui", help="folder for the PNGs")
    args = parser.parse_args(argv)
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        print("error: no chromium on PATH (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    client = MlflowClient(args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        print(f"error: {args.tracking_uri} has no experiment '{args.experiment}'", file=sys.stderr)
        return 2
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.run_name ASC"])
    run = next((r for r in runs if "predictions.png" in {a.path for a in client.list_artifacts(r.info.run_id)}), None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with mlflow_ui(args.tracking_uri) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        experiment_url = f"{base}/#/experiments/{experiment.experiment_id}"
        view = f"{base}/{runs_page(experiment.experiment_id)}"  # the address the driver prints
        page.goto(view.replace("&compareRunsMode=CHART", ""))  # the same view, as a table
        page.wait_for_selector("text=Run Name", timeout=60_000)
        close_assistant(page)
        shoot(page, out / "1_runs.png", "the runs table")
        page.set_viewport_size(TALL)  # the view's three sections
        page.goto(view)
        found = study_view_shown(page)
        shoot(page, out / "2_study_view.png", "the study's view: Dice against train_alpha, one colour per variant")
        page.set_viewport_size(VIEWPORT)
        if run is not None:
            page.goto(f"{experiment_url}/runs/{run.info.run_id}/model-metrics?{MODEL_TRAINING}")
            shoot(page, out / "3_run_metrics.png", f"the curves of {run.info.run_name}")
            page.goto(f"{experiment_url}/runs/{run.info.run_id}/system-metrics?{MODEL_TRAINING}")
            shoot(page, out / "4_run_system_metrics.png", "its system metrics")
            page.goto(f"{experiment_url}/runs/{run.info.run_id}/artifacts/predictions.png?{MODEL_TRAINING}")
            shoot(page, out / "5_run_predictions.png", "its predictions picture")
        if TUNING_VIEW_TAG in experiment.tags:  # a study with a tune: section: its tuning's own view
            page.set_viewport_size(TALL)
            page.goto(f"{base}/{view_address(experiment.experiment_id, TUNING_VIEW_KEY)}")
            page.get_by_text("Best validation Dice against", exact=False).first.wait_for(timeout=30_000)
            shoot(
                page, out / "7_tuning_view.png", "the tuning's view: best validation Dice against each searched field"
            )
        browser.close()
    if not found:
        print("error: the study's view did not open (no 'Dice against' section on the page)", file=sys.stderr)
        return 1
    return 0


def study_view_shown(page) -> bool:
    """Whether the page shows the study's view: its first section, and no "share key" error."""
    try:
        page.get_by_text("Dice against", exact=False).first.wait_for(timeout=30_000)
    except Exception:  # noqa: BLE001 - Playwright's timeout: the view is not there
        return False
    return page.get_by_text("Error loading shared view state").count() == 0


def close_assistant(page) -> None:
    """MLflow 3.17 opens an assistant panel beside every page; it is not what these pictures are about."""
    with contextlib.suppress(Exception):
        page.get_by_role("button", name="Close").first.click(timeout=3000)


if __name__ == "__main__":
    raise SystemExit(main())

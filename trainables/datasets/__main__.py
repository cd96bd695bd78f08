"""Prepare a study's data sets into the cache and describe them, or draw a figure of one data set.

python -m trainables.datasets prepare --config conf/quick.yaml                    # every data set of the study
python -m trainables.datasets prepare --config conf/example_medical_tiny.yaml     # slices per split, TS per test level
python -m trainables.datasets preview --config conf/quick.yaml --out preview.png  # images and TS per alpha level
python -m trainables.datasets preview --config conf/example_medical_tiny.yaml --dataset spleen --out spleen.png
"""

from __future__ import annotations

import argparse
import logging
import sys

from trainables.config import StudyConfig, StudyConfigError, load_study
from trainables.datasets.medical.layouts import MedicalDataError
from trainables.datasets.medical.prepare import load_medical
from trainables.datasets.medical.preview import medical_preview_figure
from trainables.datasets.registry import check_data, is_synthetic, prepare_dataset, prepare_report, trial_data
from trainables.datasets.synthetic.prepare import load_synthetic
from trainables.datasets.synthetic.preview import preview_figure


def main(argv: list[str] | None = None) -> int:
    """``prepare`` builds the cache and prints TS per level; ``preview`` writes a figure of one data set too."""
    parser = argparse.ArgumentParser(prog="python -m trainables.datasets", description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("prepare", "preview"):
        command = sub.add_parser(name)
        command.add_argument("--config", default="conf/quick.yaml", help="study file (default: conf/quick.yaml)")
        command.add_argument("--cache", default=None, help="cache folder (default: the study's storage.cache)")
        if name == "preview":
            command.add_argument("--out", default="preview.png", help="figure file (PNG or PDF)")
            command.add_argument(
                "--dataset",
                default=None,
                help="data set to draw (default: synthetic if the study has it, else its first data set)",
            )
            command.add_argument("--examples", type=int, default=3, help="example images per level (and per split)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_study(args.config)
        check_data(config, args.config)
    except StudyConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    names = config.datasets.names
    if args.command == "preview":
        names = (args.dataset or ("synthetic" if "synthetic" in names else names[0]),)
        if names[0] not in config.datasets.names:
            known = ", ".join(config.datasets.names)
            print(f"error: {args.config}: --dataset {names[0]}: the study's data sets are {known}", file=sys.stderr)
            return 2
    cache = args.cache or config.storage.cache
    for name in names:
        try:
            print(prepare_report(config, name, cache))
        except MedicalDataError as error:
            print(f"error: {args.config}: datasets.{name}: {error}", file=sys.stderr)
            return 2
    if args.command == "preview":
        preview(config, names[0], cache, args.out, args.examples)
    return 0


def preview(config: StudyConfig, name: str, cache: str, out: str, examples: int) -> None:
    """Write the figure of data set ``name`` (already prepared): by alpha level if synthetic, by test level if not."""
    folder = prepare_dataset(config, name, cache)
    if is_synthetic(name):
        figure = preview_figure(load_synthetic(folder), examples=examples, title=f"{config.study}: {name} by alpha")
    else:
        conditions = trial_data(config, name, None, cache).conditions
        title = f"{config.study}: {name} (no alpha levels: difficulty moves with the test levels)"
        figure = medical_preview_figure(load_medical(folder), conditions, examples=examples, title=title)
    figure.savefig(out, dpi=120, bbox_inches="tight")
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())

"""Prepare a study's data sets into the cache and describe them, or look at the synthetic data set.

python -m trainables.datasets prepare --config conf/quick.yaml                    # every data set of the study
python -m trainables.datasets prepare --config conf/example_medical_tiny.yaml     # slices per split, TS per test level
python -m trainables.datasets preview --config conf/quick.yaml --out preview.png
"""

from __future__ import annotations

import argparse
import logging
import sys

from trainables.config import StudyConfigError, load_study
from trainables.datasets.medical.layouts import MedicalDataError
from trainables.datasets.registry import check_data, prepare_dataset, prepare_report
from trainables.datasets.synthetic.prepare import load_synthetic
from trainables.datasets.synthetic.preview import preview_figure


def main(argv: list[str] | None = None) -> int:
    """``prepare`` builds the cache and prints TS per level; ``preview`` writes a figure too."""
    parser = argparse.ArgumentParser(prog="python -m trainables.datasets", description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("prepare", "preview"):
        command = sub.add_parser(name)
        command.add_argument("--config", default="conf/quick.yaml", help="study file (default: conf/quick.yaml)")
        command.add_argument("--cache", default=None, help="cache folder (default: the study's storage.cache)")
        if name == "preview":
            command.add_argument("--out", default="preview.png", help="figure file (PNG or PDF)")
            command.add_argument("--examples", type=int, default=3, help="example images per level")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_study(args.config)
        check_data(config, args.config)
    except StudyConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "preview" and config.datasets.synthetic is None:
        print(f"error: {args.config}: datasets.synthetic: this command needs the synthetic data set", file=sys.stderr)
        return 2
    cache = args.cache or config.storage.cache
    for name in config.datasets.names if args.command == "prepare" else ("synthetic",):
        try:
            print(prepare_report(config, name, cache))
        except MedicalDataError as error:
            print(f"error: {args.config}: datasets.{name}: {error}", file=sys.stderr)
            return 2
    if args.command == "preview":
        data = load_synthetic(prepare_dataset(config, "synthetic", cache))
        figure = preview_figure(data, examples=args.examples, title=f"{config.study}: synthetic data by alpha")
        figure.savefig(args.out, dpi=120, bbox_inches="tight")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

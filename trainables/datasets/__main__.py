"""Prepare a study's data sets into the cache and describe them, or draw a figure of one data set.

python -m trainables.datasets prepare --config conf/quick.yaml                    # every data set of the study
python -m trainables.datasets prepare --config conf/example_medical_tiny.yaml     # slices per split, TS per test level
python -m trainables.datasets preview --config conf/quick.yaml --out preview.png  # images and TS per alpha level
python -m trainables.datasets preview --config conf/example_medical_tiny.yaml --dataset spleen --out spleen.png
python -m trainables.datasets preview --config conf/glas_cpu.yaml --beside conf/miccai2023_cpu.yaml --out ts.png
                                  # TS only, no image: the medical levels beside the other study's alpha levels
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainables.config import StudyConfig, StudyConfigError, load_study
from trainables.datasets.medical.layouts import MedicalDataError
from trainables.datasets.medical.prepare import load_medical
from trainables.datasets.medical.preview import medical_preview_figure
from trainables.datasets.registry import check_data, is_synthetic, prepare_dataset, prepare_report, trial_data
from trainables.datasets.synthetic.prepare import load_synthetic
from trainables.datasets.synthetic.preview import preview_figure
from trainables.datasets.ts_axis import comparable_ts, distribution, placement_lines, ts_axis_figure
from trainables.files import replacing
from trainables.schema import format_alpha


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
            command.add_argument(
                "--beside",
                default=None,
                metavar="STUDY",
                help="a study with a synthetic data set: draw the medical data set's TS per test level beside its"
                " alpha levels' instead (TS only, no image)",
            )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_study(args.config)
        check_data(config, args.config)
        beside = _beside_study(args, config) if args.command == "preview" and args.beside else None
        if args.command == "preview":
            _check_out(args.out)
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
        if beside is not None and is_synthetic(names[0]):
            print(f"error: --beside draws a medical data set, not {names[0]} (name one: --dataset)", file=sys.stderr)
            return 2
    cache = args.cache or config.storage.cache
    for name in names:
        try:
            print(prepare_report(config, name, cache))
        except MedicalDataError as error:
            print(f"error: {args.config}: datasets.{name}: {error}", file=sys.stderr)
            return 2
    if args.command == "preview" and beside is not None:
        on_the_ts_axis(config, names[0], beside, cache, args.out)
    elif args.command == "preview":
        preview(config, names[0], cache, args.out, args.examples)
    return 0


def _check_out(out: str) -> None:
    """Refuse a figure file that could not be written, before any data is prepared."""
    path = Path(out)
    if path.suffix.lower() not in (".png", ".pdf"):
        raise StudyConfigError(f"--out {out}: a figure is written as .png or .pdf")
    if not path.parent.is_dir():
        raise StudyConfigError(f"--out {out}: folder {path.parent} does not exist")


def _beside_study(args: argparse.Namespace, config: StudyConfig) -> StudyConfig:
    """The study named by ``--beside``, checked: it has a synthetic data set measured with the same TS."""
    other = load_study(args.beside)
    if "synthetic" not in other.datasets.names:
        raise StudyConfigError(f"--beside {args.beside}: the study has no synthetic data set to compare with")
    why = comparable_ts(config, other)
    if why:
        raise StudyConfigError(f"--beside {args.beside}: {why} from {args.config}; TS values would not compare")
    return other


def on_the_ts_axis(config: StudyConfig, name: str, beside: StudyConfig, cache: str, out: str) -> None:
    """Write the TS-axis figure of medical data set ``name`` beside ``beside``'s synthetic levels; print placements."""
    synthetic_data = load_synthetic(prepare_dataset(beside, "synthetic", cache))
    synthetic = [
        distribution(f"alpha {format_alpha(alpha)}", ts, synthetic=True)
        for alpha, ts in zip(synthetic_data.alphas, synthetic_data.ts, strict=True)
    ]
    medical = [
        distribution(f"{name} {condition.name}", condition.ts, synthetic=False)
        for condition in trial_data(config, name, None, cache).conditions
    ]
    print(f"{name} on the texture axis of {beside.study}'s synthetic levels (nearest by median TS):")
    print("\n".join(placement_lines(medical, synthetic)))
    title = f"{config.study}: {name} per test level beside {beside.study}'s synthetic alpha levels (per-image TS)"
    figure = ts_axis_figure(synthetic, medical, title=title)
    write_figure(figure, out)
    print(f"wrote {out}")


def preview(config: StudyConfig, name: str, cache: str, out: str, examples: int) -> None:
    """Write the figure of data set ``name`` (already prepared): by alpha level if synthetic, by test level if not."""
    folder = prepare_dataset(config, name, cache)
    if is_synthetic(name):
        figure = preview_figure(load_synthetic(folder), examples=examples, title=f"{config.study}: {name} by alpha")
    else:
        conditions = trial_data(config, name, None, cache).conditions
        title = f"{config.study}: {name} (no alpha levels: difficulty moves with the test levels)"
        figure = medical_preview_figure(load_medical(folder), conditions, examples=examples, title=title)
    write_figure(figure, out)
    print(f"wrote {out}")


def write_figure(figure, out: str) -> None:
    """Save ``figure`` as PNG or PDF (by ``out``'s suffix), never half-written."""
    with replacing(out) as temporary:
        figure.savefig(temporary, dpi=120, bbox_inches="tight", format=Path(out).suffix.lower().lstrip("."))


if __name__ == "__main__":
    raise SystemExit(main())

"""Validate study files, check the data they name, and print each resolved as JSON.

A bad file exits with status 2 and a one-line error that names the file and the key.

    python -m trainables.config conf/quick.yaml   # validate and print a study
"""

from __future__ import annotations

import argparse
import json
import sys

from trainables.config.loading import StudyConfigError, load_study
from trainables.datasets.registry import check_data  # the data checks build on the schema; only this command reads disk


def main(argv: list[str] | None = None) -> int:
    """Validate study files, check the data files they name, print them as resolved JSON; exit status 2 on a bad one."""
    parser = argparse.ArgumentParser(prog="python -m trainables.config", description=__doc__.strip().splitlines()[0])
    parser.add_argument("studies", nargs="+", metavar="STUDY.yaml", help="study files, e.g. conf/quick.yaml")
    args = parser.parse_args(argv)
    for name in args.studies:
        try:
            config = load_study(name)
            check_data(config, name)
        except StudyConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(json.dumps(config.model_dump(mode="json"), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Validate study files, check the data they name, and print each resolved as JSON.

A bad file exits with status 2 and a one-line error that names the file and the key.

    python -m trainables.config conf/quick.yaml   # validate and print a study
"""

from __future__ import annotations

import json
import sys

from trainables.config.loading import StudyConfigError, load_study
from trainables.datasets.registry import check_data  # the data checks build on the schema; only this command reads disk


def main(argv: list[str] | None = None) -> int:
    """Validate study files, check the data files they name, print them as resolved JSON; exit status 2 on a bad one."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m trainables.config STUDY.yaml [...]", file=sys.stderr)
        return 2
    for name in argv:
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

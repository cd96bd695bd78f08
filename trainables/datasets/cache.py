"""A content-addressed, crash-safe, multi-process cache of prepared data sets.

A prepared data set lives in ``<root>/<name>-<key>/`` where ``key`` hashes
everything it was made from. It is built in a temporary sibling folder and renamed
into place (atomic on one file system), under a file lock, so that many trials
starting at once on one node build it once and nobody ever reads a half-written
cache. Leftovers of a builder that was killed are removed by the next one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from trainables.config import stable_hash

log = logging.getLogger(__name__)

KEY_FILE = "cache_key.json"


def cache_path(root: str | Path, name: str, key_payload: Any) -> Path:
    """Where the cache for this content lives (it may not exist yet)."""
    return Path(root) / f"{name}-{stable_hash(key_payload)}"


def cached_directory(root: str | Path, name: str, key_payload: Any, build: Callable[[Path], None]) -> Path:
    """Return the complete cache folder for ``key_payload``, building it once if needed.

    Args:
        root: cache root folder (created if missing).
        name: a readable prefix, e.g. ``synthetic``.
        key_payload: JSON-serialisable description of everything the content depends on.
        build: writes the content into the folder it is given; called at most once
            across processes for one key (unless it fails).

    Returns:
        The folder, guaranteed complete.
    """
    final = cache_path(root, name, key_payload)
    if final.is_dir():
        return final
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if final.is_dir():
            return final
        for stale in root.glob(f".{final.name}.*"):
            log.warning("removing an incomplete cache left by a stopped process: %s", stale)
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        try:
            build(staging)
            (staging / KEY_FILE).write_text(json.dumps(key_payload, indent=2, sort_keys=True, default=str))
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final

"""Atomic file replacement (stdlib only).

A reader of ``path`` sees the old file or the new one, never half of one: the new
content goes to a temporary file in the same folder, which is then renamed over
``path`` (atomic on one file system). A failed write leaves ``path`` untouched and
removes the temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def plain_mode() -> int:
    """The permission bits a plain ``open(path, "w")`` gives a new file: ``0o666`` less the process umask."""
    mask = os.umask(0o022)  # the only portable way to read the umask is to set it; put it back at once
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on a clean exit it atomically replaces ``path``.

    Args:
        path: the file to write; its folder must exist.

    Yields:
        A fresh, empty file beside ``path`` (``.<name>.<random>.tmp``) for the caller to fill.
    """
    path = Path(path)
    descriptor, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    temporary = Path(scratch)
    try:
        yield temporary
        os.chmod(temporary, plain_mode())  # mkstemp creates 0o600: a colleague could not read the file
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that readers never see it half-written."""
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")

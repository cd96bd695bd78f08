"""Atomic file replacement, and telling a full disk apart from other write failures (stdlib only).

A reader of ``path`` sees the old file or the new one, never half of one: the new
content goes to a temporary file in the same folder, which is then renamed over
``path`` (atomic on one file system). A failed write leaves ``path`` untouched and
removes the temporary file.
"""

from __future__ import annotations

import errno
import os
import shutil
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


LOW_FREE_BYTES = 64 * 2**20  # below this, a write cut short on the disk is taken to be the disk being full
NO_SPACE = "no space left on device"
# How a write cut short by a full disk reads when the OSError was not kept: torch's checkpoint writer, a pickle
CUT_SHORT = ("unexpected pos", "PytorchStreamWriter failed", "file write failed", "pickle data was truncated")


def free_bytes(path: str | Path) -> int:
    """Free bytes on the disk holding ``path`` (or its nearest existing folder)."""
    return shutil.disk_usage(_existing(path)).free


def disk_full(error: BaseException, paths: list[str | Path]) -> str | None:
    """One line naming the fullest of ``paths`` when ``error`` comes from a full disk; None otherwise.

    A full disk is an ``OSError`` with ``ENOSPC`` anywhere in the error's chain, or a write
    cut short (torch's checkpoint writer, a truncated pickle, an ``EOFError``) while one of
    ``paths`` has less than ``LOW_FREE_BYTES`` free.

    Returns:
        ``"no space left on device: <path> has 0.0 MB free (of 3.0 MB)"``, or None.
    """
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    enospc = any(isinstance(each, OSError) and each.errno == errno.ENOSPC for each in chain)
    text = " ".join(str(each) for each in chain)
    cut_short = any(isinstance(each, EOFError) for each in chain) or any(mark in text for mark in CUT_SHORT)
    if not paths or not (enospc or cut_short):
        return None
    fullest = min(paths, key=free_bytes)
    usage = shutil.disk_usage(_existing(fullest))
    if not enospc and usage.free >= LOW_FREE_BYTES:
        return None
    return f"{NO_SPACE}: {fullest} has {usage.free / 2**20:.1f} MB free (of {usage.total / 2**20:.1f} MB)"


def _existing(path: str | Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path

"""A trial's saved state (``state.pt``): which one a trial resumes from, and a corrupt one set aside.

A ``state.pt`` that does not load (truncated by a crash mid-write on a network file system, empty after a full
disk) is moved beside the trial's work folder as ``<work folder>.state.pt.corrupt-<UTC time>`` (so it outlives a
work folder that is removed once the trial is in MLflow). The trial then resumes from an older checkpoint, if its
caller has one (the sweep passes Ray Tune's), or starts again from epoch 0, and the run says so in its
``skipsweep.state_recovered`` tag.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import torch

from trainables.schema import STATE_RECOVERED_TAG

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"  # the full training state in a trial's work folder, rewritten after every epoch
STATE_KEYS = ("model", "best_model", "optimizer", "generator", "next_epoch", "best_val_dice", "best_epoch", "history")


def state_to_resume(work_dir: str | Path, fallback: str | Path | None = None) -> dict[str, str]:
    """Leave in ``work_dir`` the ``state.pt`` a trial resumes from, when there is one that loads.

    ``work_dir``'s own state comes first (it is the newest); when it is absent or corrupt (set aside), the one in
    ``fallback`` is copied in and checked the same way.

    Args:
        work_dir: the trial's work folder.
        fallback: a folder holding an older ``state.pt`` (the sweep passes Ray Tune's checkpoint); None: none.

    Returns:
        ``{STATE_RECOVERED_TAG: reason}`` when a corrupt state was set aside; ``{}`` otherwise.
    """
    state = Path(work_dir) / STATE_FILE
    recovered = set_aside_corrupt_state(state)
    if not state.is_file() and fallback is not None and (Path(fallback) / STATE_FILE).is_file():
        shutil.copy(Path(fallback) / STATE_FILE, state)
        recovered = set_aside_corrupt_state(state) or recovered
    return recovered


def set_aside_corrupt_state(path: str | Path) -> dict[str, str]:
    """Check a saved trial state; move it beside its work folder when it does not load.

    Args:
        path: the ``state.pt`` to check, in a trial's work folder; a bad one becomes
            ``<work folder>.state.pt.corrupt-<UTC time>`` beside that folder.

    Returns:
        ``{STATE_RECOVERED_TAG: reason}`` when the file was corrupt and moved; ``{}`` when it is absent or loads.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        missing = [key for key in STATE_KEYS if key not in payload] if isinstance(payload, dict) else ["everything"]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
    except PermissionError:
        raise
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        work_dir = path.absolute().parent
        aside = work_dir.parent / f"{work_dir.name}.{path.name}.corrupt-{stamp}"
        os.replace(path, aside)
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        reason = f"{path.name} did not load ({type(error).__name__}: {first_line}); kept as {aside}"
        log.warning("%s: %s; resuming from an older checkpoint if there is one, else from epoch 0", path, reason)
        return {STATE_RECOVERED_TAG: reason}
    return {}

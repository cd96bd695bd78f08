"""A trial's saved state (``state.pt``) checked before a resume, and set aside when it does not load.

A ``state.pt`` that does not load (truncated by a crash mid-write on a network file system, empty after a full
disk) is renamed ``state.pt.corrupt-<UTC time>``, so the trial resumes from an older checkpoint or starts again
from epoch 0, and the run says so in its ``skipsweep.state_recovered`` tag.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

from trainables.schema import STATE_RECOVERED_TAG

log = logging.getLogger(__name__)

STATE_KEYS = ("model", "best_model", "optimizer", "generator", "next_epoch", "best_val_dice", "best_epoch", "history")


def set_aside_corrupt_state(path: str | Path, keep_in: str | Path | None = None) -> dict[str, str]:
    """Check a saved trial state; move it aside when it does not load.

    Args:
        path: the ``state.pt`` to check.
        keep_in: folder for the bad file (default: beside it, as ``state.pt.corrupt-<UTC time>``); elsewhere it is
            named ``<folder of path>.state.pt.corrupt-<UTC time>``, so it outlives a work folder that is removed.

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
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        if keep_in is not None:
            aside = Path(keep_in) / f"{path.parent.name}.{aside.name}"
        os.replace(path, aside)
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        reason = f"{path.name} did not load ({type(error).__name__}: {first_line}); kept as {aside}"
        log.warning("%s: %s; resuming from an older checkpoint if there is one, else from epoch 0", path, reason)
        return {STATE_RECOVERED_TAG: reason}
    return {}

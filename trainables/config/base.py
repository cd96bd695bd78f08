"""The base of every section of a study file: immutable, and unknown keys refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """One section of a study file (or the whole study): frozen, so a validated study cannot drift."""

    model_config = ConfigDict(frozen=True, extra="forbid")

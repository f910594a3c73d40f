"""The base of every config model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """A config model: unknown keys fail at load, and values never change after it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

"""Training checkpoints: everything needed to continue a run bit for bit.

A checkpoint holds the model, the optimizer, both random generators, the state of the epoch
hooks (model-aware samplers), the epoch history and the early-stopping state. It is written
atomically after every epoch, so a run killed at any moment (even SIGKILL) resumes from its
last completed epoch. Files are read with ``torch.load(weights_only=True)``: only tensors and
plain containers, never pickled code.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from recsys_cl.errors import TrainingError
from recsys_cl.io import atomic_path

FORMAT_VERSION = 1
# The file a trainer keeps in its checkpoint folder, rewritten after every epoch.
LAST_CHECKPOINT = "last.pt"


@dataclass
class TrainState:
    """Mutable loop state carried across epochs (and across a resume)."""

    epoch: int = 0  # epochs completed
    steps: int = 0  # optimizer steps taken
    best_epoch: int = -1
    best_score: float = float("-inf")
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    state: TrainState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device_generator: torch.Generator,
    best_model: dict[str, torch.Tensor] | None,
    fingerprint: dict[str, Any],
    hooks: list[dict[str, torch.Tensor]] | None = None,
) -> None:
    payload = {
        "format_version": FORMAT_VERSION,
        "state": asdict(state),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "device_generator": device_generator.get_state(),
        "best_model": best_model,
        "fingerprint": fingerprint,
        "hooks": hooks or [],
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        # Through a Python file: a full disk then raises OSError(ENOSPC), which atomic_path
        # reports in one line; torch's own file writer raises a RuntimeError without the cause.
        torch.save(payload, out)


def load_checkpoint(path: str | os.PathLike[str], fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` and check it fits this run.

    ``fingerprint`` describes the run (method, sizes, seed, hyper-parameters); a checkpoint of a
    different run is refused rather than silently continued.
    """
    p = Path(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"{p}: no checkpoint to resume from") from None
    except Exception as exc:  # a truncated or foreign file: torch raises several types
        raise TrainingError(f"{p}: not a readable recsys_cl checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise TrainingError(f"{p}: not a recsys_cl checkpoint (format version mismatch)")
    saved = payload.get("fingerprint", {})
    diff = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if diff:
        key = diff[0]
        raise TrainingError(
            f"{p}: checkpoint is from a different run ({key}: {saved.get(key)!r} there, "
            f"{fingerprint.get(key)!r} now); use a new output folder or drop --resume"
        )
    # The stopping rule reads the evaluation history; the patience counter older checkpoints
    # kept is derived from it now.
    payload["state"].pop("bad_evals", None)
    payload["state"] = TrainState(**payload["state"])
    return payload

"""Random draws from a caller's generator, landing on the device of the data they perturb."""

from __future__ import annotations

import torch
from torch import Tensor


def _draw_device(device: torch.device, generator: torch.Generator | None) -> torch.device:
    # A generator only draws on its own device; a CPU generator driving CUDA data draws on the
    # CPU and the result is copied over (slower, but reproducible from the same generator).
    return device if generator is None else generator.device


def rand(
    shape: tuple[int, ...],
    device: torch.device,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """U(0, 1) of ``shape`` on ``device``, drawn from ``generator`` (global RNG when None)."""
    draw_on = _draw_device(device, generator)
    out = torch.rand(shape, generator=generator, device=draw_on, dtype=dtype)
    return out.to(device)


def randperm(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """A random permutation of 0..n-1 (long [n]) on ``device``, drawn from ``generator``."""
    out = torch.randperm(n, generator=generator, device=_draw_device(device, generator))
    return out.to(device)

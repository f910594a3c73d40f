"""The one mapping from a typed model config to a method object (no lookup by string)."""

from __future__ import annotations

import torch

from recsys_cl.config import (
    LightGCNConfig,
    MFConfig,
    ModelConfig,
    SGLConfig,
    SimGCLConfig,
    XSimGCLConfig,
)
from recsys_cl.models import MF, SGL, LightGCN, LightGCNRec, MFRec, Recommender, SimGCL, XSimGCL


def build_method(
    model: ModelConfig, n_users: int, n_items: int, generator: torch.Generator | None = None
) -> Recommender:
    """Instantiate the configured method over ``n_users`` x ``n_items``; ``generator`` draws
    the initial embedding table."""
    if isinstance(model, MFConfig):
        return MFRec(MF(n_users, n_items, model.dim, generator=generator), reg=model.reg)

    encoder = LightGCN(
        n_users,
        n_items,
        model.dim,
        model.layers,
        include_layer0=model.include_layer0,
        generator=generator,
    )
    if isinstance(model, LightGCNConfig):
        return LightGCNRec(encoder, reg=model.reg)
    if isinstance(model, SGLConfig):
        return SGL(
            encoder,
            reg=model.reg,
            cl_weight=model.cl_weight,
            tau=model.tau,
            drop_ratio=model.drop_ratio,
            aug=model.aug,
        )
    if isinstance(model, SimGCLConfig):
        return SimGCL(encoder, reg=model.reg, cl_weight=model.cl_weight, tau=model.tau, eps=model.eps)
    if isinstance(model, XSimGCLConfig):
        return XSimGCL(
            encoder,
            reg=model.reg,
            cl_weight=model.cl_weight,
            tau=model.tau,
            eps=model.eps,
            contrast_layer=model.contrast_layer,
        )
    raise AssertionError(f"unhandled model config {type(model).__name__}")

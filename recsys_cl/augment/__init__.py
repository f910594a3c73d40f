"""Augmentations: SGL graph dropout views and SimGCL/XSimGCL embedding noise."""

from recsys_cl.augment.graph_dropout import (
    edge_dropout,
    edge_keep_mask,
    node_dropout,
    random_walk,
)
from recsys_cl.augment.noise import SimGCLNoise, simgcl_noise

__all__ = [
    "SimGCLNoise",
    "edge_dropout",
    "edge_keep_mask",
    "node_dropout",
    "random_walk",
    "simgcl_noise",
]

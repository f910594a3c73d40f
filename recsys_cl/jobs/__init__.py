"""The outer ring: stages that turn a config into a run folder, and the commands that run them.

- :mod:`.stages` take typed arguments (a config, a folder, explicit options) and return small
  report records; they are the only library code that reads config objects. The FAISS stages
  (``stages.index``, ``stages.recommend``, ``stages.bundle``) are not imported here: training
  must work without FAISS installed (it is an extra).
- :mod:`.commands` are the ``recsys-cl`` handlers: they parse ``argparse`` options, open the
  tracked runs, call the stages and print.
- :class:`.folder.RunFolder` owns the run folder's layout and its reads and writes.

The names below are imported on first use: ``recsys-cl data`` goes through this package and
must not load torch (its import alone is ~220 MiB of a larger-than-memory preparation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recsys_cl._lazy import lazy_exports

# Public name -> the module (relative to this package) that defines it.
_API = {
    "RunFolder": ".folder",
    "ImbalanceParts": ".stages.build",
    "build_imbalance": ".stages.build",
    "build_method": ".stages.build",
    "build_split": ".stages.data",
    "load_raw": ".stages.data",
    "ScoreReport": ".stages.evaluate",
    "score_run": ".stages.evaluate",
    "Assembly": ".stages.train",
    "Prepared": ".stages.train",
    "TrainReport": ".stages.train",
    "assemble": ".stages.train",
    "finalize": ".stages.train",
    "fit": ".stages.train",
    "prepare": ".stages.train",
    "run_training": ".stages.train",
}

__all__ = sorted(_API)

if TYPE_CHECKING:
    from .folder import RunFolder as RunFolder
    from .stages.build import ImbalanceParts as ImbalanceParts
    from .stages.build import build_imbalance as build_imbalance
    from .stages.build import build_method as build_method
    from .stages.data import build_split as build_split
    from .stages.data import load_raw as load_raw
    from .stages.evaluate import ScoreReport as ScoreReport
    from .stages.evaluate import score_run as score_run
    from .stages.train import Assembly as Assembly
    from .stages.train import Prepared as Prepared
    from .stages.train import TrainReport as TrainReport
    from .stages.train import assemble as assemble
    from .stages.train import finalize as finalize
    from .stages.train import fit as fit
    from .stages.train import prepare as prepare
    from .stages.train import run_training as run_training


__getattr__, __dir__ = lazy_exports(__name__, _API, globals())

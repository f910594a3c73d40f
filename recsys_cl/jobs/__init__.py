"""The outer ring: stages that turn a config into a run folder, and the commands that run them.

- :mod:`.stages` take typed arguments (a config, a folder, explicit options) and return small
  report records; they are the only library code that reads config objects. The FAISS stages
  (``stages.index``, ``stages.recommend``, ``stages.bundle``) are not imported here: training
  must work without FAISS installed (it is an extra).
- :mod:`.commands` are the ``recsys-cl`` handlers: they parse ``argparse`` options, open the
  tracked runs, call the stages and print.
- :class:`.folder.RunFolder` owns the run folder's layout and its reads and writes.
"""

from .folder import RunFolder
from .stages.build import ImbalanceParts, build_imbalance, build_method
from .stages.data import build_split, load_raw
from .stages.evaluate import ScoreReport, score_run
from .stages.train import (
    Assembly,
    Prepared,
    TrainReport,
    assemble,
    finalize,
    fit,
    prepare,
    run_training,
)

__all__ = [
    "Assembly",
    "ImbalanceParts",
    "Prepared",
    "RunFolder",
    "ScoreReport",
    "TrainReport",
    "assemble",
    "build_imbalance",
    "build_method",
    "build_split",
    "finalize",
    "fit",
    "load_raw",
    "prepare",
    "run_training",
    "score_run",
]

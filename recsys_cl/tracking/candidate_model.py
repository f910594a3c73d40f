"""Where models logged before the candidate model moved to :mod:`recsys_cl.retrieval` find it.

A logged model carries a copy of :mod:`.pyfunc_code`, whose old copies import the model from
here; new ones import :mod:`recsys_cl.retrieval.candidate_model` directly.
"""

from recsys_cl.retrieval.candidate_model import CandidateModel

__all__ = ["CandidateModel"]

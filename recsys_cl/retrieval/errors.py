"""User errors of retrieval: each message alone says what is wrong and what to do.

They live here rather than in :mod:`recsys_cl.errors` so this package stays self-contained; all
derive from :class:`~recsys_cl.errors.RecsysError`, so the CLI prints them on one line with exit
code 2.
"""

from __future__ import annotations

from recsys_cl.errors import RecsysError


class RetrievalError(RecsysError):
    """Base class of retrieval errors."""


class IndexSpecError(RetrievalError):
    """An index spec FAISS cannot build (an unparsable factory string, a parameter that does not
    apply to the index type)."""


class IndexBuildError(RetrievalError):
    """The item embeddings cannot train the requested index (too few vectors per IVF list or PQ
    centroid, a PQ that does not divide the dimension)."""


class IndexFileError(RetrievalError):
    """A saved index that is missing, unreadable, corrupt or inconsistent with its metadata."""


class IndexMismatchError(RetrievalError):
    """A sound index that was built for other embeddings, items, dimension, metric or spec."""


class UnknownUserError(RetrievalError):
    """Requested user ids that the run never saw in training (with ``cold_start="error"``)."""


class UnknownItemError(RetrievalError, ValueError):
    """A query ``item_id`` the run never trained on: it has no embedding, so no neighbours."""

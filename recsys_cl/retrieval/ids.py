"""Requested raw user ids, read strictly: what ``recsys-cl recommend`` and the served candidate
model accept as a user id.

An id must be exactly one the training log could have held. A run with integer ids takes
integers in the signed 64-bit range: Python/NumPy integers, a float only when it is integral
and at most 2**53 in magnitude (a JSON client may write ``7.0``; above 2**53 a float no longer
names one integer), and canonical decimal strings (``-12``, ``+7``; ASCII digits only, no
spaces, underscores or exponents, as command lines, CSV and query strings carry them). A run
with string ids takes strings only: ``5`` is not ``"5"`` there (``"005"`` may be an id).
Booleans are never ids, though Python treats them as integers.

Each mistake raises :class:`InvalidUserIdError` naming the offending entry (request row, line,
``--users`` position) in one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import RetrievalError

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Doubles represent every integer up to 2**53 exactly; beyond it, 2**53 + 1 reads as 2**53.
_EXACT_FLOAT = 2**53
_DECIMAL = re.compile(r"[+-]?[0-9]+")


class InvalidUserIdError(RetrievalError, ValueError):
    """A requested user id that cannot be one of the run's ids (a fraction, a boolean, a number
    out of range, a number for a run with string ids). A ValueError too: bad input."""


def integer_id(value: Any) -> int | None:
    """``value`` as an int64 user id, or None when it is not exactly one (see the module doc)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        out = int(value)
    elif isinstance(value, (float, np.floating)):
        number = float(value)
        if not math.isfinite(number) or not number.is_integer() or abs(number) > _EXACT_FLOAT:
            return None
        out = int(number)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        out = int(value)
    else:
        return None
    return out if _INT64_MIN <= out <= _INT64_MAX else None


def typed_user_ids(
    values: Sequence[Any], *, integer: bool, where: str = "request row"
) -> list[Any]:
    """The ids ``values`` typed as the run's (int for ``integer`` runs, str otherwise).

    Args:
        where: how an entry is named in errors, followed by its 0-based position.

    Raises:
        InvalidUserIdError: the first entry that is not an id of this kind, named.
    """
    out: list[Any] = []
    for row, value in enumerate(values):
        if integer:
            parsed = integer_id(value)
            if parsed is None:
                raise InvalidUserIdError(
                    f"{where} {row}: user_id {short_repr(value)} is not an integer id "
                    "as this run's are "
                    "(64-bit integers: no fractions, booleans, exponents or values beyond 2**63)"
                )
            out.append(parsed)
        elif isinstance(value, str):
            out.append(value)
        else:
            raise InvalidUserIdError(
                f"{where} {row}: user_id {short_repr(value)} is a {type(value).__name__}; "
                "this run's "
                "user ids are strings (send them quoted)"
            )
    return out


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to one short line: a request may send anything, an error names it."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 40 else f"{text[:37]}..."


__all__ = ["InvalidUserIdError", "integer_id", "short_repr", "typed_user_ids"]

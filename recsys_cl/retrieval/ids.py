"""Requested raw ids, read strictly: what ``recsys-cl recommend`` / ``similar`` and the served
candidate model accept as a user id, an item id, or an entry of an item-id list (``exclude``).

An id must be exactly one the training log could have held. A run with integer ids takes
integers in the signed 64-bit range: Python/NumPy integers, a float only when it is integral
and at most 2**53 in magnitude (a JSON client may write ``7.0``; above 2**53 a float no longer
names one integer), and canonical decimal strings (``-12``, ``+7``; ASCII digits only, no
spaces, underscores or exponents, as command lines, CSV and query strings carry them). A run
with string ids takes strings only: ``5`` is not ``"5"`` there (``"005"`` may be an id).
Booleans are never ids, though Python treats them as integers. User and item ids follow the
same rule, each by the type of its own id map.

Each mistake raises :class:`InvalidIdError` (:class:`InvalidUserIdError` for user ids,
:class:`InvalidItemIdError` for item ids) naming the offending entry (request row and column,
list position, line, ``--users`` position) in one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from .errors import RetrievalError

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Doubles represent every integer up to 2**53 exactly; beyond it, 2**53 + 1 reads as 2**53.
_EXACT_FLOAT = 2**53
_DECIMAL = re.compile(r"[+-]?[0-9]+")

IdKind = Literal["user", "item"]


class InvalidIdError(RetrievalError, ValueError):
    """A requested id that cannot be one of the run's ids (a fraction, a boolean, a number out
    of range, a number for a run with string ids). A ValueError too: bad input."""


class InvalidUserIdError(InvalidIdError):
    """A requested user id that cannot be one of the run's user ids."""


class InvalidItemIdError(InvalidIdError):
    """A requested item id (a query ``item_id`` or an ``exclude`` entry) that cannot be one of
    the run's item ids."""


_ERRORS: dict[str, type[InvalidIdError]] = {"user": InvalidUserIdError, "item": InvalidItemIdError}


def integer_id(value: Any) -> int | None:
    """``value`` as an int64 id, or None when it is not exactly one (see the module doc)."""
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


def typed_ids(
    values: Sequence[Any], *, integer: bool, kind: IdKind, name: Callable[[int], str]
) -> list[Any]:
    """The ids ``values`` typed as the run's (int for ``integer`` runs, str otherwise).

    Args:
        kind: whose ids they are (``user`` or ``item``), for the message and the error class.
        name: how entry ``i`` is named in an error (``request row 3: user_id``,
            ``request row 0: exclude[2]``).

    Raises:
        InvalidUserIdError / InvalidItemIdError: the first entry that is not an id of this
            kind, named.
    """
    error = _ERRORS[kind]
    out: list[Any] = []
    for pos, value in enumerate(values):
        if integer:
            parsed = integer_id(value)
            if parsed is None:
                raise error(
                    f"{name(pos)} {short_repr(value)} is not an integer id as this run's are "
                    "(64-bit integers: no fractions, booleans, exponents or values beyond 2**63)"
                )
            out.append(parsed)
        elif isinstance(value, str):
            out.append(value)
        else:
            raise error(
                f"{name(pos)} {short_repr(value)} is a {type(value).__name__}; this run's "
                f"{kind} ids are strings (send them quoted)"
            )
    return out


def typed_user_ids(
    values: Sequence[Any], *, integer: bool, where: str = "request row"
) -> list[Any]:
    """:func:`typed_ids` of user ids, entry ``i`` named ``{where} {i}: user_id``."""
    return typed_ids(values, integer=integer, kind="user", name=lambda i: f"{where} {i}: user_id")


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to one short line: a request may send anything, an error names it."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 40 else f"{text[:37]}..."


__all__ = [
    "IdKind",
    "InvalidIdError",
    "InvalidItemIdError",
    "InvalidUserIdError",
    "integer_id",
    "short_repr",
    "typed_ids",
    "typed_user_ids",
]

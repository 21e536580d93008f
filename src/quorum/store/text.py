"""Values made storable in Postgres, whatever a model or provider sent.

Postgres `text` cannot hold NUL, UTF-8 cannot encode a lone surrogate (JSON's "\\ud800" decodes
to one), `jsonb` refuses "\\u0000", and an integer beyond `bigint` does not fit. These functions
turn any such value into one that can be written, so that one strange reply never aborts the
write of a whole decision. They only make values storable; removing secrets is a separate step
(apply both at a write boundary: `storable_text(scrub(x))`).
"""

from __future__ import annotations

import math
import re
from typing import Any, overload

BIGINT_MAX = 2**63 - 1
REPLACEMENT = "\ufffd"

# C0 and C1 control characters except tab and newline; DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@overload
def storable_text(value: str) -> str: ...
@overload
def storable_text(value: None) -> None: ...
@overload
def storable_text(value: str | None) -> str | None: ...


def storable_text(value: str | None) -> str | None:
    """`value` without NUL and other control characters (tab and newline kept), lone surrogates
    replaced by U+FFFD. None stays None; a clean string is returned unchanged."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    value = _CONTROL.sub("", value)
    return _SURROGATE.sub(REPLACEMENT, value)


def storable_json(value: Any) -> Any:
    """A JSON-ready value for a `jsonb` column: every string (keys too) made storable, non-finite
    floats → None, integers clamped to the bigint range, tuples → lists, other objects → text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, int):
        return clamp_bigint(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {storable_text(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [storable_json(v) for v in value]
    return storable_text(str(value))


def clamp_bigint(value: int | float | None, *, low: int = -BIGINT_MAX - 1) -> int:
    """An integer within [low, BIGINT_MAX] (None and NaN → 0, ±inf → the bound)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0
    if isinstance(value, float) and math.isinf(value):
        return BIGINT_MAX if value > 0 else low
    return max(low, min(BIGINT_MAX, int(value)))


def storable_count(value: int | float | None) -> int:
    """A count for a bigint column: clamped to [0, BIGINT_MAX]."""
    return clamp_bigint(value, low=0)

"""Short, log-safe reasons for a failure: one line, printable, at most `MAX_REASON` characters.

A reason is shown on a worklist row, written to a CSV ``error`` column or logged; it names what went
wrong, never the file's contents (decoders' messages are cut to their first line).
"""

from __future__ import annotations

__all__ = ["MAX_REASON", "clip", "message_of", "short_reason"]

MAX_REASON = 240


def clip(text: str, limit: int = MAX_REASON) -> str:
    """``text`` cut to ``limit`` characters (ending in ``...`` when cut)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(exc: BaseException) -> str:
    try:
        first = (str(exc).strip().splitlines() or [""])[0]
    except Exception:  # an exception whose __str__ fails
        first = ""
    return "".join(ch if ch.isprintable() else "?" for ch in first)


def message_of(exc: BaseException) -> str:
    """The first line of the exception's message (its type name when it has none), clipped."""
    return clip(_first_line(exc) or type(exc).__name__)


def short_reason(exc: BaseException, prefix: str) -> str:
    """``"prefix: TypeName: first line"`` (without ``": first line"`` when the message is empty), clipped."""
    first = _first_line(exc)
    return clip(f"{prefix}: {type(exc).__name__}" + (f": {first}" if first else ""))

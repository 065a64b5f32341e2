"""What a stage says when it removes a document.

A `Reason` is the reason itself, `<stage>:<rule>` (a str: what the funnel counts and what a
removed row holds in `reason`), carrying `detail`: what the rule measured against its bound,
e.g. `dup_5_gram 0.171 > 0.15`, written with the removed row as `reason_detail` so that a reader
of `removed/` sees why this document crossed the line. A filter that stops at its first failing
rule gives that rule's measure."""
from __future__ import annotations


class Reason(str):
    detail: str

    def __new__(cls, reason: str, detail: str = "") -> "Reason":
        self = super().__new__(cls, reason)
        self.detail = detail
        return self


def number(x: float | int) -> str:
    """An int with thousands separators, a float with 3 decimals (fewer when they are zeros)."""
    if isinstance(x, int):
        return f"{x:,}"
    return _decimals(x, 3)


def _decimals(x: float, places: int) -> str:
    s = f"{x:,.{places}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def measured(name: str, value: float | int, op: str, limit: float | int) -> str:
    """`name value op limit`, e.g. `dup_5_gram 0.171 > 0.15`. The value gets more decimals
    when 3 would print it equal to a limit it differs from (0.1504 > 0.15, not 0.15 > 0.15)."""
    shown = number(value)
    places = 3
    while shown == number(limit) and value != limit and places < 9:
        places += 1
        shown = _decimals(float(value), places)
    return f"{name} {shown} {op} {number(limit)}"

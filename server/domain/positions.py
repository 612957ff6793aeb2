"""Fractional position keys: the order of siblings without renumbering.

Keys compare as strings (the column is byte-ordered on SQLite and PostgreSQL alike) in the
order of the siblings, and there is always a key between two others: moving or inserting a
page writes its own row only.

A key is an integer head and an optional fraction, in base-36 digits (`0-9a-z`): the head is
one digit telling how many digits follow (`1`-`z`), then the integer itself (`1h` is 17,
`210` is 36, so longer heads sort after shorter ones); the fraction never ends in `0`.
Appending takes the next integer (keys grow by a digit per factor of 36: 10,000 pages in one
list have keys of 4 characters); inserting between two keys extends a fraction (about a digit
per five insertions at the same spot). Keys before integer 0 live under the head `0`. This is
the shape of rocicorp's `fractional-indexing`, in an alphabet every collation orders alike.
"""

from __future__ import annotations

__all__ = ["DIGITS", "FIRST", "MAX_KEY", "between", "is_key"]

DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_BASE = len(DIGITS)
_VALUE = {digit: value for value, digit in enumerate(DIGITS)}
MAX_KEY = 200
FIRST = "1h"  # the key of the first page of a list


def is_key(key: str) -> bool:
    if not 0 < len(key) <= MAX_KEY or any(c not in _VALUE for c in key):
        return False
    length = _VALUE[key[0]]
    if length == 0:
        fraction = key[1:]
    elif len(key) <= length:
        return False
    else:
        fraction = key[1 + length :]
    return not fraction.endswith("0")


def between(before: str | None, after: str | None) -> str:
    """A key after `before` and before `after` (None: the start / the end of the list)."""
    if before is not None and after is not None and before >= after:
        raise ValueError(f"{before!r} is not before {after!r}")
    if before is None and after is None:
        return FIRST
    if after is None:
        assert before is not None
        head, number, _ = _split(before)
        return FIRST if number is None else _encode(number + 1)
    if before is None:
        head, number, fraction = _split(after)
        if number is None or (number == 0 and not fraction):
            return "0" + _midpoint("", fraction if number is None else None)
        if number == 0:
            return head + _midpoint("", fraction)
        return _encode(number - 1)
    low_head, low_number, low_fraction = _split(before)
    high_head, high_number, high_fraction = _split(after)
    if low_head == high_head:
        return low_head + _midpoint(low_fraction, high_fraction)
    if low_number is not None and high_number is not None and high_number - low_number > 1:
        return _encode(low_number + 1)
    return low_head + _midpoint(low_fraction, None)


def _split(key: str) -> tuple[str, int | None, str]:
    """(head, its integer or None under the head `0`, fraction)."""
    length = _VALUE[key[0]]
    if length == 0:
        return "0", None, key[1:]
    head = key[: 1 + length]
    number = 0
    for digit in head[1:]:
        number = number * _BASE + _VALUE[digit]
    return head, number, key[1 + length :]


def _encode(number: int) -> str:
    digits = ""
    while True:
        number, digit = divmod(number, _BASE)
        digits = DIGITS[digit] + digits
        if not number:
            break
    return DIGITS[len(digits)] + digits


def _midpoint(low: str, high: str | None) -> str:
    """A fraction strictly between `low` and `high` (None: 1), neither ending in `0`."""
    if high is not None:
        n = 0  # the common prefix (low padded with zeros) is kept as it is
        while n < len(high) and (low[n] if n < len(low) else "0") == high[n]:
            n += 1
        if n:
            return high[:n] + _midpoint(low[n:], high[n:])
    digit_low = _VALUE[low[0]] if low else 0
    digit_high = _VALUE[high[0]] if high is not None else _BASE
    if digit_high - digit_low > 1:
        return DIGITS[(digit_low + digit_high + 1) // 2]
    if high is not None and len(high) > 1:  # room under high's first digit alone
        return high[:1]
    return DIGITS[digit_low] + _midpoint(low[1:], None)  # one digit deeper

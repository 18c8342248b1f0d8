"""Hangar sample keys as its records hold them (`#12` for the int 12, `abc` for the str) and as
users write them; no numpy, so status and the map stage's plan can use them cheaply."""

from __future__ import annotations

import numbers
from collections.abc import Iterable

from hangar_pipe.errors import UserError


def sort_keys(keys: Iterable[bytes]) -> list[bytes]:
    """Int keys (`#12`) in numeric order first, then str keys in byte order.

    Int keys have no leading zeros, so numeric order is (length, bytes) order: two stable
    C-level sorts, no Python key function per sample.
    """
    ints = sorted(k for k in keys if k[:1] == b"#")
    ints.sort(key=len)
    return ints + sorted(k for k in keys if k[:1] != b"#")


def key_value(raw: bytes) -> int | str:
    """A record key as the user wrote it: `#12` -> 12, `abc` -> 'abc'."""
    text = raw.decode()
    return int(text[1:]) if text.startswith("#") else text


def raw_key(value: int | str) -> bytes:
    """A key as Hangar records it: 12 -> `#12`, 'abc' -> `abc`."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"sample key {value!r}: expected an int or a str, as Hangar's keys are")
    return f"#{int(value)}".encode()

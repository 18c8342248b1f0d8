"""Hangar's data records parsed in bulk (numpy) and one by one agree; odd records fall back."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash

from hangar_pipe.training.bulk_read import _parse_alike, _parse_each


def records(n: int, backend: bytes = b"00", shape: bytes = b"8 6") -> list[bytes]:
    rng = np.random.default_rng(n)
    out = []
    for i in range(n):
        check = xxhash.xxh64_hexdigest(rng.bytes(8)).encode()
        uid = b"uid%d" % (i // 7)
        if backend == b"10":
            out.append(b":".join([backend, uid, check, b"%d" % (i % 7), shape]))
        else:
            out.append(b":".join([backend, uid, check, b"%d" % (i % 3), b"%d" % i, shape]))
    return out


def rows(parsed: object) -> list[tuple[tuple[str, str, str], int, int]]:
    """Each row's (file, index, checksum): what both parsers must agree on (group numbers may not)."""
    assert isinstance(parsed, tuple)
    files, group, index, checksum = parsed
    return [(files[g], int(i), int(c)) for g, i, c in zip(group, index, checksum)]


@pytest.mark.parametrize("backend", [b"00", b"01", b"10"])
def test_bulk_and_one_by_one_parsing_agree(backend: bytes) -> None:
    raws = records(50, backend)
    fast, slow = _parse_alike(raws, b"8 6"), _parse_each(raws, b"8 6")
    assert fast is not None and rows(fast) == rows(slow)
    assert rows(slow)[0][2] == int(raws[0].split(b":")[2], 16)


def test_odd_records_are_left_to_the_one_by_one_parser() -> None:
    mixed = records(5, b"00") + records(5, b"10")
    assert _parse_alike(mixed, b"8 6") is None  # two backends
    assert len(rows(_parse_each(mixed, b"8 6"))) == 10
    assert _parse_alike([], b"8 6") is None
    assert _parse_alike(records(3, b"50"), b"8 6") is None and _parse_each(records(3, b"50"), b"8 6") == b"50"
    shapes = records(4)
    shapes[2] = shapes[2].replace(b":8 6", b":8 5")
    assert _parse_alike(shapes, b"8 6") == 2 and _parse_each(shapes, b"8 6") == 2  # the row with another shape

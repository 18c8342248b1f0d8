"""How a column's samples changed between two commits, from its raw records, diffed as sets in C.

A column's records at a commit are one `$`-joined run of `<layout>:<column>:<key> <data digest>`
(`f:` for a flat column, `n:` for a nested one), sorted. A sample unchanged between two
commits has the same record in both, so the set difference of the two record sets (done by
CPython's set code, not a Python loop) leaves only the records of samples that were added,
removed or modified; only those are parsed. Before that, the runs' common prefix and suffix (whole
records, found by comparing slices, i.e. memcmp) are cut off: the runs are sorted, so a few
changed samples leave a short middle to split. At 100k samples per column with one sample
changed this splits and parses two records instead of building two 100k-entry dicts.
"""

from __future__ import annotations

from collections.abc import Sequence

BLOCK = 1 << 18  # bytes compared at a time while looking for the first difference


def sample_counts(old_run: bytes, new_run: bytes, cut: int) -> dict[str, int]:
    """Samples modified, added and removed between two commits' record runs of one column
    (`cut`: the length of the `<layout>:<column>:` prefix, the same for both layouts)."""
    return key_counts(*changed_records(old_run, new_run, cut))


def changed_records(old_run: bytes, new_run: bytes, cut: int) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """The samples whose records differ between two runs of one column: (key -> digest in the old
    run, key -> digest in the new run); a key in both was modified, in one only removed or added."""
    old_mid, new_mid = middles(old_run, new_run)
    old, new = _records(old_mid), _records(new_mid)
    return by_key([b"$".join(old - new)], cut), by_key([b"$".join(new - old)], cut)


def _records(run: bytes) -> set[bytes]:
    return set(run.split(b"$")) if run else set()


def middles(a: bytes, b: bytes) -> tuple[bytes, bytes]:
    """Two sorted record runs without the whole records they share at the start and at the end."""
    if a == b:
        return b"", b""
    prefix = common_prefix(a, b)
    start = a.rfind(b"$", 0, prefix) + 1  # the first record that differs
    suffix = common_suffix(a, b, min(len(a), len(b)) - start)
    stop_a, stop_b = a.find(b"$", len(a) - suffix), b.find(b"$", len(b) - suffix)
    return (a[start:stop_a if stop_a >= 0 else len(a)], b[start:stop_b if stop_b >= 0 else len(b)])


def common_prefix(a: bytes, b: bytes) -> int:
    """How many leading bytes a and b share: whole blocks compared forward, then bisection."""
    n, lo = min(len(a), len(b)), 0
    while lo < n and a[lo:min(lo + BLOCK, n)] == b[lo:min(lo + BLOCK, n)]:
        lo = min(lo + BLOCK, n)
    if lo >= n:
        return n
    hi = min(lo + BLOCK, n)
    while hi - lo > 1:  # the first lo bytes agree, the first hi do not
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """How many trailing bytes (at most `limit`) a and b share."""
    la, lb = len(a), len(b)
    lo = 0
    while lo < limit and a[la - min(lo + BLOCK, limit):la - lo] == b[lb - min(lo + BLOCK, limit):lb - lo]:
        lo = min(lo + BLOCK, limit)
    if lo >= limit:
        return limit
    hi = min(lo + BLOCK, limit)
    while hi - lo > 1:  # the last lo bytes agree, the last hi do not
        mid = (lo + hi) // 2
        if a[la - mid:la - lo] == b[lb - mid:lb - lo]:
            lo = mid
        else:
            hi = mid
    return lo


def by_key(runs: Sequence[bytes], cut: int) -> dict[bytes, bytes]:
    """(sample key -> data digest) of record runs, in order: a later run's key wins."""
    out: dict[bytes, bytes] = {}
    for run in runs:
        if not run:
            continue
        if run.count(b" ") == run.count(b"$") + 1:  # one space a record: split all at once
            parts = run.replace(b"$", b" ").split(b" ")
            out.update(zip([k[cut:] for k in parts[0::2]], parts[1::2]))
            continue
        for rec in run.split(b"$"):
            key, digest = rec.split(b" ", 1)
            out[key[cut:]] = digest
    return out


def key_counts(old: dict[bytes, bytes], new: dict[bytes, bytes]) -> dict[str, int]:
    """Keys in both with another digest (modified), only in new (added), only in old (removed)."""
    return {"modified": sum(1 for k in old.keys() & new.keys() if old[k] != new[k]),
            "added": len(new.keys() - old.keys()), "removed": len(old.keys() - new.keys())}

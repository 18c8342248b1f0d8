"""The set-based diff of a column's records against a straightforward key-by-key one."""

from __future__ import annotations

import random

import pytest

from hangar_pipe.hangar.record_diff import by_key, key_counts, sample_counts

COLUMN = "imgs"
CUT = len(COLUMN) + 3


def run(samples: dict[str, str], layout: str = "f") -> bytes:
    """The record run Hangar keeps for these samples: sorted, `$`-joined."""
    return "$".join(f"{layout}:{COLUMN}:{k} {d}" for k, d in sorted(samples.items())).encode()


def straightforward(old: dict[str, str], new: dict[str, str]) -> dict[str, int]:
    return {"modified": sum(1 for k in old.keys() & new.keys() if old[k] != new[k]),
            "added": len(new.keys() - old.keys()), "removed": len(old.keys() - new.keys())}


def digest(rng: random.Random) -> str:
    return f"0={rng.getrandbits(64):016x}"


def changed(rng: random.Random, old: dict[str, str], modify: int, add: int, remove: int) -> dict[str, str]:
    new = dict(old)
    keys = sorted(new)
    for k in rng.sample(keys, remove):
        del new[k]
    for k in rng.sample(sorted(new), min(modify, len(new))):
        new[k] = digest(rng)
    for i in range(add):
        new[f"new{i}-{rng.getrandbits(20)}"] = digest(rng)
    return new


@pytest.mark.parametrize("seed", range(30))
def test_matches_a_key_by_key_diff_on_random_changes(seed: int) -> None:
    rng = random.Random(seed)
    old = {str(i): digest(rng) for i in range(rng.randrange(0, 300))}
    new = changed(rng, old, rng.randrange(0, 20), rng.randrange(0, 20), rng.randrange(0, min(20, len(old)) + 1))
    layout_old, layout_new = rng.choice("fn"), rng.choice("fn")  # a layout change rewrites every record
    if layout_old == "n" or layout_new == "n":  # nested keys are `sample:subsample`
        old = {f"{k}:0": d for k, d in old.items()}
        new = {f"{k}:0": d for k, d in new.items()}
    expected = straightforward(old, new)
    assert sample_counts(run(old, layout_old), run(new, layout_new), CUT) == expected
    assert by_key([run(new, layout_new)], CUT) == {k.encode(): d.encode() for k, d in new.items()}


def test_schema_change_rewrites_every_digest() -> None:
    rng = random.Random(1)
    old = {str(i): digest(rng) for i in range(100)}
    new = {k: digest(rng) for k in old if k != "7"}  # new dtype: every sample's data digest changes
    assert sample_counts(run(old), run(new), CUT) == {"modified": 99, "added": 0, "removed": 1}


def test_empty_and_unchanged_columns() -> None:
    same = {"a": "0=1", "b": "0=2"}
    assert sample_counts(run(same), run(same), CUT) == {"modified": 0, "added": 0, "removed": 0}
    assert sample_counts(b"", run(same), CUT) == {"modified": 0, "added": 2, "removed": 0}
    assert sample_counts(run(same), b"", CUT) == {"modified": 0, "added": 0, "removed": 2}


def test_by_key_reads_runs_in_order_a_later_key_wins() -> None:
    """As `HangarStore.samples` reads a flat then a nested run."""
    both = [run({"k": "0=1"}, "f"), run({"k": "0=2"}, "n")]
    assert by_key(both, CUT) == {b"k": b"0=2"}
    assert key_counts(by_key(both, CUT), {b"k": b"0=3"}) == {"modified": 1, "added": 0, "removed": 0}


def test_records_with_a_space_in_the_digest_part() -> None:
    old = b"f:imgs:a 0=1 x$f:imgs:b 0=2"
    new = b"f:imgs:a 0=1 y$f:imgs:b 0=2"
    assert by_key([old], CUT) == {b"a": b"0=1 x", b"b": b"0=2"}
    assert sample_counts(old, new, CUT) == {"modified": 1, "added": 0, "removed": 0}


@pytest.mark.parametrize("seed", range(40))
def test_common_prefix_and_suffix_across_block_edges(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from hangar_pipe.hangar import record_diff

    monkeypatch.setattr(record_diff, "BLOCK", 4)  # small blocks: the block loop and bisection both run
    rng = random.Random(seed)
    a = bytes(rng.choice(b"ab$") for _ in range(rng.randrange(0, 40)))
    b = a[:rng.randrange(0, len(a) + 1)] + bytes(rng.choice(b"ab$") for _ in range(rng.randrange(0, 5)))
    b += a[len(b):] if rng.random() < 0.5 else b""
    prefix = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    assert record_diff.common_prefix(a, b) == prefix
    limit = min(len(a), len(b)) - prefix
    suffix = next((i for i, (x, y) in enumerate(zip(a[::-1], b[::-1])) if x != y or i >= limit), limit)
    assert record_diff.common_suffix(a, b, limit) == suffix


@pytest.mark.parametrize("seed", range(20))
def test_matches_a_key_by_key_diff_with_small_blocks(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from hangar_pipe.hangar import record_diff

    monkeypatch.setattr(record_diff, "BLOCK", 16)
    rng = random.Random(100 + seed)
    old = {f"{i:04d}": digest(rng) for i in range(rng.randrange(1, 200))}
    new = changed(rng, old, rng.randrange(0, 3), rng.randrange(0, 3), rng.randrange(0, 3))
    assert sample_counts(run(old), run(new), CUT) == straightforward(old, new)

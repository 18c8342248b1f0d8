"""The points of an experiment, from `-S` overrides and data commits. Pure: no files, no runs.

- `-S [FILE:]KEY=VALUES` sets a params key (FILE defaults to params.yaml). VALUES is one value,
  or a comma list (`0.1,0.01`): a grid axis. Each value is read as YAML (`32` is a number,
  `[1, 2]` a list, `'a,b'` a string with a comma).
- `--random K --seed S` samples K points instead of the whole grid: a comma list is a uniform
  choice, `range(LO,HI)` uniform, `range(LO,HI,log)` log-uniform, `randint(LO,HI)` an integer
  in [LO, HI]. A range needs `--random`.
- `--data-commit A,B` adds the data commit as one more axis.

A point's id is a digest of what it sets, so the same point has the same id in every run of
`exp run` (a rerun finds what is done).
"""

from __future__ import annotations

import json
import math
import posixpath
import random
import re
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import xxhash

from hangar_pipe.core.layout import PARAMS_FILE
from hangar_pipe.errors import UserError

_RANGE = re.compile(r"^(range|randint)\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*(?:,\s*(log)\s*)?\)$")

Overrides = dict[str, dict[str, Any]]  # params file -> {dotted key: value}


@dataclass(frozen=True)
class Range:
    """A sampled axis: `range(lo, hi[, log])` or `randint(lo, hi)`."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def sample(self, rng: random.Random) -> float | int:
        """A value in the range; floats to 4 significant digits (`lr=0.001857`, not 17 digits)."""
        if self.integer:
            return rng.randint(int(self.low), int(self.high))
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return float(f"{value:.4g}")


@dataclass(frozen=True)
class Axis:
    """One `-S`: a params file's key and its values (a list, or a Range to sample)."""

    file: str
    key: str
    values: tuple[Any, ...] | Range

    @property
    def name(self) -> str:
        return self.key if self.file == PARAMS_FILE else f"{self.file}:{self.key}"


@dataclass
class Point:
    """One run of the pipeline: the params it sets and the data commit it reads."""

    overrides: Overrides = field(default_factory=dict)
    data_commit: str | None = None

    @property
    def id(self) -> str:
        text = json.dumps([self.overrides, self.data_commit], sort_keys=True, default=str)
        return xxhash.xxh3_64_hexdigest(text.encode())[:8]

    def label(self) -> str:
        """`lr=0.1 bs=32 @a=1f2e3d4c`: the overrides as given, then the data commit."""
        parts = [f"{k if f == PARAMS_FILE else f'{f}:{k}'}={_show(v)}"
                 for f, keys in self.overrides.items() for k, v in keys.items()]
        if self.data_commit:
            parts.append(f"@{self.data_commit[:10]}")
        return " ".join(parts) or "(no overrides)"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "overrides": self.overrides, "data_commit": self.data_commit}


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def parse_axis(text: str) -> Axis:
    """`[file:]key=values` -> Axis; a malformed one is a UserError naming it."""
    target, eq, values = text.partition("=")
    if not eq or not target.strip() or not values.strip():
        raise UserError(f"-S '{text}': expected [FILE:]KEY=VALUE[,VALUE...] such as train.lr=0.1,0.01")
    file, colon, key = target.strip().rpartition(":")
    file = posixpath.normpath(file) if colon else PARAMS_FILE
    if file.startswith(("/", "../")) or file == "..":
        raise UserError(f"-S '{text}': the params file must be a path inside the project")
    if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", key):
        raise UserError(f"-S '{text}': '{key}' is not a dotted key such as train.lr")
    match = _RANGE.match(values.strip())
    if match:
        kind, low, high, log = match.groups()
        try:
            lo, hi = float(low), float(high)
        except ValueError:
            raise UserError(f"-S '{text}': {kind} takes two numbers") from None
        if lo >= hi or (log and lo <= 0):
            raise UserError(f"-S '{text}': needs LOW < HIGH{' and LOW > 0 for log' if log else ''}")
        return Axis(file, key, Range(lo, hi, bool(log), kind == "randint"))
    return Axis(file, key, tuple(_value(v, text) for v in _split(values)))


def _split(values: str) -> list[str]:
    """Split at commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(values):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(values[start:i])
            start = i + 1
    return [*parts, values[start:]]


def _value(text: str, given: str) -> Any:
    """A value as JSON reads it (`1e-3` is a number), else as YAML (`'a,b'`, `[1, 2]`, a word)."""
    from hangar_pipe.core.yamlfile import parse_yaml

    text = text.strip()
    if not text:
        raise UserError(f"-S '{given}': an empty value (quote it, '', for an empty string)")
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return parse_yaml(text, "-S").data
    except UserError:
        raise UserError(f"-S '{given}': cannot read the value '{text}'") from None


def plan(axes: list[Axis], data_commits: list[str | None], random_points: int | None = None,
         seed: int = 0) -> list[Point]:
    """The points, in a stable order: the grid (or K samples) times the data commits; duplicates once."""
    names = [a.name for a in axes]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise UserError(f"-S {twice} is given twice (give its values as one comma list)")
    if random_points is None:
        ranged = [a.name for a in axes if isinstance(a.values, Range)]
        if ranged:
            raise UserError(f"-S {ranged[0]}: a range is sampled; add --random K (and --seed S)")
        combos = list(product(*(a.values for a in axes if not isinstance(a.values, Range))))
    else:
        rng = random.Random(seed)
        combos = [tuple(a.values.sample(rng) if isinstance(a.values, Range) else rng.choice(a.values)
                        for a in axes) for _ in range(random_points)]
    points: dict[str, Point] = {}
    for commit in data_commits:
        for combo in combos:
            overrides: Overrides = {}
            for axis, value in zip(axes, combo):
                overrides.setdefault(axis.file, {})[axis.key] = value
            point = Point(overrides, commit)
            points.setdefault(point.id, point)
    return list(points.values())


def experiment_name(stages: list[str], points: list[Point]) -> str:
    """The default name: the same command line names the same experiment (a rerun resumes it)."""
    text = json.dumps([sorted(stages), sorted(p.id for p in points)])
    return f"exp-{xxhash.xxh3_64_hexdigest(text.encode())[:6]}"

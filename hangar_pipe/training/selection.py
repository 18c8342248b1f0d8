"""Which samples a ColumnsDataset holds, and what its items look like.

The options of Hangar's own `make_torch_dataset(columns, keys, index_range, field_names)`:

- `keys`: these samples, in this order (Hangar's keys: ints and strs; a set is taken in sorted
  key order). A key missing from a column, or given twice, is an error.
- `index_range`: a slice of the samples in sorted key order (ints numerically, then strs), or of
  `keys` when both are given (Hangar ignores index_range then; composing them is what one means).
- `field_names`: items and batches become named tuples with these fields, one per column.

Without `keys`, the columns must hold the same keys (Hangar would silently use the ones they
share).
"""

from __future__ import annotations

import collections
import keyword
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hangar_pipe.errors import UserError
from hangar_pipe.hangar.keys import key_value, raw_key, sort_keys
from hangar_pipe.hangar.store import short


@dataclass(frozen=True)
class Selection:
    """The `keys` and `index_range` of a dataset (None: all of them)."""

    keys: tuple[int | str, ...] | None = None
    index_range: slice | None = None

    @classmethod
    def of(cls, keys: Iterable[int | str] | None, index_range: slice | None) -> Selection:
        if keys is not None and (isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable)):
            raise TypeError(f"keys: expected a list of sample keys, got {type(keys).__name__}")
        if isinstance(keys, (set, frozenset)):  # no order of its own (str hashes vary by run): ours
            keys = [key_value(k) for k in sort_keys(raw_key(k) for k in keys)]
        if index_range is not None and not isinstance(index_range, slice):
            raise TypeError(f"index_range: expected a slice such as slice(0, 1000), got"
                            f" {type(index_range).__name__}")
        return cls(None if keys is None else tuple(keys), index_range)

    @property
    def everything(self) -> bool:
        return self.keys is None and self.index_range in (None, slice(None))

    def rows(self, samples: Mapping[str, Mapping[bytes, Any]], commit: str) -> list[bytes]:
        """The chosen keys (as Hangar records them), in order; `samples`: each column's keys."""
        names = list(samples)
        if self.keys is None:
            chosen = _common_keys(samples, commit)
        else:
            chosen = [raw_key(k) for k in self.keys]
            if len(set(chosen)) != len(chosen):
                twice = next(k for k in chosen if chosen.count(k) > 1)
                raise UserError(f"keys: sample {twice.decode()!r} is given twice")
            for name in names:
                missing = next((k for k in chosen if k not in samples[name]), None)
                if missing is not None:
                    raise UserError(f"column '{name}' has no sample {missing.decode()!r} at {short(commit)}"
                                    f" ({len(samples[name])} samples)")
        if self.index_range is not None:
            chosen = chosen[self.index_range]
        if not chosen:
            raise UserError(f"the selection (keys={_brief(self.keys)}, index_range={self.index_range})"
                            f" holds no samples of {', '.join(names)} at {short(commit)}")
        return chosen


def _common_keys(samples: Mapping[str, Mapping[bytes, Any]], commit: str) -> list[bytes]:
    names = list(samples)
    first = sort_keys(samples[names[0]])
    for name in names[1:]:
        if len(samples[name]) != len(first) or any(k not in samples[name] for k in first):
            raise UserError(f"columns '{names[0]}' and '{name}' have different sample keys at"
                            f" {short(commit)} (choose common ones with keys=...)")
    return first


def _brief(keys: tuple[int | str, ...] | None) -> str:
    if keys is None:
        return "None"
    return f"[{', '.join(map(repr, keys[:3]))}{', ...' if len(keys) > 3 else ''}] ({len(keys)})"


def positions_in(chosen: list[bytes], sorted_keys: list[bytes]) -> np.ndarray:
    """Where each chosen key is in a column's sorted keys (to take rows from a whole column)."""
    at = {k: i for i, k in enumerate(sorted_keys)}
    return np.fromiter((at[k] for k in chosen), dtype=np.int64, count=len(chosen))


def item_type(field_names: Sequence[str] | None, columns: Sequence[str]) -> Any:
    """The named tuple of a dataset's items and batches (None: plain tuples).

    It is registered in this module under a name made of its fields, so that items pickle
    (DataLoader workers send them back to the main process), as Hangar's loader does.
    """
    if field_names is None:
        return None
    if isinstance(field_names, str) or not isinstance(field_names, Sequence):
        raise TypeError(f"field_names: expected a list of names, got {type(field_names).__name__}")
    names = list(field_names)
    if len(names) != len(columns):
        raise ValueError(f"field_names: {len(names)} names for {len(columns)} columns")
    bad = next((n for n in names if not isinstance(n, str) or not n.isidentifier() or keyword.iskeyword(n)
                or n.startswith("_")), None)
    if bad is not None:
        raise ValueError(f"field_names: {bad!r} is not a field name (a Python identifier, not starting"
                         " with _)")
    if len(set(names)) != len(names):
        raise ValueError(f"field_names: {names} repeats a name")
    type_name = "Sample_" + "_".join(names)
    made = globals().get(type_name)
    if made is None:
        made = globals()[type_name] = collections.namedtuple(type_name, names, module=__name__)
    return made

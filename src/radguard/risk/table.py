"""Records as integer-coded columns, so equivalence classes are counted with numpy.

Each quasi-identifier becomes a column of codes into its vocabulary of distinct values. A
generalization maps the vocabulary (a few hundred values at most), never the records, and the
classes of any combination of columns come from one ``numpy.unique`` per column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from radguard.risk.records import Record

Codes = npt.NDArray[np.int64]


class Column:
    """One quasi-identifier: the distinct values and, per record, the index of its value."""

    def __init__(self, vocabulary: Sequence[str], codes: Codes) -> None:
        self.vocabulary = list(vocabulary)
        self.codes = codes

    @classmethod
    def of(cls, values: Sequence[str]) -> Column:
        index: dict[str, int] = {}
        codes = np.fromiter(
            (index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values)
        )
        return cls(list(index), codes)

    def mapped(self, function: Callable[[str], str]) -> Column:
        """The column with every value replaced by ``function(value)``."""
        index: dict[str, int] = {}
        remap = np.array(
            [index.setdefault(function(v), len(index)) for v in self.vocabulary], dtype=np.int64
        )
        return Column(list(index), remap[self.codes] if len(remap) else self.codes)

    def counts(self) -> Codes:
        """How many records hold each value of the vocabulary."""
        return np.bincount(self.codes, minlength=len(self.vocabulary)).astype(np.int64)

    def value_of(self, row: int) -> str:
        return self.vocabulary[int(self.codes[row])]


class Table:
    """The records of one release, one :class:`Column` per quasi-identifier."""

    def __init__(self, records: Sequence[Record], qis: Sequence[str]) -> None:
        self.ids = [r.record_id for r in records]
        self.qis = tuple(qis)
        self.columns = {q: Column.of([r.value(q) for r in records]) for q in self.qis}

    def __len__(self) -> int:
        return len(self.ids)


def classes(columns: Sequence[Column], n: int) -> tuple[Codes, Codes]:
    """Equivalence classes of ``n`` records over ``columns``.

    Returns ``(class_of_record, class_sizes)``: the class index of every record and the size
    of every class. With no columns, all records form one class.
    """
    key = np.zeros(n, dtype=np.int64)
    span = 1
    for column in columns:
        width = max(len(column.vocabulary), 1)
        if span * width >= 2**62:  # re-number the classes so far before the key overflows
            _, key = np.unique(key, return_inverse=True)
            key = key.astype(np.int64).reshape(-1)
            span = int(key.max()) + 1 if n else 1
        key = key * width + column.codes
        span *= width
    _, inverse, sizes = np.unique(key, return_inverse=True, return_counts=True)
    return inverse.astype(np.int64).reshape(-1), sizes.astype(np.int64)

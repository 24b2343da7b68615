"""A minimal ordered key-value storage that state machines write through.

:class:`Store` is the interface: point reads, prefix scans in key order, and one atomic write of puts,
deletes and range deletes. Two implementations:

* :class:`MemoryStore`: a dict, for tests and examples (no crash semantics of its own);
* :class:`RocksStore`: one column family of an already open raw-mode ``rocksdict.Rdict``. Every
  :meth:`RocksStore.write` is ONE WriteBatch written with ``WriteOptions.sync = False``: the state machine
  shares the RocksDB (and so the write-ahead log) of the Paxos log, whose synced write of the same cycle, or
  of the next, makes it durable; and whatever a crash loses, the Paxos log replays from ``applied_next``.

:func:`open_rocks_with_sm` opens (or creates) a raw-mode DB with the ``"sm"`` column family.

Write semantics, for every store: ``delete_ranges`` first, then ``deletes``, then ``puts``, all or nothing.
"""
from __future__ import annotations

import abc
import os
from typing import Iterable, Iterator

import rocksdict

SM_COLUMN_FAMILY = "sm"


class Store(abc.ABC):
    """Ordered bytes -> bytes storage."""

    @abc.abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""

    @abc.abstractmethod
    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Iterator of ``(key, value)`` in key order, over the keys that start with ``prefix``."""

    @abc.abstractmethod
    def write(self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes],
              delete_ranges: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """Atomically apply: every ``[begin, end)`` of ``delete_ranges``, then ``deletes``, then ``puts``."""

    def close(self) -> None:
        """Release whatever the store holds of its backing storage (the store is unusable afterwards)."""


class MemoryStore(Store):
    """A Store in a dict. ``writes`` counts calls of :meth:`write` that changed something."""

    def __init__(self):
        self.data = {}
        self.writes = 0

    def get(self, key):
        return self.data.get(key)

    def scan(self, prefix):
        data = self.data
        for key in sorted(k for k in data if k.startswith(prefix)):
            yield key, data[key]

    def write(self, puts, deletes, delete_ranges=()):
        data = self.data
        for begin, end in delete_ranges:
            for key in [k for k in data if begin <= k < end]:
                del data[key]
        for key in deletes:
            data.pop(key, None)
        data.update(puts)
        self.writes += 1

    def items(self):
        """Every ``(key, value)`` in key order."""
        return sorted(self.data.items())


class RocksStore(Store):
    """One column family of an open raw-mode ``rocksdict.Rdict``.

    The store holds a column family object and its handle, and each of them keeps the DB's LOCK held:
    call :meth:`close` before ``db.close()``. ``writes`` counts WriteBatches written.
    """

    def __init__(self, db, cf_name=SM_COLUMN_FAMILY):
        self.db = db
        self.cf_name = cf_name
        self._cf = db.get_column_family(cf_name)
        self._handle = db.get_column_family_handle(cf_name)
        self._write_opts = rocksdict.WriteOptions()
        self._write_opts.sync = False
        self.writes = 0

    def get(self, key):
        return self._cf.get(key)

    def scan(self, prefix):
        # from_key, not ReadOptions.set_iterate_lower_bound: the latter sets the upper bound in rocksdict.
        items = self._cf.items(from_key=prefix)
        try:
            for key, value in items:
                if not key.startswith(prefix):
                    break
                yield key, value
        finally:
            del items

    def write(self, puts, deletes, delete_ranges=()):
        handle = self._handle
        batch = rocksdict.WriteBatch(raw_mode=True)
        for begin, end in delete_ranges:
            batch.delete_range(begin, end, handle)
        for key in deletes:
            batch.delete(key, handle)
        # In key order: inserting sorted keys into the memtable is ~20% faster than in apply order.
        for key, value in sorted(puts):
            batch.put(key, value, handle)
        self.db.write(batch, self._write_opts)
        self.writes += 1

    def close(self):
        """Drop the column family objects (they hold the DB's LOCK). The DB itself stays open."""
        self._cf = None
        self._handle = None


def open_rocks_with_sm(path, cf_name=SM_COLUMN_FAMILY):
    """Open or create a raw-mode RocksDB at ``path`` that has the column family ``cf_name``."""
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    return rocksdict.Rdict(path, options, column_families={cf_name: rocksdict.Options(raw_mode=True)})

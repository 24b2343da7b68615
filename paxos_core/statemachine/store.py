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
A *store ops* tuple ``(puts, deletes, delete_ranges)`` is exactly those arguments, so a caller can hand ops
to ``Store.write(*ops)`` or put them into a batch of its own (the Paxos log's one write per cycle);
:func:`merge_store_ops` joins several into one.

:meth:`Store.snapshot` returns a :class:`StoreView`: the store's contents frozen at the call, read-only,
for as long as the view stays open (a checkpoint is streamed out of one while the state machine goes on
writing). ``MemoryStore`` copies; ``RocksStore`` reads through a RocksDB iterator, which pins the DB's state
at its creation (see :class:`RocksStoreView` for why not ``rocksdict.Snapshot``).
"""
from __future__ import annotations

import abc
import bisect
import os
import weakref
from typing import Callable, Iterable, Iterator

import rocksdict

SM_COLUMN_FAMILY = "sm"

#: ``(puts [(key, value)], deletes [key], delete_ranges [(begin, end)])``: the arguments of Store.write.
StoreOps = tuple[list[tuple[bytes, bytes]], list[bytes], list[tuple[bytes, bytes]]]


def merge_store_ops(*ops: StoreOps) -> StoreOps:
    """One ops tuple doing what all of ``ops`` do, for ONE write.

    A write applies every range delete, then every delete, then every put; so the merge equals writing
    ``ops`` one after the other only if no put of one tuple falls into a delete or range of a later one.
    That holds for the state machine's checkpoint ops (``clear_half_ops``, ``stage_ops``, ``swap_ops``: a
    half is cleared before anything is staged into it, and a swap deletes only the other half); it is not
    checked, as it would cost a pass over every put.
    """
    puts: list[tuple[bytes, bytes]] = []
    deletes: list[bytes] = []
    ranges: list[tuple[bytes, bytes]] = []
    for op_puts, op_deletes, op_ranges in ops:
        puts.extend(op_puts)
        deletes.extend(op_deletes)
        ranges.extend(op_ranges)
    return puts, deletes, ranges


class StoreView(abc.ABC):
    """A read-only view of a store, frozen when :meth:`Store.snapshot` made it: writes to the store after
    that are invisible through it. Reads as :class:`Store` reads; :meth:`scan` can also resume after a key.
    Call :meth:`close` (or use it as a context manager) as soon as it is no longer needed: a RocksDB view
    keeps every version it can see from being compacted away."""

    @abc.abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key`` when the view was made, or None."""

    @abc.abstractmethod
    def scan(self, prefix: bytes, after: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` in key order over the keys that start with ``prefix``; with ``after``, only the
        keys strictly greater than it (to resume a scan where the previous one stopped)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the view (it is unusable afterwards). Closing twice is harmless."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class CopiedStoreView(StoreView):
    """A view that holds a copy: for the in-memory and simulated stores, whose snapshot is their contents.

    ``on_read`` is called before every read (the simulator passes its crash and pause point)."""

    def __init__(self, items: Iterable[tuple[bytes, bytes]], on_read: Callable[[], None] | None = None):
        self._values: dict[bytes, bytes] | None = dict(items)
        self._keys = sorted(self._values)
        self._on_read = on_read

    def _values_or_raise(self):
        if self._values is None:
            raise ValueError("the store view is closed")
        if self._on_read is not None:
            self._on_read()
        return self._values

    def get(self, key):
        return self._values_or_raise().get(key)

    def scan(self, prefix, after=None):
        values = self._values_or_raise()
        keys = self._keys
        if after is not None and after >= prefix:
            i = bisect.bisect_right(keys, after)
        else:
            i = bisect.bisect_left(keys, prefix)
        while i < len(keys) and keys[i].startswith(prefix):
            key = keys[i]
            yield key, values[key]
            i += 1

    def close(self):
        self._values = None
        self._keys = []


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

    def snapshot(self) -> StoreView:
        """A read-only :class:`StoreView` of the store's contents now, unchanged by later writes.

        Not abstract, so that a Store written elsewhere keeps working; such a store has no snapshot (a copy
        of everything would be a hidden cost). A store that buffers writes for a later commit (the
        runtime's ``StagedStore``) has none either: take the view of the store it commits to, after the
        commit, so that it holds exactly what the state machine's ``applied_next`` says it holds."""
        raise NotImplementedError("%s has no snapshot()" % type(self).__name__)


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

    def snapshot(self):
        """A copy of the contents (:class:`CopiedStoreView`)."""
        return CopiedStoreView(self.data.items())


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
        self._views: weakref.WeakSet[RocksStoreView] = weakref.WeakSet()     # open views, closed by close()

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
        batch = rocksdict.WriteBatch(raw_mode=True)
        add_to_batch(batch, self._handle, puts, deletes, delete_ranges)
        self.db.write(batch, self._write_opts)
        self.writes += 1

    def snapshot(self):
        """A :class:`RocksStoreView` of the column family as it is now."""
        view = RocksStoreView(self._cf)
        self._views.add(view)
        return view

    def close(self):
        """Drop the column family objects and close the open views (they hold the DB's LOCK). The DB itself
        stays open."""
        for view in list(self._views):
            view.close()
        self._cf = None
        self._handle = None


class RocksStoreView(StoreView):
    """The column family frozen at creation, read through ONE RocksDB iterator.

    A RocksDB iterator reads from an implicit snapshot taken when it is created, and seeking it again keeps
    that snapshot; so every read goes through this one iterator, :meth:`get` too (a seek). Not
    ``rocksdict.Snapshot``: in rocksdict 0.3.29 its point reads are frozen, but its ``items()``/``iter()``
    build their iterator from read options without the snapshot and see later writes
    (tests/test_sm_halves.py checks both facts). While the view is open, the DB keeps the memtables and
    table files the iterator reads: close it as soon as possible.

    Scans may interleave with each other and with gets: a scan remembers its last key and seeks past it
    again when another read moved the iterator in between.
    """

    def __init__(self, cf):
        read_options = rocksdict.ReadOptions()
        read_options.fill_cache(False)      # a checkpoint is read once: keep the block cache for the hot keys
        self._iter = cf.iter(read_options)
        self._reader = None      # the scan that positioned the iterator last (None: a get, or nobody)

    def _iterator(self):
        it = self._iter
        if it is None:
            raise ValueError("the store view is closed")
        return it

    def get(self, key):
        it = self._iterator()
        self._reader = None
        it.seek(key)
        if it.valid():
            return it.value() if it.key() == key else None
        it.status()             # raises if the iterator stopped on an error rather than at the end
        return None

    def scan(self, prefix, after=None):
        token = object()
        resume = after if after is not None and after >= prefix else None
        while True:
            it = self._iterator()
            if self._reader is token:
                it.next()
            else:
                it.seek(prefix if resume is None else resume)
                if resume is not None and it.valid() and it.key() == resume:
                    it.next()
                self._reader = token
            if not it.valid():
                it.status()
                return
            key = it.key()
            if not key.startswith(prefix):
                return
            value = it.value()
            resume = key
            it = None           # a suspended scan must not keep the iterator (and the DB) after close()
            yield key, value

    def close(self):
        self._iter = None
        self._reader = None


def add_to_batch(batch, handle, puts, deletes, delete_ranges=()):
    """Add a Store.write's operations to a rocksdict WriteBatch, for the column family `handle`, in that
    write's order (RocksStore.write, and RocksLog.write when a swap rides in the log's batch)."""
    for begin, end in delete_ranges:
        batch.delete_range(begin, end, handle)
    for key in deletes:
        batch.delete(key, handle)
    # In key order: inserting sorted keys into the memtable is ~20% faster than in apply order.
    for key, value in sorted(puts):
        batch.put(key, value, handle)


def open_rocks_with_sm(path, cf_name=SM_COLUMN_FAMILY):
    """Open or create a raw-mode RocksDB at ``path`` that has the column family ``cf_name``."""
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    return rocksdict.Rdict(path, options, column_families={cf_name: rocksdict.Options(raw_mode=True)})

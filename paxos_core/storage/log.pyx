# cython: language_level=3
"""The durable Paxos log of one worker: every group's records in one RocksDB (rocksdict, raw mode).

One call to :meth:`RocksLog.write` puts a whole cycle's records, of all the worker's groups, into ONE
WriteBatch and makes ONE synced write: group commit. RocksDB holds the GIL for the whole synced write, so
nothing here relies on a syncer thread; parallelism comes from worker processes, each with its own log.

Durability settings:

* ``"sync"`` (default): every write is fsynced before :meth:`write` returns. The effect contract relies on it.
* ``"unsafe-no-sync"``: writes are not synced. A crash can lose acknowledged state and break Paxos safety.
  For tests only; opening a log this way logs a warning.

Opening checks the write-ahead log strictly first. If its tail is damaged (a torn write at a crash), the
damage is reported (log line, ``wal_tail_damaged``) and the log is reopened with point-in-time recovery,
which drops the damaged tail whole: a partly written batch is never applied. Synced writes are complete on a
disk that honours fsync, so what is dropped was never acknowledged; anything the node loses that its peers
hold (its learned marks, chosen values) is learned again from them.

Every record carries its own crc32c (see records.pyx); recovery reports damaged ones and never uses them.
"""
import logging
import os

import rocksdict

from libc.stdint cimport uint32_t, uint64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from paxos_core.storage.records cimport (CHAIN_RECORD, GROUP_RECORD, INSTANCE_RECORD, LOW_RECORD, NODE_RECORD,
                                         RECORD_VOID, encode_record, group_key)

from paxos_core.errors import ConfigError, RecordCorrupt, UnknownVersion
from paxos_core.storage.records import NODE_KEY, decode_record, node_record
from paxos_core.storage.recovery import recover

log = logging.getLogger("paxos_core.storage")

DURABILITY_MODES = ("sync", "unsafe-no-sync")


# Column families besides the log's (default) one: "sm" holds the state machine's data, written unsynced
# each cycle; the log's synced write that follows makes it durable (one WAL, one fsync).
COLUMN_FAMILIES = ("sm",)


# Memtables: 8 MiB per column family, all memtables of the DB capped at 32 MiB. The defaults (64 MiB per
# family) let a worker with many groups hold every group's recent records in memory; these keep a node's
# memory per idle group small at no cost in throughput (records are small and flushed in the background).
WRITE_BUFFER_BYTES = 8 << 20
DB_WRITE_BUFFER_BYTES = 32 << 20


def _family_options():
    opts = rocksdict.Options(raw_mode=True)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    return opts


def _options(mode):
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_paranoid_checks(True)
    opts.set_wal_recovery_mode(mode)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    opts.set_db_write_buffer_size(DB_WRITE_BUFFER_BYTES)
    return opts


def _open(path, mode):
    families = {name: _family_options() for name in COLUMN_FAMILIES}
    return rocksdict.Rdict(path, _options(mode), column_families=families)


cdef inline double _monotonic() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class RocksLog:
    """The records of every group of one worker, in one RocksDB."""

    cdef object db
    cdef object write_opts
    cdef readonly str path
    cdef readonly int node_id
    cdef readonly uint64_t cluster_id
    cdef readonly str durability
    cdef readonly bint wal_tail_damaged
    cdef readonly str open_report
    cdef readonly long long syncs
    cdef readonly long long writes
    cdef readonly long long records_written
    cdef readonly long long bytes_written
    cdef readonly double last_write_seconds     # how long the last write() took (the synced write itself)

    def __init__(self, path, int node_id, uint64_t cluster_id, str durability="sync"):
        if durability not in DURABILITY_MODES:
            raise ConfigError("storage field 'durability': %r is not one of %s"
                              % (durability, ", ".join(DURABILITY_MODES)))
        self.path = os.fspath(path)
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.durability = durability
        self.syncs = self.writes = self.records_written = self.bytes_written = 0
        self.last_write_seconds = 0.0
        self.wal_tail_damaged = False
        self.open_report = ""
        os.makedirs(self.path, exist_ok=True)
        try:
            self.db = _open(self.path, rocksdict.DBRecoveryMode.absolute_consistency())
        except Exception as exc:
            if "Corruption" not in str(exc):
                raise
            self.wal_tail_damaged = True
            self.open_report = "write-ahead log tail damaged (%s); the partial write was dropped" % exc
            log.warning("log %s: %s", self.path, self.open_report)
            self.db = _open(self.path, rocksdict.DBRecoveryMode.point_in_time())
        self.write_opts = rocksdict.WriteOptions()
        self.write_opts.sync = durability == "sync"
        if durability != "sync":
            log.warning("log %s opened with durability=%r: writes are NOT synced; a crash can lose "
                        "acknowledged writes and break safety. Use only in tests.", self.path, durability)
        self._check_node_record()

    def _check_node_record(self):
        raw = self.db.get(NODE_KEY)
        if raw is None:
            key, value = encode_record(node_record(self.node_id, self.cluster_id))
            self._put_batch([(key, value)])
            return
        try:
            record = decode_record(NODE_KEY, raw)
        except UnknownVersion:
            self.db.close()
            raise
        except RecordCorrupt as exc:
            self.db.close()
            raise RecordCorrupt("log %s: the node record is damaged: %s" % (self.path, exc))
        if record[1] != self.node_id or record[2] != self.cluster_id:
            self.db.close()
            raise ConfigError("log %s belongs to node %d of cluster %x, not node %d of cluster %x"
                              % (self.path, record[1], record[2], self.node_id, self.cluster_id))

    cdef _put_batch(self, list pairs):
        batch = rocksdict.WriteBatch(raw_mode=True)
        cdef Py_ssize_t nbytes = 0
        for key, value in pairs:
            batch.put(key, value)
            nbytes += len(value)
        self.db.write(batch, self.write_opts)
        self.writes += 1
        if self.write_opts.sync:
            self.syncs += 1
        self.records_written += len(pairs)
        self.bytes_written += nbytes

    cpdef int write(self, list records) except -1:
        """Persist record tuples of any groups as ONE batch with ONE synced write; returns how many."""
        if not records:
            return 0
        batch = rocksdict.WriteBatch(raw_mode=True)
        cdef Py_ssize_t nbytes = 0
        cdef tuple pair
        for record in records:
            pair = encode_record(<tuple>record)
            batch.put(pair[0], pair[1])
            nbytes += len(<bytes>pair[1])
        cdef double started = _monotonic()
        self.db.write(batch, self.write_opts)
        self.last_write_seconds = _monotonic() - started
        self.writes += 1
        if self.write_opts.sync:
            self.syncs += 1
        self.records_written += len(records)
        self.bytes_written += nbytes
        return len(records)

    def write_each(self, list records):
        """One synced write PER RECORD: the baseline that group commit is measured against."""
        cdef tuple pair
        for record in records:
            pair = encode_record(<tuple>record)
            self.db.put(pair[0], pair[1], self.write_opts)
            self.writes += 1
            if self.write_opts.sync:
                self.syncs += 1
            self.records_written += 1
            self.bytes_written += len(<bytes>pair[1])
        return len(records)

    def get(self, key):
        return self.db.get(key)

    def read_chosen(self, uint32_t group, uint64_t first, uint64_t end):
        """[(instance, ballot, value)] stored at first, first+1, ... < end; stops at a gap or damage."""
        entries = []
        if first >= end:
            return entries
        cdef uint64_t expected = first
        end_key = group_key(INSTANCE_RECORD, group, end)
        for key, value in self.db.items(from_key=group_key(INSTANCE_RECORD, group, first)):
            if key >= end_key:
                break
            try:
                rec = decode_record(key, value)
            except (RecordCorrupt, UnknownVersion):
                break
            if rec[2] != expected or rec[3] & RECORD_VOID:
                break
            entries.append((rec[2], rec[5], rec[8]))
            expected += 1
        return entries

    def read_chain(self, uint32_t group, uint64_t instance):
        """The chain recorded at `instance` (a CHAIN record), or None if absent or damaged."""
        key = group_key(CHAIN_RECORD, group, instance)
        value = self.db.get(key)
        if value is None:
            return None
        try:
            return decode_record(key, value)[7]
        except (RecordCorrupt, UnknownVersion):
            return None

    def items(self):
        """Every (key, value) in key order."""
        return self.db.items()

    def recover(self):
        """Rebuild every group's state from the stored records (see recovery.py)."""
        return recover(self.db.items())

    def truncate(self, uint32_t group, uint64_t below):
        """Delete the group's records below instance `below` (which must be learned), in one synced batch.

        The chain over the deleted values is kept in the group's LOW record, so recovery can still check the
        rest of the log. Returns the number of records deleted.
        """
        low_key = group_key(LOW_RECORD, group, 0)
        raw = self.db.get(low_key)
        low, chain = 0, 0
        if raw is not None:
            rec = decode_record(low_key, raw)
            low, chain = rec[6], rec[7]
        if below <= low:
            return 0
        from paxos_core.core.learner import chain_next
        cdef uint64_t expected = low
        for instance, ballot, value in self.read_chosen(group, low, below):
            chain = chain_next(chain, instance, value)
            expected = instance + 1
        if expected != below:
            raise ValueError("group %d: cannot truncate below %d, the records stop at %d" % (group, below, expected))
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.delete_range(group_key(INSTANCE_RECORD, group, low), group_key(INSTANCE_RECORD, group, below))
        key, value = encode_record((LOW_RECORD, group, 0, 0, 0, 0, below, chain, b""))
        batch.put(key, value)
        self.db.write(batch, self.write_opts)
        self.writes += 1
        if self.write_opts.sync:
            self.syncs += 1
        return below - low

    @property
    def rdict(self):
        """The open rocksdict.Rdict (for the state machine's column family; see statemachine.store)."""
        return self.db

    def delete_group(self, uint32_t group):
        """Delete every record of a group (it was removed from this node) but its GROUP record (the tombstone
        the caller wrote first), in one synced batch."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.delete_range(group_key(0, group, 0), group_key(GROUP_RECORD, group, 0))
        self.db.write(batch, self.write_opts)
        self.writes += 1
        if self.write_opts.sync:
            self.syncs += 1

    def put_raw(self, key, value):
        """Store raw bytes under a key (synced). For corruption tests and repair tools only."""
        self.db.put(key, value, self.write_opts)

    def delete_raw(self, key):
        self.db.delete(key, self.write_opts)

    def stats(self):
        return {"syncs": self.syncs, "writes": self.writes, "records": self.records_written,
                "bytes": self.bytes_written, "wal_tail_damaged": int(self.wal_tail_damaged)}

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

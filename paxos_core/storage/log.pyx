# cython: language_level=3
"""The durable Paxos log of one worker: every group's records in one RocksDB (rocksdict, raw mode).

One call to :meth:`RocksLog.write` puts a whole cycle's records, of all the worker's groups, into ONE
WriteBatch and makes ONE synced write: group commit. RocksDB holds the GIL for the whole synced write, so
nothing here relies on a syncer thread; parallelism comes from worker processes, each with its own log.

Durability settings:

* ``"sync"`` (default): every write is fsynced before :meth:`write` returns. The effect contract relies on it.
* ``"unsafe-no-sync"``: writes are not synced. A crash can lose acknowledged state and break Paxos safety.
  For tests only; opening a log this way logs a warning.

Every record carries its own crc32c (see records.pyx); recovery reports damaged ones and never uses them.

Damage found by RocksDB
-----------------------
The rule: never recover point-in-time over synced data. Opening sets ``damage``:

* ``None``: the DB opened with ``absolute_consistency``.
* ``"torn-tail"``: the only problem is a record cut short at the very end of the write-ahead log (no
  complete record after it in any later WAL file): the write in progress at a crash, never acknowledged.
  It is dropped (``tolerate_corrupted_tail_records``) and reported in one warning line (``open_report``).
* ``"synced"``: anything else. The DB directory is renamed to ``<path>.damaged-<UTC YYYYmmddTHHMMSSZ>``
  (never deleted), an empty DB is created at ``<path>``, ``amnesia`` is set, and ``open_report`` says what was
  found and where the old DB is (one ERROR line). The node must rebuild its groups from peers before it
  votes again. A damaged table block is found only when it is read: opening therefore runs the recovery
  scan (kept for :meth:`RocksLog.recover`), and a scan that RocksDB fails is synced damage too; ``recover()``
  then returns an empty Recovery with ``amnesia`` set. It never raises on damaged stored data.

``created`` says whether the DB at ``<path>`` was created by this open (a first start, a lost directory, or
the empty DB that replaces a damaged one); see identity.py for how a worker tells the first from the others.

What RocksDB 9.8.4 (rocksdict 0.3.29) does, measured with tools/rocksdb_damage_probe.py on a DB of 40 synced
WriteBatches ("n/40": batches back after the open; "fails": the open raises, naming the damage):

================================  ===========  =============  =============  ===========  ==============
damage                            absolute     tolerate-tail  point-in-time  skip-any     RocksLog
================================  ===========  =============  =============  ===========  ==============
a  last WAL record cut short      fails        39/40          39/40          39/40        torn-tail
a' ... cut inside its header      fails        39/40          39/40          39/40        torn-tail
b  zeros appended                 40/40        40/40          40/40          40/40        None
b' garbage appended               fails        40/40          40/40          40/40        torn-tail
b" full-length record, bad crc    fails        fails          40/40          40/40        synced
c  bit flip, last WAL record      fails        fails          39/40 silent   39/40        synced
d  bit flip, middle WAL record    fails        fails          20/40 silent   20/40        synced
d' type byte 1->5, first record   0/40 silent  0/40 silent    0/40 silent    0/40 silent  synced
d" type byte 1->5, later record   HANGS        HANGS          HANGS          HANGS        synced
e  bit flip, SST data block       read fails*  read fails*    read fails*    read fails*  synced
e' bit flip, SST footer           fails        fails          fails          fails        synced
f  SST deleted                    fails        fails          fails          fails        synced
g  CURRENT deleted                fails**      fails**        fails**        fails**      synced
g' CURRENT names no MANIFEST      fails***     fails***       fails***       fails***     synced
g" MANIFEST bit flip              fails        fails          fails          fails        synced
g3 MANIFEST last record cut       40/40        40/40          40/40          40/40        synced
g4 MANIFEST cut in a flush edit   30/40 silent 30/40 silent   30/40 silent   30/40 silent synced
g6 MANIFEST type byte 1->5, last  HANGS        HANGS          HANGS          HANGS        synced
h  older WAL cut, newer intact    fails        40/40 + HOLE   fails****      40/40 + HOLE synced
================================  ===========  =============  =============  ===========  ==============

\*  the DB opens; a read of the damaged block fails: ``get`` raises, and rocksdict's ``items()`` STOPS
   SILENTLY as if the data ended there (the iterator's ``status()`` holds the error). RocksLog finds it in
   the recovery scan it runs at open.
\** "While creating a new Db, wal_dir contains existing log file". \*** an IO error, "No such file or
directory". \**** "SST file is ahead of WALs". HOLE: the second column family lost batch 19 while
batches 20-39 came back. HANGS: the open never returns (RocksDB spins reading the record,
facebook/rocksdb#13333); d', d", g6 flip bit 2 of a record's type byte, making a FULL record (1) a
"recyclable" one (5), as the nemesis corrupt fault once did.

What follows:

* Every WAL file and the MANIFEST are read and checked record by record (``_wal_shape``: the checksum, the
  type, the length against its block) before RocksDB opens them. A complete record that fails is synced
  damage, as RocksDB's own check says for b", c, d and g"; the check is there for d', d" and g6, which
  RocksDB gets wrong in every mode. A record cut short by the end of its file is left to the classification
  below.
* ``tolerate_corrupted_tail_records`` is the mode that tells a torn write from damage in the WAL: it drops
  a record cut short at the end of a WAL file (a-b') and refuses a complete record whose checksum fails
  (b", c, d). ``point_in_time`` silently drops everything from the first bad record on (c, d), synced
  promises and votes included; ``skip_any_corrupted_records`` lost as much here.
* But it drops a cut-short record at the end of ANY WAL file, also an older one with later WAL files after it
  (h: two column families keep an older WAL alive). That leaves a hole. So the classification checks the
  WAL files' record structure itself (``_wal_tear``): only a cut at the end with nothing complete after it
  is a torn tail.
* RocksDB cannot tell a bit flip in the last complete WAL record (c) from a torn write that left a
  full-length record with wrong bytes (b"): both are a complete record with a bad checksum. We treat both as
  synced damage: the safe side for a flipped bit, and a false alarm (one node rebuilds) for such a torn
  write. File systems that order data before size updates (xfs, ext4 data=ordered) leave a torn append as a
  shorter file (a), not as a full-length record with wrong bytes. Treating every torn tail as synced damage
  is no option: after a whole-cluster power cut every node would rebuild from peers and none could answer.
* RocksDB reads a MANIFEST's tail leniently in every mode (g3, g4) and deletes the orphaned SST at open.
  A MANIFEST ending in a cut-short record is therefore classified synced before RocksDB opens it; the
  moved-aside directory keeps the SST. (A crash inside a MANIFEST write is rare: flushes and compactions.)
* CURRENT missing with table or WAL files present is synced damage; with table files alone RocksDB would
  create a new DB over them and delete them.
* Every scan here uses the iterator and checks its status, never ``items()`` (see \* above).
* Not detected: a WAL or MANIFEST shortened exactly at a record boundary, and an SST block that no scan
  reads (the state machine's column family is read only by the state machine).
"""
import gc
import logging
import os
import threading
import time

import rocksdict

from libc.stdint cimport uint32_t, uint64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from paxos_core.wire.checksum cimport crc32c_buf
from paxos_core.storage.records cimport (CHAIN_RECORD, CHECKPOINT_RECORD, GROUP_RECORD, INSTANCE_RECORD,
                                         LOW_RECORD, NODE_RECORD, RECORD_VOID, encode_record, group_key)

from paxos_core.errors import ConfigError, RecordCorrupt, UnknownVersion
from paxos_core.storage.identity import fsync_dir
from paxos_core.storage.records import (BYTES_UNKNOWN, NODE_KEY, decode_record, node_record, read_chain_bytes,
                                        read_low)
from paxos_core.storage.recovery import Recovery, recover
from paxos_core.statemachine.store import add_to_batch

log = logging.getLogger("paxos_core.storage")

DURABILITY_MODES = ("sync", "unsafe-no-sync")

TORN_TAIL = "torn-tail"
SYNCED = "synced"


# Column families besides the log's (default) one: "sm" holds the state machine's data, written unsynced
# each cycle; the log's synced write that follows makes it durable (one WAL, one fsync).
STORE_FAMILY = "sm"             # statemachine/store.py: SM_COLUMN_FAMILY
COLUMN_FAMILIES = (STORE_FAMILY,)


# Memtables: 8 MiB per column family, all memtables of the DB capped at 32 MiB. The defaults (64 MiB per
# family) let a worker with many groups hold every group's recent records in memory; these keep a node's
# memory per idle group small at no cost in throughput (records are small and flushed in the background).
WRITE_BUFFER_BYTES = 8 << 20
DB_WRITE_BUFFER_BYTES = 32 << 20


def _family_options():
    opts = rocksdict.Options(raw_mode=True)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    return opts


def _options(mode, create):
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(create)
    opts.create_missing_column_families(True)
    opts.set_paranoid_checks(True)
    opts.set_wal_recovery_mode(mode)
    # A recycled WAL makes a bit flip look like the end of the log in tolerate_corrupted_tail_records mode.
    opts.set_recycle_log_file_num(0)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    opts.set_db_write_buffer_size(DB_WRITE_BUFFER_BYTES)
    return opts


def _open(path, mode, create=False):
    families = {name: _family_options() for name in COLUMN_FAMILIES}
    return rocksdict.Rdict(path, _options(mode, create), column_families=families)


def _is_damage(exc):
    """True for RocksDB errors that mean stored state is damaged or missing (not a lock, permission or
    disk-full error, which say nothing about the data and are raised as they are)."""
    text = str(exc)
    return "Corruption" in text or ("IO error" in text and "No such file or directory" in text)


is_damage = _is_damage      # the worker's name for it (damage met outside the log: runtime/worker.py)


def _one_line(exc):
    return " ".join(str(exc).split())


# ------------------------------------------------------------------------------------------ WAL files
#
# RocksDB's log format (WALs and the MANIFEST): 32 KiB blocks; a physical record is masked crc32c u32 |
# length u16 | type u8 | payload and never crosses a block (a block tail too short for a header is padding).
# The crc32c covers the type byte and the payload. A logical record (a WriteBatch, a MANIFEST edit) is one
# FULL record or FIRST, MIDDLE..., LAST. Every record is checked here, before RocksDB reads the file: a bit
# flip in a type byte can make RocksDB 9.8.4 spin for ever at open (facebook/rocksdb#13333), or take a record
# for the end of the log and drop every synced write after it without a word.

WAL_BLOCK = 32 * 1024
WAL_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
# Metadata records RocksDB may write between data records (WAL compression, user timestamp sizes); from 128
# on, records newer RocksDB versions mark as safe to ignore. Checked like the others, then skipped.
_METADATA = (9, 10)
_IGNORABLE_FROM = 128
# The recyclable types (5-8, 11: a longer header with a log number). These logs are never written that way
# (set_recycle_log_file_num(0)), so such a record is a damaged one.
_RECYCLABLE = (5, 6, 7, 8, 11)


def _wal_files(path):
    """[(number, file path)] of the DB's WAL files, oldest first."""
    found = []
    for name in os.listdir(path):
        stem, dot, ext = name.partition(".")
        if ext == "log" and stem.isdigit():
            found.append((int(stem), os.path.join(path, name)))
    return sorted(found)


cdef inline uint32_t _unmask_crc(uint32_t masked) noexcept:
    """RocksDB stores a record's crc32c rotated and offset ("masked")."""
    cdef uint32_t delta = 0xa282ead8
    cdef uint32_t rot = masked - delta
    return (rot >> 17) | (rot << 15)


def _wal_shape(filename):
    """(complete logical records, offset of an incomplete record at the end of the file or None, the first
    damaged record as "offset N: what is wrong" or None) of one log file.

    Damaged: a record that runs past its block with more of the file after it, a complete record whose
    checksum fails, or one of a type these logs never hold. A record cut short by the end of the file is not
    damage here: it is what a torn write leaves (see _wal_tear)."""
    cdef Py_ssize_t pos, n, end
    cdef const unsigned char *data
    cdef uint32_t stored, actual
    cdef int rtype, length
    complete = 0
    fragment_at = None
    offset = 0
    with open(filename, "rb") as f:
        while True:
            block = f.read(WAL_BLOCK)
            n = len(block)
            if not n:
                break
            data = block
            last = n < WAL_BLOCK            # RocksDB's end of file: a short block
            pos = 0
            while pos < n:
                if n - pos < WAL_HEADER:
                    if last:
                        return complete, offset + pos, None      # a header cut short
                    break                                        # block padding
                length = data[pos + 4] | data[pos + 5] << 8
                rtype = data[pos + 6]
                if rtype == 0 and length == 0:
                    break                                        # zeros: RocksDB skips the rest of the block
                end = pos + WAL_HEADER + length
                if end > n:
                    if last:
                        return complete, offset + pos, None      # a payload cut short
                    return complete, None, "offset %d: a record of %d bytes runs past its block" % (
                        offset + pos, length)
                if rtype in _RECYCLABLE:
                    return complete, None, "offset %d: a record of the recyclable type %d" % (offset + pos, rtype)
                stored = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16 | <uint32_t>data[pos + 3] << 24
                actual = crc32c_buf(data + pos + 6, 1 + length, 0)
                if _unmask_crc(stored) != actual:
                    return complete, None, "offset %d: a record of %d bytes fails its checksum" % (
                        offset + pos, length)
                if rtype == _FULL:
                    complete += 1
                    fragment_at = None
                elif rtype == _FIRST:
                    fragment_at = offset + pos
                elif rtype == _LAST:
                    if fragment_at is not None:
                        complete += 1
                        fragment_at = None
                elif rtype != _MIDDLE and rtype not in _METADATA and rtype < _IGNORABLE_FROM:
                    return complete, None, "offset %d: a record of the unknown type %d" % (offset + pos, rtype)
                pos = end
            offset += n
            if last:
                break
    return complete, fragment_at, None


def _wal_damage(path):
    """A one-line finding on the first damaged record (see _wal_shape) of the DB's WAL files, else "". Such a
    record is synced damage wherever it is, as RocksDB's own check says in strict mode (module docstring: b",
    c, d)."""
    for number, filename in _wal_files(path):
        damaged = _wal_shape(filename)[2]
        if damaged is not None:
            return "write-ahead log %s is damaged at %s" % (os.path.basename(filename), damaged)
    return ""


def _wal_tear(path):
    """(WAL file name, offset) of a torn write at the very end of the write-ahead log, else None.

    A torn write is a record cut short at the end of a WAL file with no complete record in any later WAL
    file: the last thing written, and never acknowledged (an acknowledged write was synced, so complete, and
    a later write could only start after it). A record cut short with complete records after it is synced
    data lost in the middle; tolerate_corrupted_tail_records would skip it silently and leave a hole.
    """
    tear = None
    for number, filename in _wal_files(path):
        complete, cut_at, damaged = _wal_shape(filename)
        if damaged is not None:
            return None
        if tear is not None and complete:
            return None
        if cut_at is not None and tear is None:
            tear = (os.path.basename(filename), cut_at)
    return tear


def _current_manifest(path):
    """The path of the MANIFEST that CURRENT names, or None (missing or unreadable: RocksDB reports it)."""
    try:
        with open(os.path.join(path, "CURRENT")) as f:
            name = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    manifest = os.path.join(path, name)
    if not name.startswith("MANIFEST-") or not os.path.isfile(manifest):
        return None
    return manifest


def _manifest_problem(path):
    """A one-line finding if the MANIFEST that CURRENT names ends in a record cut short or holds a damaged
    record (see _wal_shape), else "". Both are synced damage.

    RocksDB reads a MANIFEST's tail leniently in every recovery mode: the last change to the set of files is
    dropped without a word, and the table it added is deleted as obsolete. After a flush whose WAL was
    already deleted, that loses synced data.
    """
    manifest = _current_manifest(path)
    if manifest is None:
        return ""
    complete, cut_at, damaged = _wal_shape(manifest)
    name = os.path.basename(manifest)
    if cut_at is not None:
        return "%s ends in a record cut short at offset %d" % (name, cut_at)
    if damaged is not None:
        return "%s is damaged at %s" % (name, damaged)
    return ""


# ------------------------------------------------------------------------------------------ the DB lock

def _lock_held(path):
    """True while this process still holds the RocksDB LOCK of `path` (the DB is really open)."""
    try:
        st = os.stat(os.path.join(path, "LOCK"))
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    file_id = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    pid = str(os.getpid())
    return any(pid in fields and file_id in fields for fields in (line.split() for line in lines))


def _aside_path(path):
    base = "%s.damaged-%s" % (os.path.normpath(path), time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    candidate, n = base, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = "%s-%d" % (base, n)
    return candidate


class _ReadFailed(Exception):
    """RocksDB reported an error while iterating (a block checksum mismatch, a missing file)."""


def _scan(db, from_key=None, fill_cache=True):
    """(key, value) in key order from `from_key`; raises _ReadFailed at the end if the iteration stopped on an
    error. (rocksdict's items() ends silently at a damaged block, as if the data ended there.)"""
    read_opts = rocksdict.ReadOptions()
    read_opts.fill_cache(fill_cache)
    it = db.iter(read_opts)
    if from_key is None:
        it.seek_to_first()
    else:
        it.seek(from_key)
    valid, key, value, step = it.valid, it.key, it.value, it.next
    while valid():
        yield key(), value()
        step()
    error = None
    try:
        it.status()
    except Exception as exc:
        error = exc
    del valid, key, value, step, it         # drop the iterator: it keeps the DB open
    if error is not None:
        if not _is_damage(error):
            raise error
        raise _ReadFailed(_one_line(error))


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
    cdef readonly object damage            # None, "torn-tail" or "synced" (see the module docstring)
    cdef readonly bint amnesia             # synced state was lost: this log starts empty
    cdef readonly bint created             # the DB at `path` was created by this object (empty at start)
    cdef readonly str open_report          # one line on what was found, "" if nothing
    cdef readonly long long read_errors    # reads that RocksDB stopped with a damage error
    cdef readonly long long syncs
    cdef readonly long long writes
    cdef readonly long long records_written
    cdef readonly long long bytes_written
    cdef readonly double last_write_seconds     # how long the last write() took (the synced write itself)
    cdef readonly long long deleted_instances   # instances range-deleted (truncation, installs) since the last
                                                # compaction was started
    cdef readonly long long compactions         # compactions of truncated ranges started
    cdef readonly double compaction_seconds     # time they took, summed (in the compactor thread)
    cdef public long long compact_after_instances
    cdef object _compact_span                   # [lowest, highest] key range deleted since the last one
    cdef object _compactor                      # the thread running a compaction, or None
    cdef object _recovery                  # the recovery scan made at open, until recover() takes it or a write

    def __init__(self, path, int node_id, uint64_t cluster_id, str durability="sync"):
        if durability not in DURABILITY_MODES:
            raise ConfigError("storage field 'durability': %r is not one of %s"
                              % (durability, ", ".join(DURABILITY_MODES)))
        self.path = os.fspath(path)
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.compact_after_instances = 65536
        self.durability = durability
        self.syncs = self.writes = self.records_written = self.bytes_written = 0
        self.read_errors = 0
        self.last_write_seconds = 0.0
        self.damage = None
        self.amnesia = False
        self.created = False
        self.open_report = ""
        self.write_opts = rocksdict.WriteOptions()
        self.write_opts.sync = durability == "sync"
        os.makedirs(self.path, exist_ok=True)
        self.db = self._open_checked()
        if durability != "sync":
            log.warning("log %s opened with durability=%r: writes are NOT synced; a crash can lose "
                        "acknowledged writes and break safety. Use only in tests.", self.path, durability)
        self._check_node_record()
        # Scanned now, before anyone holds a handle on the DB: damage found here can still be moved aside.
        self._recovery = self._recover_scan()
        if self.amnesia:
            self._recovery.amnesia, self._recovery.report = True, self.open_report

    @property
    def wal_tail_damaged(self):
        """True if a torn write at the end of the write-ahead log was dropped at open."""
        return self.damage == TORN_TAIL

    def _open_checked(self):
        """Open the DB, classify any damage (module docstring), and return the open DB."""
        path = self.path
        if not os.path.exists(os.path.join(path, "CURRENT")):
            tables = [n for n in os.listdir(path) if n.endswith(".sst")]
            wals = _wal_files(path)
            if tables or wals:
                # RocksDB would create a new DB over them (or refuse, if a WAL is there).
                return self._replace_damaged("CURRENT is missing but %d table and %d WAL files are there"
                                             % (len(tables), len(wals)))
            self.created = True
            return _open(path, rocksdict.DBRecoveryMode.absolute_consistency(), create=True)
        problem = _manifest_problem(path) or _wal_damage(path)
        if problem:
            return self._replace_damaged(problem)
        try:
            return _open(path, rocksdict.DBRecoveryMode.absolute_consistency())
        except Exception as exc:
            if not _is_damage(exc):
                raise
            strict_error = _one_line(exc)
        tear = _wal_tear(path)
        if tear is None:
            return self._replace_damaged(strict_error)
        try:
            db = _open(path, rocksdict.DBRecoveryMode.tolerate_corrupted_tail_records())
        except Exception as exc:
            if not _is_damage(exc):
                raise
            return self._replace_damaged("%s; beyond the torn write at the end of %s: %s"
                                         % (strict_error, tear[0], _one_line(exc)))
        self.damage = TORN_TAIL
        self.open_report = ("write-ahead log tail torn (%s: an incomplete record at offset %d, a write never "
                            "acknowledged); the partial write was dropped" % tear)
        log.warning("log %s: %s", path, self.open_report)
        return db

    def _replace_damaged(self, finding):
        """Synced state is damaged: move the DB directory aside (never deleted), start a fresh empty DB at
        `path`, and report it in one line. Returns the fresh DB."""
        path = self.path
        self._release()
        aside = _aside_path(path)
        os.rename(os.path.normpath(path), aside)
        fsync_dir(os.path.dirname(os.path.abspath(aside)))
        os.makedirs(path)
        db = _open(path, rocksdict.DBRecoveryMode.absolute_consistency(), create=True)
        self.created = True
        self.amnesia = True
        self.damage = SYNCED
        self.open_report = ("synced state damaged: %s; the damaged log was moved to %s and an empty one started "
                            "in its place: this node's groups must be rebuilt from peers before it votes"
                            % (finding, aside))
        log.error("log %s: %s", path, self.open_report)
        return db

    def _release(self):
        """Close the DB for good; refuse (RuntimeError) if another handle keeps it open.

        Closing a damaged DB may itself report the damage (a background compaction read the bad block:
        "Corruption: block checksum mismatch"). That is what we are handling, not a new failure: the handle
        is dropped all the same, and the lock check below says whether the DB is really closed."""
        if self.db is not None:
            db, self.db = self.db, None
            try:
                db.close()
            except Exception as exc:
                log.warning("log %s: closing the damaged DB reported: %s", self.path, " ".join(str(exc).split()))
            del db
        gc.collect()
        if _lock_held(self.path):
            raise RuntimeError("log %s is damaged but cannot be moved aside: it is still open through another "
                               "handle (a column family, iterator or snapshot of .rdict); close those first"
                               % self.path)

    def _check_node_record(self):
        try:
            raw = self.db.get(NODE_KEY)
        except Exception as exc:
            if not _is_damage(exc):
                raise
            self.db = self._replace_damaged("reading the node record: %s" % _one_line(exc))
            raw = None
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
        self._recovery = None
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

    cpdef int write(self, list records, list deletes=None, tuple store_ops=None) except -1:
        """Persist a cycle as ONE batch with ONE synced write; returns how many records it put.

        `records`: record tuples of any groups. `deletes`: range deletes of log records, each
        ``(record type, group, first instance, end instance)`` (truncation, an install). `store_ops`: the
        state machine's writes that must become durable in the same atomic step, ``(puts, deletes,
        delete_ranges)`` as Store.write takes them, into the "sm" column family (a snapshot's swap). In the
        batch: the records, then the log's range deletes, then the store's range deletes, deletes and puts.
        RocksDB applies a batch whole or not at all, after a crash too (one WAL for both column families).
        """
        if not records and not deletes and not store_ops:
            return 0
        self._recovery = None
        batch = rocksdict.WriteBatch(raw_mode=True)
        cdef Py_ssize_t nbytes = 0
        cdef tuple pair
        for record in records:
            pair = encode_record(<tuple>record)
            batch.put(pair[0], pair[1])
            nbytes += len(<bytes>pair[1])
        if deletes:
            for rtype, group, first, end in deletes:
                begin_key, end_key = group_key(rtype, group, first), group_key(rtype, group, end)
                batch.delete_range(begin_key, end_key)
                if rtype == INSTANCE_RECORD:
                    self.deleted_instances += end - first
                    span = self._compact_span
                    self._compact_span = [begin_key if span is None else min(span[0], begin_key),
                                          end_key if span is None else max(span[1], end_key)]
        if store_ops:
            add_to_batch(batch, self.db.get_column_family_handle(STORE_FAMILY), *store_ops)
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
        self._recovery = None
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
        """[(instance, ballot, value)] stored at first, first+1, ... < end; stops at a gap or damage.

        A damaged record stops it there; so does a read that RocksDB fails with a damage error (counted in
        read_errors).
        """
        entries = []
        if first >= end:
            return entries
        cdef uint64_t expected = first
        end_key = group_key(INSTANCE_RECORD, group, end)
        scan = _scan(self.db, group_key(INSTANCE_RECORD, group, first))
        try:
            for key, value in scan:
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
        except _ReadFailed as exc:
            self.read_errors += 1
            log.error("log %s: reading group %d from instance %d stopped at %d: %s (read errors: %d)",
                      self.path, group, first, expected, exc, self.read_errors)
        finally:
            scan.close()
        return entries

    def read_chain(self, uint32_t group, uint64_t instance):
        """The chain recorded at `instance` (a CHAIN record), or None if absent or damaged."""
        found = read_chain_bytes(self.db.get, group, instance)
        return None if found is None else found[0]

    def read_chain_bytes(self, uint32_t group, uint64_t instance, bint with_config=False):
        """(chain, bytes_below) of the CHAIN record at `instance`, or None if absent or damaged."""
        return read_chain_bytes(self.db.get, group, instance, with_config)

    def read_low(self, uint32_t group, bint with_config=False):
        """(low, chain at low, bytes_below) of the group's LOW record, (0, 0, 0) without one, None if damaged."""
        return read_low(self.db.get, group, with_config)

    def items(self):
        """Every (key, value) in key order. RecordCorrupt if RocksDB cannot read part of it."""
        try:
            yield from _scan(self.db)
        except _ReadFailed as exc:
            raise RecordCorrupt("log %s: %s" % (self.path, exc)) from None

    def recover(self):
        """Rebuild every group's state from the stored records (see recovery.py).

        Never raises on damaged stored data. The records are scanned at open (the result is kept until this
        call or the next write); if RocksDB fails the scan (a damaged table block), that is synced damage:
        the DB is moved aside and replaced by an empty one (``rdict`` is then a new object). The first
        Recovery after synced damage found at open, and one whose own scan found it, is empty and has
        ``amnesia`` set and the one-line ``report``. A scan after writes that finds damage while another
        handle keeps the DB open raises RuntimeError (see _release).
        """
        result, self._recovery = self._recovery, None
        if result is None:
            result = self._recover_scan()
        return result

    def _recover_scan(self):
        failure = None
        try:
            result = recover(_scan(self.db, fill_cache=False))
        except _ReadFailed as exc:
            failure = "recovery scan: %s" % exc
        if failure is None:
            return result
        self.db = self._replace_damaged(failure)
        self._check_node_record()
        return Recovery(node_id=self.node_id, cluster_id=self.cluster_id, amnesia=True, report=self.open_report)

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
        self._recovery = None
        from paxos_core.core.learner import chain_next
        cdef uint64_t expected = low
        for instance, ballot, value in self.read_chosen(group, low, below):
            chain = chain_next(chain, instance, value)
            expected = instance + 1
        if expected != below:
            raise ValueError("group %d: cannot truncate below %d, the records stop at %d" % (group, below, expected))
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.delete_range(group_key(INSTANCE_RECORD, group, low), group_key(INSTANCE_RECORD, group, below))
        key, value = encode_record((LOW_RECORD, group, 0, 0, 0, BYTES_UNKNOWN, below, chain, b""))
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

    def set_aside(self, str finding):
        """Damage found in this DB outside the log's own records (the state machine's column family, read by
        the worker while it starts): the DB is synced state like the log, so it goes aside the same way (moved,
        never deleted; a fresh empty DB in its place; ``rdict`` is a new object). Every handle on the old DB
        (a column family, iterator or snapshot) must be gone first (RuntimeError otherwise, see _release).
        Returns the fresh DB's Recovery: empty, ``amnesia`` set, ``report`` saying what was found."""
        self._recovery = None
        self.wait_compaction()
        self.db = self._replace_damaged(finding)
        self._check_node_record()
        return Recovery(node_id=self.node_id, cluster_id=self.cluster_id, amnesia=True, report=self.open_report)

    def delete_group(self, uint32_t group):
        """Delete every record of a group (it was removed from this node) but its GROUP record (the tombstone
        the caller wrote first), in one synced batch."""
        self._recovery = None
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.delete_range(group_key(0, group, 0), group_key(GROUP_RECORD, group, 0))
        batch.delete_range(group_key(CHECKPOINT_RECORD, group, 0), group_key(CHECKPOINT_RECORD + 1, group, 0))
        self.db.write(batch, self.write_opts)
        self.writes += 1
        if self.write_opts.sync:
            self.syncs += 1

    def put_raw(self, key, value):
        """Store raw bytes under a key (synced). For corruption tests and repair tools only."""
        self._recovery = None
        self.db.put(key, value, self.write_opts)

    def delete_raw(self, key):
        self._recovery = None
        self.db.delete(key, self.write_opts)

    def stats(self):
        return {"syncs": self.syncs, "writes": self.writes, "records": self.records_written,
                "bytes": self.bytes_written, "wal_tail_damaged": int(self.wal_tail_damaged),
                "amnesia": int(self.amnesia), "read_errors": self.read_errors, "compactions": self.compactions,
                "log_bytes": self.log_bytes()}

    def log_bytes(self):
        """Bytes of the DB's files for the log and the state machine (SST files plus memtables)."""
        if self.db is None:
            return 0
        total = 0
        for name in ("rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"):
            total += self.db.property_int_value(name) or 0
            total += self.db.get_column_family(STORE_FAMILY).property_int_value(name) or 0
        return total

    def compact_if_due(self):
        """Truncation deletes ranges; the disk space comes back only when they are compacted. Once
        `compact_after_instances` instances were deleted, compact the span they cover, in a thread of its own
        (RocksDB compacts beside the writes; rocksdict lets go of the GIL meanwhile), one at a time. Returns
        True if one was started."""
        if (self.deleted_instances < self.compact_after_instances or self._compact_span is None
                or self.db is None or (self._compactor is not None and self._compactor.is_alive())):
            return False
        begin, end = self._compact_span
        self._compact_span = None
        self.deleted_instances = 0
        self.compactions += 1
        opts = rocksdict.CompactOptions()
        opts.set_bottommost_level_compaction(rocksdict.BottommostLevelCompaction.force())
        opts.set_exclusive_manual_compaction(False)
        db = self.db

        def run():
            started = time.monotonic()
            try:
                db.compact_range(begin, end, opts)
            except Exception as exc:          # a closed DB, damage met: the next start finds it
                log.warning("log %s: compaction of truncated records failed: %s", self.path, exc)
            self.compaction_seconds += time.monotonic() - started

        self._compactor = threading.Thread(target=run, name="paxos-compactor", daemon=True)
        self._compactor.start()
        return True

    def wait_compaction(self):
        """Wait for a running compaction (before the DB is closed or set aside)."""
        if self._compactor is not None:
            self._compactor.join()
            self._compactor = None

    def close(self):
        self._recovery = None
        self.wait_compaction()
        if self.db is not None:
            self.db.close()
            self.db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

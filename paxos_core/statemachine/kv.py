"""The replicated key-value store: a :class:`StateMachine` of put, get, delete and compare-and-set.

Operations (client side: ``encode_*``; every integer big-endian)::

    put     01 | klen u32 | key | vlen u32 | value
    get     02 | klen u32 | key
    delete  03 | klen u32 | key
    cas     04 | klen u32 | key | elen u32 | expected | nlen u32 | new
            elen = 0xFFFFFFFF: no expected bytes follow, the key must be absent
            nlen = 0xFFFFFFFF: no new bytes follow, the key is deleted

Keys are at most 64 KiB; a field is at most 0xFFFFFFFE bytes (the Paxos layer's value limit is far lower).
An op that does not decode exactly (unknown type, truncated, trailing bytes, key too long) gets an ERROR
result and changes nothing, not even the client's session.

Results: one status byte, ``0x80`` set when a value follows (so an empty value and no value differ)::

    OK               put, delete, cas done; get: the value
    NOT_FOUND        get or delete of an absent key
    CAS_FAILED       the current value (none if absent)
    ERROR            malformed op; the value is a message
    STALE            request_seq older than the session's latest: NOTHING was applied for this command
    SESSION_UNKNOWN  the session is not known here: it expired (was evicted), or never started; NOTHING was
                     applied, and nothing changed, not even the session table

``decode_result(result)`` returns ``KVResult(status, value)``.

Exactly-once sessions. A command is ``(client_id u64, request_seq u64, op)``; ``client_id`` 0 has no session
(always applied). For each (group, client_id != 0) the group keeps the latest request_seq applied and its
result (a session). ``request_seq`` is 63 bits: bit 63 is the RETRY FLAG (``RETRY_FLAG``), set by a client
that re-sends a request an earlier attempt of which may have been proposed. The layers below treat the seq as
an opaque u64 and carry the flag unchanged; here it is masked off (a session stores the seq without it) and
only decides what happens to a command of an unknown session. What a command of a session gets:

    session known, seq == latest          the remembered result; not applied again (flag or not)
    session known, seq <  latest          STALE; nothing applied
    session known, seq >  latest          applied; it becomes the session's latest
    session unknown, seq <= 1, no flag    applied; the session starts (the first request of a new session)
    session unknown, seq > 1              SESSION_UNKNOWN; nothing applied (a late retry of an evicted session)
    session unknown, retry flag           SESSION_UNKNOWN; nothing applied (even seq 1: the first request of
                                          an evicted session, or one whose first attempt never landed)

THE BOUND: a group keeps at most ``max_sessions`` sessions (default 100,000). A command applied, or a retry
answered, counts as a use of its session; a new session beyond the bound evicts the least recently used one:
the smallest (instance, position of the command in the instance, client_id), identical on every node. So a
retry is answered exactly-once as long as fewer than ``max_sessions`` other sessions of the group were used
since its session's last use; after that it gets SESSION_UNKNOWN (outcome of the earlier attempt unknown to
this state machine) instead of being applied a second time. The one command an evicted session can still
have applied twice is an unflagged seq <= 1: a caller must flag every re-send of a session's first request.
Every decision depends on the log alone (the commands, in order, and the state they built), so every node
decides identically. A malformed op (ERROR) changes nothing, not even the client's session.

Storage layout (one :class:`Store`; group = u32 big-endian, so a group's keys are contiguous)::

    group | "d" | user key                 -> value                         half 0
    group | "s" | client_id u64            -> session record                half 0
    group | "D" | user key                 -> value                         half 1
    group | "S" | client_id u64            -> session record                half 1
    group | "m"                            -> version u8 (1) | applied_next u64               (half 0 live)
                                              version u8 (2) | applied_next u64 | half u8     (either)
    session record = instance u64 | position u32 | request_seq u64 | result

Every cycle's changes of every group (data, sessions, applied_next) go to the store in ONE ``write`` at
``flush()``; until then they live in an overlay in memory that reads and applies consult first. A group
without a meta record has no records in its live half; ``drop_group`` is one range delete (both halves and
the meta).

Two halves per group. The meta record names the LIVE half; every read, apply, snapshot and session lookup
uses only that one (the group's prefixes are computed once when it is loaded). The other half is where a
checkpoint received from a peer is staged, while the live half goes on serving reads and applies; then ONE
write of ``swap_ops`` flips the meta to the staged half and range-deletes the old one, so a crash leaves
either the old state or the new one, never a mix (docs/design/checkpoints.md, section 4). Half 0 has the
tags the layout had before halves existed, so old data needs no migration. The meta stays version 1 while
half 0 is live and is version 2 only while half 1 is: a node that never installed into half 1 can still be
opened by a build that predates halves, and one that did is refused by it (UnknownVersion) rather than
misread. Both versions are read.

Checkpoints (:class:`SessionStateMachine`), all at a TURN BOUNDARY: after ``flush()``, with the store's own
buffered writes committed (the runtime's ``StagedStore.commit()``), and before the next apply; the calls
that change or forget state check that (RuntimeError), because ops written around unflushed changes would
let those land in the wrong half afterwards:

* ``checkpoint_entries(view, group, after)`` streams the live half of a frozen :class:`StoreView` as
  ``(tag, key suffix, value)`` with the tags normalized to ``b"d"`` and ``b"s"``: equal states give equal
  streams whichever half is live on either side; ``checkpoint_applied(view, group)`` is its applied mark;
* ``inactive_half(group)``, ``clear_half_ops(group, half)``, ``stage_ops(group, half, entries)`` and
  ``swap_ops(group, applied_next, half)`` return store ops ``(puts, deletes, delete_ranges)`` for the
  caller to write, in the Paxos log's batch of its cycle; staging never touches the live half;
* ``forget_cached(group)``, right after the swap is written: the next use reloads the group from the store.

Snapshot of a group (self-describing, big-endian, crc32c at the end)::

    "PXKV" | version u8 (1) | source group u32 | applied_next u64 | n_data u64 | n_sessions u64
    n_data     x  ( klen u32 | key | vlen u32 | value )          in key order
    n_sessions x  ( client_id u64 | slen u32 | session record )  in client_id order
    crc32c u32 over every byte before it

Equal group states give byte-identical snapshots.

Two classes: :class:`SessionStateMachine` is everything above but what an op does (storage, sessions,
overlay and flush, snapshots); :class:`KVStateMachine` adds the ops (its ``apply_batch`` inlines the session
checks: it is the hot path). A state machine of your own is :class:`~paxos_core.statemachine.user.UserStateMachine`,
on the same base.
"""
import collections
import heapq
import operator
import os
import struct
from typing import Iterable, Iterator, NamedTuple

from ..errors import RecordCorrupt, SessionExpired, StaleRequest, UnknownVersion, ValueTooLarge
from ..wire.checksum import crc32c
from .base import ApplyOrderError, Command, StateMachine
from .store import Store, StoreOps, StoreView

OK = 0
NOT_FOUND = 1
CAS_FAILED = 2
ERROR = 3
STALE = 4
SESSION_UNKNOWN = 5
STATUS_NAMES = {OK: "OK", NOT_FOUND: "NOT_FOUND", CAS_FAILED: "CAS_FAILED", ERROR: "ERROR", STALE: "STALE",
                SESSION_UNKNOWN: "SESSION_UNKNOWN"}

# Bit 63 of request_seq: "an earlier attempt of this request may have been proposed" (see the docstring).
RETRY_FLAG = 1 << 63
SEQ_MASK = RETRY_FLAG - 1

OP_PUT = 1
OP_GET = 2
OP_DELETE = 3
OP_CAS = 4

MAX_KEY_BYTES = 64 * 1024
DEFAULT_MAX_SESSIONS = 100_000
# Groups a worker's state machine keeps in memory while they are busy (least recently used beyond it go back
# to the store; every group goes once the worker has had no input for a second). 16,384 since 2026-12-03: with
# 10,000 groups on two workers the old 4,096 made the busy groups take turns being loaded from RocksDB.
# PAXOS_CORE_MAX_LOADED_GROUPS sets it (for the same-run comparison in docs/BENCHMARKS.md).
DEFAULT_MAX_LOADED_GROUPS = int(os.environ.get("PAXOS_CORE_MAX_LOADED_GROUPS", "16384"))
ABSENT = 0xFFFFFFFF
_U64_MAX = (1 << 64) - 1
_NO_CLIENT = bytes(8)          # client id 0: no session
_HAS_VALUE = 0x80


class KVResult(NamedTuple):
    """A decoded key-value result: a status (OK, NOT_FOUND, ...) and the value it carries, if any."""
    status: int
    value: bytes | None


_U32 = struct.Struct(">I")
_HDR = struct.Struct(">BI")            # op type, key length
_META_V1 = struct.Struct(">BQ")        # version 1, applied_next: half 0 is live
_META_V2 = struct.Struct(">BQB")       # version 2, applied_next, live half
_SESSION = struct.Struct(">QIQ")       # instance, position, request_seq (then the result)
_SNAP_HEAD = struct.Struct(">4sBIQQQ")
_SNAP_MAGIC = b"PXKV"
_SNAP_VERSION = 1
_U64 = struct.Struct(">Q")
_U32_u = _U32.unpack_from
_HDR_u = _HDR.unpack_from

_TAG_META = b"m"
# Tags of the data and session records, by half: half 0 has the tags of the layout before halves.
_DATA_TAGS = (b"d", b"D")
_SESSION_TAGS = (b"s", b"S")
# The tags of checkpoint entries, whatever the half they come from or go to.
CHECKPOINT_DATA = b"d"
CHECKPOINT_SESSION = b"s"

# Results that carry no value are shared constants (no allocation per op).
R_OK = bytes([OK])
R_NOT_FOUND = bytes([NOT_FOUND])
R_STALE = bytes([STALE])
R_SESSION_UNKNOWN = bytes([SESSION_UNKNOWN])
R_CAS_FAILED_ABSENT = bytes([CAS_FAILED])
_GET_OK = bytes([OK | _HAS_VALUE])
_CAS_FAILED_VALUE = bytes([CAS_FAILED | _HAS_VALUE])
_ERROR_TAG = ERROR | _HAS_VALUE


def _error(message):
    return bytes([_ERROR_TAG]) + message


E_COMMAND = _error(b"malformed command: expected (client_id u64, request_seq u64, op bytes)")
E_EMPTY = _error(b"malformed op: empty")
E_UNKNOWN = _error(b"malformed op: unknown operation type")
E_TRUNCATED = _error(b"malformed op: truncated")
E_TRAILING = _error(b"malformed op: trailing bytes")
E_KEY_TOO_LONG = _error(b"malformed op: key longer than 65536 bytes")
E_NOT_A_GET = _error(b"malformed query: a read takes an encoded get")


# --- client side -----------------------------------------------------------------------------------------


def _bytes(data, what):
    # Not bytes(data) of anything: bytes(12) is twelve zero bytes, and a str needs an encoding.
    if type(data) is bytes:
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError("%s must be bytes, bytearray or memoryview, not %s" % (what, type(data).__name__))


def _field(data, what):
    data = _bytes(data, what)
    if len(data) >= ABSENT:
        raise ValueTooLarge("%s of %d bytes is too large" % (what, len(data)))
    return _U32.pack(len(data)) + data


def _key(key):
    key = _bytes(key, "key")
    if len(key) > MAX_KEY_BYTES:
        raise ValueTooLarge("key of %d bytes is longer than %d" % (len(key), MAX_KEY_BYTES))
    return key


def encode_put(key: bytes, value: bytes) -> bytes:
    key = _key(key)
    return _HDR.pack(OP_PUT, len(key)) + key + _field(value, "value")


def encode_get(key: bytes) -> bytes:
    key = _key(key)
    return _HDR.pack(OP_GET, len(key)) + key


def encode_delete(key: bytes) -> bytes:
    key = _key(key)
    return _HDR.pack(OP_DELETE, len(key)) + key


def encode_cas(key: bytes, expected: bytes | None, new: bytes | None) -> bytes:
    """Set ``key`` to ``new`` if its value is ``expected``. None as expected: absent; None as new: delete."""
    key = _key(key)
    exp = _U32.pack(ABSENT) if expected is None else _field(expected, "expected value")
    new = _U32.pack(ABSENT) if new is None else _field(new, "new value")
    return _HDR.pack(OP_CAS, len(key)) + key + exp + new


def decode_result(result: bytes) -> KVResult:
    """``KVResult(status, value)`` of a result; value is None when the result carries none."""
    if not result:
        raise RecordCorrupt("a key-value result is at least one byte")
    head = result[0]
    status = head & 0x7F
    if status not in STATUS_NAMES:
        raise RecordCorrupt("unknown key-value result status %d" % status)
    if head & _HAS_VALUE:
        return KVResult(status, bytes(result[1:]))
    if len(result) != 1:
        raise RecordCorrupt("a key-value result without a value is one byte")
    return KVResult(status, None)


def session_refusal(result: bytes) -> type[StaleRequest] | type[SessionExpired] | None:
    """The exception class for a result that refused its command for a session reason (STALE:
    :class:`StaleRequest`, SESSION_UNKNOWN: :class:`SessionExpired`), None for any other result. Nothing was
    applied for such a command, so a client must never report it as a success."""
    if result == R_STALE:
        return StaleRequest
    if result == R_SESSION_UNKNOWN:
        return SessionExpired
    return None


# --- the state machine -----------------------------------------------------------------------------------

_MISSING = object()


def _group_id(group):
    group = operator.index(group)
    if not 0 <= group <= 0xFFFFFFFF:
        raise ValueError("group %d is out of range 0..2**32-1" % group)
    return group


def _group_range(group):
    prefix = _U32.pack(group)
    end = _U32.pack(group + 1) if group < 0xFFFFFFFF else b"\xff\xff\xff\xff\xff"
    return prefix, end


def _half_id(half):
    half = operator.index(half)
    if half not in (0, 1):
        raise ValueError("a half is 0 or 1, not %d" % half)
    return half


def _half_ranges(group, half):
    """The range deletes of one half of the group: its data and its sessions (never the meta)."""
    prefix = _U32.pack(group)
    return [(prefix + tag, prefix + bytes([tag[0] + 1])) for tag in (_DATA_TAGS[half], _SESSION_TAGS[half])]


def _encode_meta(applied_next, half):
    """The meta record: version 1 while half 0 is live (the layout before halves), version 2 otherwise."""
    if half == 0:
        return _META_V1.pack(1, applied_next)
    return _META_V2.pack(2, applied_next, half)


def _decode_meta(meta):
    """``(applied_next, live half)`` of a meta record; version 1 means half 0."""
    n = len(meta)
    if n == _META_V1.size and meta[0] == 1:
        return _META_V1.unpack(meta)[1], 0
    if n == _META_V2.size and meta[0] == 2:
        _, applied_next, half = _META_V2.unpack(meta)
        if half > 1:
            raise RecordCorrupt("state machine meta record names half %d" % half)
        return applied_next, half
    if n in (_META_V1.size, _META_V2.size) and meta[0] not in (1, 2):
        raise UnknownVersion("state machine meta record version %d" % meta[0])
    raise RecordCorrupt("state machine meta record of %d bytes (version 1 has %d, version 2 has %d)"
                        % (n, _META_V1.size, _META_V2.size))


class _Group:
    __slots__ = ("group", "half", "prefix", "dprefix", "sprefix", "mkey", "applied_next", "sessions", "heap",
                 "fresh")

    def __init__(self, group, half=0):
        self.group = group
        self.half = half                                   # the live half: fixed while the group is loaded
        self.prefix = prefix = _U32.pack(group)
        self.dprefix = prefix + _DATA_TAGS[half]
        self.sprefix = prefix + _SESSION_TAGS[half]
        self.mkey = prefix + _TAG_META
        self.applied_next = 0
        # client_id -> [use order (instance << 32 | position), request_seq, session key]
        self.sessions = {}
        # (use order, client_id) min-heap with stale entries; built once the sessions first overflow
        self.heap = None
        # True while the store holds nothing valid of this group (never written, or dropped this cycle)
        self.fresh = False


class SessionStateMachine(StateMachine):
    """Per-group keyed data, exactly-once client sessions and ``applied_next`` in one :class:`Store`, changed
    through an overlay that ``flush()`` writes as ONE store write per cycle; snapshots, restore, drops and
    unloading of idle groups. What a command does is the subclass's: :class:`KVStateMachine` here,
    :class:`paxos_core.statemachine.user.UserStateMachine` for a state machine of your own. The storage
    layout, session rules and snapshot format are the module docstring's."""

    def __init__(self, store: Store, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 max_loaded_groups: int = DEFAULT_MAX_LOADED_GROUPS) -> None:
        if operator.index(max_sessions) < 1:
            raise ValueError("max_sessions must be at least 1")
        if operator.index(max_loaded_groups) < 1:
            raise ValueError("max_loaded_groups must be at least 1")
        # Groups used recently stay loaded (their session index in memory); beyond this many, the least
        # recently used are unloaded after a flush, so idle groups cost the store, not memory.
        self.max_loaded_groups = int(max_loaded_groups)
        self._store = store
        self._store_get = store.get
        self.max_sessions = int(max_sessions)
        # group -> _Group, least recently used first
        self._groups: collections.OrderedDict[int, _Group] = collections.OrderedDict()
        # store key -> value, or None for a delete: this cycle's changes
        self._pending: dict[bytes, bytes | None] = {}
        self._drops: dict[int, tuple[bytes, bytes]] = {}    # group -> (begin, end): range deletes for this cycle
        self._fresh: list[_Group] = []        # groups whose `fresh` flag ends with this cycle's write

    # --- loading ---

    def _group(self, group):
        g = self._groups.get(group)
        if g is not None:
            self._groups.move_to_end(group)
            return g
        group = _group_id(group)
        g = self._groups.get(group)
        if g is not None:
            return g
        meta = None if group in self._drops else self._store_get(_U32.pack(group) + _TAG_META)
        if meta is None:
            g = _Group(group)
            g.fresh = True
            self._fresh.append(g)
        else:
            applied_next, half = _decode_meta(meta)
            g = _Group(group, half)
            g.applied_next = applied_next
            sessions = g.sessions
            for key, value in self._store.scan(g.sprefix):
                if len(key) != 13 or len(value) < 20:
                    raise RecordCorrupt("group %d: damaged session record %r" % (group, key))
                instance, position, seq = _SESSION.unpack_from(value)
                sessions[int.from_bytes(key[5:], "big")] = [instance << 32 | position, seq, key]
        self._groups[group] = g
        return g

    def _data_get(self, g, key):
        value = self._pending.get(key, _MISSING)
        if value is _MISSING:
            if g.fresh:
                return None
            return self._store_get(key)
        return value

    # --- StateMachine ---

    def applied_next(self, group: int) -> int:
        g = self._groups.get(group)
        if g is not None:
            return g.applied_next
        group = _group_id(group)
        if group in self._drops:
            return 0
        meta = self._store_get(_U32.pack(group) + _TAG_META)
        return 0 if meta is None else _decode_meta(meta)[0]

    def _retry(self, g, cid, session, order):
        """The remembered result of the session's latest request; refreshes the session's last use."""
        key = session[2]
        value = self._pending.get(key, _MISSING)
        if value is _MISSING:
            value = None if g.fresh else self._store_get(key)
        if value is None or len(value) < 20:
            raise RecordCorrupt("group %d: session record of client %d is missing or damaged" % (g.group, cid))
        result = value[20:]
        session[0] = order
        if g.heap is not None:
            self._push(g, order, cid)
        self._pending[key] = _SESSION.pack(order >> 32, order & 0xFFFFFFFF, session[1]) + result
        return result

    @staticmethod
    def _push(g, order, cid):
        heap = g.heap
        heapq.heappush(heap, (order, cid))
        if len(heap) > 2 * len(g.sessions) + 64:
            g.heap = None       # mostly stale entries: rebuilt from the sessions at the next eviction

    def _evict(self, g):
        sessions = g.sessions
        heap = g.heap
        if heap is None:
            heap = g.heap = [(s[0], cid) for cid, s in sessions.items()]
            heapq.heapify(heap)
        pending = self._pending
        while len(sessions) > self.max_sessions:
            order, cid = heapq.heappop(heap)
            session = sessions.get(cid)
            if session is not None and session[0] == order:
                del sessions[cid]
                pending[session[2]] = None

    def _merged_scan(self, g, prefix):
        """(key, value) of the group under prefix, store and overlay merged, in key order."""
        items = {} if g.fresh else dict(self._store.scan(prefix))
        for key, value in self._pending.items():
            if key.startswith(prefix):
                if value is None:
                    items.pop(key, None)
                else:
                    items[key] = value
        return sorted(items.items())

    def snapshot(self, group: int) -> bytes:
        g = self._group(group)
        data = self._merged_scan(g, g.dprefix)
        sessions = self._merged_scan(g, g.sprefix)
        parts = [_SNAP_HEAD.pack(_SNAP_MAGIC, _SNAP_VERSION, g.group, g.applied_next, len(data), len(sessions))]
        append = parts.append
        pack = _U32.pack
        for key, value in data:
            append(pack(len(key) - 5))
            append(key[5:])
            append(pack(len(value)))
            append(value)
        for key, value in sessions:
            append(key[5:])
            append(pack(len(value)))
            append(value)
        body = b"".join(parts)
        return body + pack(crc32c(body))

    def restore(self, group: int, snapshot: bytes) -> None:
        group = _group_id(group)
        applied_next, data, sessions = _decode_snapshot(snapshot)
        self.drop_group(group)
        g = _Group(group)
        g.fresh = True
        self._fresh.append(g)
        g.applied_next = applied_next
        pending = self._pending
        dprefix, sprefix = g.dprefix, g.sprefix
        for key, value in data:
            pending[dprefix + key] = value
        gsessions = g.sessions
        for cid, record in sessions:
            key = sprefix + cid
            pending[key] = record
            instance, position, seq = _SESSION.unpack_from(record)
            gsessions[int.from_bytes(cid, "big")] = [instance << 32 | position, seq, key]
        if applied_next or data or sessions:     # an empty group has no records at all, as if dropped
            pending[g.mkey] = _encode_meta(applied_next, g.half)
        self._groups[group] = g
        if len(gsessions) > self.max_sessions:
            self._evict(g)

    def drop_group(self, group: int) -> None:
        group = _group_id(group)
        self._groups.pop(group, None)
        prefix, end = _group_range(group)
        pending = self._pending
        for key in [k for k in pending if k.startswith(prefix)]:
            del pending[key]
        self._drops[group] = (prefix, end)

    def flush(self) -> None:
        pending = self._pending
        if not pending and not self._drops:
            return
        puts = [(k, v) for k, v in pending.items() if v is not None]
        deletes = [k for k, v in pending.items() if v is None]
        self._store.write(puts, deletes, list(self._drops.values()))
        pending.clear()
        self._drops.clear()
        for g in self._fresh:
            g.fresh = False
        self._fresh.clear()
        groups = self._groups
        while len(groups) > self.max_loaded_groups:
            groups.popitem(last=False)      # clean after the write above; reloaded from the store on use

    def loaded_groups(self) -> list[int]:
        """The groups held in memory now (the others applied everything and reload from the store on use)."""
        return list(self._groups)

    def unload_all(self) -> None:
        """Unload every group (they reload from the store on use); only between cycles, when all is flushed."""
        if not self._pending and not self._drops:
            self._groups.clear()

    # --- checkpoints: the live half out of a frozen view, staging into the other half, the swap ---

    def _require_turn_boundary(self, what):
        """Refuse (RuntimeError) while changes wait in the overlay or in the store's own buffer: ops written
        around them would let them land afterwards in the half they were meant for, which may be gone."""
        if self._pending or self._drops:
            raise RuntimeError("%s needs a turn boundary: the state machine has unflushed changes (flush() first)"
                               % what)
        # A store that buffers writes until a commit (the runtime's StagedStore) says so with pending().
        store_pending = getattr(self._store, "pending", None)
        if store_pending is not None and store_pending():
            raise RuntimeError("%s needs a turn boundary: the store holds uncommitted writes (commit() first)"
                               % what)

    def _live_half(self, group):
        g = self._groups.get(group)
        if g is not None:
            return g.half
        group = _group_id(group)
        if group in self._drops:
            return 0
        meta = self._store_get(_U32.pack(group) + _TAG_META)
        return 0 if meta is None else _decode_meta(meta)[1]

    def inactive_half(self, group: int) -> int:
        """The half of the group that holds no live state: where a checkpoint of it is staged."""
        return 1 - self._live_half(group)

    @staticmethod
    def checkpoint_applied(view: StoreView, group: int) -> int:
        """The group's ``applied_next`` in ``view`` (0 if it has no records there): the mark A of a checkpoint
        streamed out of that view."""
        meta = view.get(_U32.pack(_group_id(group)) + _TAG_META)
        return 0 if meta is None else _decode_meta(meta)[0]

    @staticmethod
    def checkpoint_entries(view: StoreView, group: int,
                           after: tuple[bytes, bytes] | None = None) -> Iterator[tuple[bytes, bytes, bytes]]:
        """The group's state in ``view`` as ``(tag, key suffix, value)``: every data entry (tag ``b"d"``, the
        user key), then every session (tag ``b"s"``, the client id u64), each in key order, read from the live
        half that the view's meta names. The tags are the same whichever half is live, so two nodes in equal
        states give identical sequences. With ``after=(tag, suffix)`` it resumes strictly after that entry
        (which need not exist). The mark the entries belong to is :meth:`checkpoint_applied` of the same view.
        """
        group = _group_id(group)
        prefix = _U32.pack(group)
        data_after = session_after = None
        if after is not None:
            tag, suffix = after
            if tag == CHECKPOINT_DATA:
                data_after = suffix
            elif tag == CHECKPOINT_SESSION:
                session_after = suffix
            else:
                raise ValueError("a checkpoint entry tag is %r or %r, not %r"
                                 % (CHECKPOINT_DATA, CHECKPOINT_SESSION, tag))
        return _checkpoint_entries(view, prefix, data_after, session_after)

    @staticmethod
    def staged_entries(view: StoreView, group: int, half: int) -> Iterator[tuple[bytes, bytes, bytes]]:
        """The entries staged in the group's ``half`` (as :meth:`checkpoint_entries` gives a live half's): the
        receiver of a checkpoint reads them back to verify the staging before the swap."""
        return _checkpoint_entries(view, _U32.pack(_group_id(group)), None, None, _half_id(half))

    def clear_half_ops(self, group: int, half: int) -> StoreOps:
        """Store ops that delete every data and session record of the group's (inactive) ``half``: leftovers
        of a staging that will not complete, or a clean start for a new one. The live half is refused."""
        self._require_turn_boundary("clear_half_ops")
        group, half = _group_id(group), _half_id(half)
        if half == self._live_half(group):
            raise ValueError("group %d: half %d is live; only the inactive half can be cleared" % (group, half))
        return [], [], _half_ranges(group, half)

    def stage_ops(self, group: int, half: int, entries: Iterable[tuple[bytes, bytes, bytes]]) -> StoreOps:
        """Store ops that put ``(tag, suffix, value)`` entries (as :meth:`checkpoint_entries` gives them) into
        the group's inactive ``half``, which the caller cleared when the staging began. Nothing of the group's
        live state changes: reads and applies go on seeing the old state until the swap. Staging into the live
        half is refused (ValueError); a malformed entry raises RecordCorrupt."""
        self._require_turn_boundary("stage_ops")
        group, half = _group_id(group), _half_id(half)
        if half == self._live_half(group):
            raise ValueError("group %d: half %d is live; a checkpoint is staged into the inactive half"
                             % (group, half))
        prefix = _U32.pack(group)
        dprefix = prefix + _DATA_TAGS[half]
        sprefix = prefix + _SESSION_TAGS[half]
        puts: list[tuple[bytes, bytes]] = []
        append = puts.append
        for tag, suffix, value in entries:
            if type(suffix) is not bytes or type(value) is not bytes:
                suffix, value = bytes(suffix), bytes(value)
            if tag == CHECKPOINT_DATA:
                if len(suffix) > MAX_KEY_BYTES:
                    raise RecordCorrupt("group %d: checkpoint data key of %d bytes" % (group, len(suffix)))
                append((dprefix + suffix, value))
            elif tag == CHECKPOINT_SESSION:
                if len(suffix) != 8 or suffix == _NO_CLIENT or len(value) < _SESSION.size:
                    raise RecordCorrupt("group %d: damaged checkpoint session entry %r" % (group, suffix))
                append((sprefix + suffix, value))
            else:
                raise RecordCorrupt("group %d: checkpoint entry tag %r" % (group, tag))
        return puts, [], []

    def swap_ops(self, group: int, applied_next: int, half: int) -> StoreOps:
        """Store ops that make the staged ``half`` the group's live state at ``applied_next``: the meta record
        naming it, and range deletes of the old live half. Self-contained: written in ONE batch (with the
        Paxos log's records of the install), a crash leaves the old state or the new one. Call
        :meth:`forget_cached` right after the write. Refused (ValueError): ``half`` already live, or
        ``applied_next`` below the group's (state never moves back)."""
        self._require_turn_boundary("swap_ops")
        group, half = _group_id(group), _half_id(half)
        applied_next = operator.index(applied_next)
        if not 0 <= applied_next <= _U64_MAX:
            raise ValueError("applied_next %d is not a u64" % applied_next)
        live = self._live_half(group)
        if half == live:
            raise ValueError("group %d: half %d is live already; the swap installs the inactive half"
                             % (group, half))
        current = self.applied_next(group)
        if applied_next < current:
            raise ValueError("group %d: a checkpoint at %d is behind the applied state at %d"
                             % (group, applied_next, current))
        return [(_U32.pack(group) + _TAG_META, _encode_meta(applied_next, half))], [], _half_ranges(group, live)

    def forget_cached(self, group: int) -> None:
        """Drop everything the state machine keeps of the group in memory (after a swap was written): its next
        use reads the meta, and with it the live half, and the sessions from the store again."""
        self._require_turn_boundary("forget_cached")
        self._groups.pop(_group_id(group), None)

    # --- introspection ---

    def session_count(self, group: int) -> int:
        """How many client sessions the group keeps."""
        return len(self._group(group).sessions)


class KVStateMachine(SessionStateMachine):
    """A replicated key-value map per group, with exactly-once client sessions. See the module docstring."""

    def apply_batch(self, group: int, batch: list[tuple[int, list[Command]]]) -> list[list[bytes]]:
        g = self._group(group)
        if not batch:
            return []
        first = nxt = g.applied_next
        for entry in batch:
            if entry[0] != nxt:
                raise ApplyOrderError("group %d: expected instance %d, got %r (batch starts at %r)"
                                      % (g.group, nxt, entry[0], batch[0][0]))
            nxt += 1

        pending = self._pending
        sessions = g.sessions
        dprefix = g.dprefix
        out = []
        instance = first
        for _, commands in batch:
            results: list[bytes] = []
            append = results.append
            order = instance << 32
            for cmd in commands:
                try:
                    cid, seq, op = cmd
                except (TypeError, ValueError):
                    append(E_COMMAND)
                    order += 1
                    continue
                if type(op) is not bytes:
                    if isinstance(op, (bytearray, memoryview)):
                        op = bytes(op)
                    else:
                        append(E_COMMAND)
                        order += 1
                        continue
                session = None
                if cid:
                    if (type(cid) is not int or type(seq) is not int or cid < 0 or cid > _U64_MAX
                            or seq < 0 or seq > _U64_MAX):
                        append(E_COMMAND)
                        order += 1
                        continue
                    retry = seq & RETRY_FLAG
                    seq &= SEQ_MASK
                    session = sessions.get(cid)
                    if session is None:
                        # Without a record this may be a late retry of an evicted session: applying it could
                        # apply it twice. Only an unflagged first request can safely start a session.
                        if retry or seq > 1:
                            append(R_SESSION_UNKNOWN)
                            order += 1
                            continue
                    else:
                        last = session[1]
                        if seq == last:
                            append(self._retry(g, cid, session, order))
                            order += 1
                            continue
                        if seq < last:
                            append(R_STALE)
                            order += 1
                            continue

                # --- the op itself (put inline: it is the common case) ---
                try:
                    kind, klen = _HDR_u(op)
                    if kind == OP_PUT and klen <= MAX_KEY_BYTES:
                        vstart = 9 + klen
                        if vstart + _U32_u(op, 5 + klen)[0] == len(op):
                            pending[dprefix + op[5:5 + klen]] = op[vstart:]
                            result = R_OK
                        else:
                            result = E_TRUNCATED if vstart + _U32_u(op, 5 + klen)[0] > len(op) else E_TRAILING
                    else:
                        result = self._exec(g, kind, klen, op)
                except struct.error:
                    result = E_TRUNCATED if op else E_EMPTY
                append(result)

                if cid and result[0] != _ERROR_TAG:
                    if session is None:
                        session = sessions[cid] = [order, seq, g.sprefix + _U64.pack(cid)]
                        if len(sessions) > self.max_sessions:
                            self._evict(g)
                    else:
                        session[0] = order
                        session[1] = seq
                    if g.heap is not None:
                        self._push(g, order, cid)
                    pending[session[2]] = _SESSION.pack(instance, order & 0xFFFFFFFF, seq) + result
                order += 1
            out.append(results)
            instance += 1

        g.applied_next = nxt
        pending[g.mkey] = _encode_meta(nxt, g.half)
        return out

    def _exec(self, g, kind, klen, op):
        """Every op but a well-formed put. Raises struct.error on a truncated op."""
        if klen > MAX_KEY_BYTES:
            return E_KEY_TOO_LONG
        n = len(op)
        end = 5 + klen
        if kind == OP_PUT:      # malformed: the inline path took every well-formed put
            return E_TRUNCATED if end + 4 > n else E_TRAILING
        if kind == OP_GET or kind == OP_DELETE:
            if end != n:
                return E_TRUNCATED if end > n else E_TRAILING
            key = g.dprefix + op[5:end]
            current = self._data_get(g, key)
            if current is None:
                return R_NOT_FOUND
            if kind == OP_GET:
                return _GET_OK + current
            self._pending[key] = None
            return R_OK
        if kind == OP_CAS:
            if end > n:
                return E_TRUNCATED
            elen = _U32_u(op, end)[0]
            p = end + 4
            if elen == ABSENT:
                expected = None
            else:
                expected = op[p:p + elen]
                p += elen
            nlen = _U32_u(op, p)[0]
            p += 4
            if nlen == ABSENT:
                new = None
            else:
                new = op[p:p + nlen]
                p += nlen
            if p != n:
                return E_TRUNCATED if p > n else E_TRAILING
            key = g.dprefix + op[5:end]
            current = self._data_get(g, key)
            if current != expected:
                return R_CAS_FAILED_ABSENT if current is None else _CAS_FAILED_VALUE + current
            if new is not None:
                self._pending[key] = new
            elif current is not None:
                self._pending[key] = None
            return R_OK
        return E_UNKNOWN

    def read(self, group: int, query: bytes) -> bytes:
        if type(query) is not bytes:
            if not isinstance(query, (bytearray, memoryview)):
                return E_NOT_A_GET
            query = bytes(query)
        n = len(query)
        if n < 5 or query[0] != OP_GET:
            return E_NOT_A_GET
        klen = _U32_u(query, 1)[0]
        if klen > MAX_KEY_BYTES:
            return E_KEY_TOO_LONG
        if 5 + klen != n:
            return E_TRUNCATED if 5 + klen > n else E_TRAILING
        g = self._groups.get(group)
        if g is not None:
            value = self._data_get(g, g.dprefix + query[5:])
        else:
            # Not loaded (loading reads every session): the meta names the live half, then one point read.
            group = _group_id(group)
            prefix = _U32.pack(group)
            meta = None if group in self._drops else self._store_get(prefix + _TAG_META)
            if meta is None:
                value = None
            else:
                value = self._store_get(prefix + _DATA_TAGS[_decode_meta(meta)[1]] + query[5:])
        return R_NOT_FOUND if value is None else _GET_OK + value


def _checkpoint_entries(view, prefix, data_after, session_after, half=None):
    """SessionStateMachine.checkpoint_entries once its arguments are checked (a generator checks nothing
    before its first item is asked for). `half`: read that half instead of the live one."""
    if half is None:
        meta = view.get(prefix + _TAG_META)
        half = 0 if meta is None else _decode_meta(meta)[1]
    cut = len(prefix) + 1
    if session_after is None:           # resuming inside the sessions skips every data entry
        dprefix = prefix + _DATA_TAGS[half]
        for key, value in view.scan(dprefix, None if data_after is None else dprefix + data_after):
            yield CHECKPOINT_DATA, key[cut:], value
    sprefix = prefix + _SESSION_TAGS[half]
    for key, value in view.scan(sprefix, None if session_after is None else sprefix + session_after):
        yield CHECKPOINT_SESSION, key[cut:], value


def _decode_snapshot(snapshot):
    """(applied_next, [(user key, value)], [(client id bytes, session record)]); raises, never half-way."""
    if type(snapshot) is not bytes:
        snapshot = bytes(snapshot)
    n = len(snapshot)
    if n < _SNAP_HEAD.size + 4:
        raise RecordCorrupt("snapshot of %d bytes is shorter than its header" % n)
    body = memoryview(snapshot)[:n - 4]
    if crc32c(body) != _U32.unpack_from(snapshot, n - 4)[0]:
        raise RecordCorrupt("snapshot checksum mismatch")
    magic, version, _source, applied_next, n_data, n_sessions = _SNAP_HEAD.unpack_from(snapshot)
    if magic != _SNAP_MAGIC:
        raise RecordCorrupt("not a key-value snapshot (magic %r)" % magic)
    if version != _SNAP_VERSION:
        raise UnknownVersion("key-value snapshot version %d" % version)
    end = n - 4
    p = _SNAP_HEAD.size
    data = []
    sessions = []
    try:
        for _ in range(n_data):
            klen = _U32_u(snapshot, p)[0]
            p += 4
            key = snapshot[p:p + klen]
            p += klen
            vlen = _U32_u(snapshot, p)[0]
            p += 4
            value = snapshot[p:p + vlen]
            p += vlen
            if p > end or klen > MAX_KEY_BYTES:
                raise RecordCorrupt("snapshot data entry out of bounds")
            data.append((key, value))
        for _ in range(n_sessions):
            cid = snapshot[p:p + 8]
            slen = _U32_u(snapshot, p + 8)[0]
            p += 12
            record = snapshot[p:p + slen]
            p += slen
            if p > end or slen < _SESSION.size or cid == b"\0" * 8:
                raise RecordCorrupt("snapshot session entry out of bounds")
            sessions.append((cid, record))
    except struct.error:
        raise RecordCorrupt("snapshot truncated") from None
    if p != end:
        raise RecordCorrupt("snapshot has %d bytes after its last entry" % (end - p))
    return applied_next, data, sessions

"""The replicated key-value state machine, its stores, sessions (exactly-once), snapshots and groups."""
import random
import struct

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from paxos_core.errors import PaxosError, RecordCorrupt, UnknownVersion, ValueTooLarge
from paxos_core.statemachine import (
    CAS_FAILED,
    ERROR,
    NOT_FOUND,
    OK,
    STALE,
    ApplyOrderError,
    KVResult,
    KVStateMachine,
    MemoryStore,
    RocksStore,
    StateMachine,
    Store,
    decode_result,
    encode_cas,
    encode_delete,
    encode_get,
    encode_put,
    open_rocks_with_sm,
)
from paxos_core.statemachine import kv as kvmod
from paxos_core.statemachine.kv import RETRY_FLAG, SEQ_MASK, SESSION_UNKNOWN
from paxos_core.wire.checksum import crc32c


def put(cid, seq, key, value):
    return (cid, seq, encode_put(key, value))


def get(cid, seq, key):
    return (cid, seq, encode_get(key))


def status(result):
    return decode_result(result).status


def value_of(m, group, key):
    res = decode_result(m.read(group, encode_get(key)))
    assert res.status in (OK, NOT_FOUND)
    return res.value


# --- encoding --------------------------------------------------------------------------------------------


def test_encoders_and_result_decoding():
    assert encode_put(b"k", b"v") == b"\x01\x00\x00\x00\x01k\x00\x00\x00\x01v"
    assert encode_get(b"k") == b"\x02\x00\x00\x00\x01k"
    assert encode_delete(b"k") == b"\x03\x00\x00\x00\x01k"
    assert encode_cas(b"k", None, b"") == b"\x04\x00\x00\x00\x01k\xff\xff\xff\xff\x00\x00\x00\x00"
    assert decode_result(b"\x00") == KVResult(OK, None)
    assert decode_result(b"\x80") == (OK, b"")
    assert decode_result(b"\x82abc") == (CAS_FAILED, b"abc")
    with pytest.raises(RecordCorrupt):
        decode_result(b"")
    with pytest.raises(RecordCorrupt):
        decode_result(b"\x00x")
    with pytest.raises(RecordCorrupt):
        decode_result(b"\x09")
    with pytest.raises(ValueTooLarge):
        encode_put(b"k" * (64 * 1024 + 1), b"")
    encode_put(b"k" * (64 * 1024), b"")


def test_interfaces():
    assert issubclass(KVStateMachine, StateMachine)
    assert issubclass(MemoryStore, Store) and issubclass(RocksStore, Store)
    assert issubclass(ApplyOrderError, PaxosError)


# --- basic semantics -------------------------------------------------------------------------------------


def test_operations_and_results():
    m = KVStateMachine(MemoryStore())
    assert m.applied_next(3) == 0
    ops = [
        encode_put(b"a", b"1"),
        encode_get(b"a"),
        encode_get(b"zz"),
        encode_put(b"e", b""),
        encode_get(b"e"),
        encode_delete(b"zz"),
        encode_cas(b"a", b"2", b"3"),
        encode_cas(b"a", b"1", b"3"),
        encode_cas(b"n", None, b"x"),
        encode_cas(b"n", None, b"y"),
        encode_cas(b"n", b"x", None),
        encode_cas(b"n", None, None),
        encode_delete(b"a"),
        encode_get(b"a"),
    ]
    out = m.apply_batch(3, [(0, [(0, 0, op) for op in ops]), (1, [])])
    assert [decode_result(r) for r in out[0]] == [
        (OK, None), (OK, b"1"), (NOT_FOUND, None), (OK, None), (OK, b""), (NOT_FOUND, None),
        (CAS_FAILED, b"1"), (OK, None), (OK, None), (CAS_FAILED, b"x"), (OK, None), (OK, None),
        (OK, None), (NOT_FOUND, None),
    ]
    assert out[1] == []
    assert m.applied_next(3) == 2
    assert value_of(m, 3, b"e") == b""
    assert value_of(m, 3, b"a") is None
    assert value_of(m, 3, b"n") is None
    assert m.apply_batch(3, []) == []
    assert m.applied_next(3) == 2


def test_instance_order_is_enforced_and_nothing_changes():
    store = MemoryStore()
    m = KVStateMachine(store)
    m.apply_batch(0, [(0, [put(0, 0, b"a", b"1")])])
    m.flush()
    before = dict(store.data)
    for bad in ([(2, [put(0, 0, b"a", b"2")])],
                [(1, [put(0, 0, b"a", b"2")]), (3, [])],
                [(0, [put(0, 0, b"a", b"2")])]):
        with pytest.raises(ApplyOrderError):
            m.apply_batch(0, bad)
    m.flush()
    assert store.data == before
    assert m.applied_next(0) == 1 and value_of(m, 0, b"a") == b"1"


def test_reads_and_applies_see_unflushed_changes_and_flush_writes_once():
    store = MemoryStore()
    m = KVStateMachine(store)
    m.apply_batch(1, [(0, [put(0, 0, b"k", b"v1")])])
    m.apply_batch(2, [(0, [put(0, 0, b"k", b"other")])])
    assert value_of(m, 1, b"k") == b"v1"
    out = m.apply_batch(1, [(1, [(0, 0, encode_cas(b"k", b"v1", b"v2"))]), (2, [get(0, 0, b"k")])])
    assert decode_result(out[1][0]) == (OK, b"v2")
    assert store.writes == 0 and store.data == {}
    m.flush()
    assert store.writes == 1
    m.flush()                       # nothing changed: no write
    assert store.writes == 1
    m2 = KVStateMachine(store)
    assert value_of(m2, 1, b"k") == b"v2" and value_of(m2, 2, b"k") == b"other"
    assert m2.applied_next(1) == 3 and m2.applied_next(2) == 1


def test_large_keys():
    m = KVStateMachine(MemoryStore())
    big = b"k" * (64 * 1024)
    too_big = b"k" * (64 * 1024 + 1)
    raw_put = b"\x01" + struct.pack(">I", len(too_big)) + too_big + b"\x00\x00\x00\x01v"
    out = m.apply_batch(0, [(0, [put(0, 0, big, b"v"), (0, 0, raw_put)])])
    assert status(out[0][0]) == OK and status(out[0][1]) == ERROR
    assert value_of(m, 0, big) == b"v"
    assert status(m.read(0, b"\x02" + struct.pack(">I", len(too_big)) + too_big)) == ERROR


# --- malformed input --------------------------------------------------------------------------------------

MALFORMED_OPS = [
    b"",
    b"\x01",
    b"\x01\x00\x00",
    b"\x00\x00\x00\x00\x00",
    b"\x05\x00\x00\x00\x01k",
    b"\xff" * 12,
    encode_put(b"k", b"v")[:-1],
    encode_put(b"k", b"v") + b"x",
    encode_put(b"k", b"v")[:6],
    encode_get(b"k")[:-1],
    encode_get(b"k") + b"\x00",
    encode_delete(b"k") + b"\x00",
    encode_delete(b"key")[:-2],
    encode_cas(b"k", b"a", b"b")[:-1],
    encode_cas(b"k", b"a", b"b") + b"\x00",
    encode_cas(b"k", None, None)[:-4],
    encode_cas(b"k", b"a", None)[:12],
    b"\x01\xff\xff\xff\xffk",
    b"\x04\x00\x00\x00\x01k\x00\x00\x00\x09ab\x00\x00\x00\x00",
]


@pytest.mark.parametrize("op", MALFORMED_OPS)
def test_malformed_ops_give_error_and_change_nothing(op):
    store = MemoryStore()
    m = KVStateMachine(store)
    m.apply_batch(0, [(0, [put(0, 0, b"k", b"v"), put(7, 1, b"x", b"1")])])
    m.flush()
    before = dict(store.data)
    out = m.apply_batch(0, [(1, [(0, 0, op), (7, 2, op)])])
    assert [status(r) for r in out[0]] == [ERROR, ERROR]
    assert all(isinstance(decode_result(r).value, bytes) for r in out[0])
    m.flush()
    after = dict(store.data)
    meta_key = b"\x00\x00\x00\x00m"
    assert after.pop(meta_key) != before.pop(meta_key)     # only applied_next moved
    assert after == before
    assert m.applied_next(0) == 2
    # the session was not touched either: seq 2 is still new, and seq 1 is still the remembered one
    out = m.apply_batch(0, [(2, [put(7, 1, b"x", b"again"), put(7, 2, b"x", b"2")])])
    assert [status(r) for r in out[0]] == [OK, OK]
    assert value_of(m, 0, b"x") == b"2"


def test_malformed_commands_and_queries_never_raise():
    m = KVStateMachine(MemoryStore())
    op = encode_put(b"k", b"v")
    bad = [None, (), (1,), (1, 2), "abc", (1, 2, 3, 4), (1, 1, 12345), (1, 1, "text"), (0, 0, None),
           (-1, 1, op), (2 ** 64, 1, op), (1, -1, op), (1, 2 ** 64, op), (1.5, 1, op), (1, 1.0, op),
           ("1", 1, op)]
    out = m.apply_batch(0, [(0, bad), (1, [(0, 0, bytearray(op)), (3, 1, memoryview(encode_get(b"k")))])])
    assert [status(r) for r in out[0]] == [ERROR] * len(bad)
    assert [decode_result(r) for r in out[1]] == [(OK, None), (OK, b"v")]
    assert m.session_count(0) == 1
    for query in (b"", b"\x02", encode_put(b"k", b"v"), encode_get(b"k") + b"x", encode_get(b"k")[:-1], 5,
                  "str", None):
        assert status(m.read(0, query)) == ERROR
    assert decode_result(m.read(0, bytearray(encode_get(b"k")))) == (OK, b"v")


# --- exactly-once ------------------------------------------------------------------------------------------


def test_exactly_once_across_flush_and_reopen():
    store = MemoryStore()
    m = KVStateMachine(store)
    # a session starts at seq 1 (an unknown session's later seq is refused); then seq 10 is its latest
    out = m.apply_batch(0, [(0, [(5, 1, encode_get(b"c")), (5, 10, encode_cas(b"c", None, b"1"))])])
    assert status(out[0][0]) == NOT_FOUND
    first = [out[0][1:]]
    assert status(first[0][0]) == OK
    # a retry in the same cycle
    retry = m.apply_batch(0, [(1, [(5, 10, encode_cas(b"c", None, b"1"))])])
    assert retry[0][0] == first[0][0]
    m.flush()
    # a retry after the flush, with a different op even: the remembered result, nothing applied
    retry = m.apply_batch(0, [(2, [(5, 10, encode_put(b"c", b"changed"))])])
    assert retry[0][0] == first[0][0]
    assert value_of(m, 0, b"c") == b"1"
    m.flush()
    m = KVStateMachine(store)       # re-open on the same store
    retry = m.apply_batch(0, [(3, [(5, 10, encode_cas(b"c", None, b"1"))])])
    assert retry[0][0] == first[0][0]
    assert value_of(m, 0, b"c") == b"1"
    # older -> STALE, nothing applied
    stale = m.apply_batch(0, [(4, [(5, 9, encode_put(b"c", b"old")), (5, 0, encode_put(b"c", b"old"))])])
    assert [status(r) for r in stale[0]] == [STALE, STALE]
    assert value_of(m, 0, b"c") == b"1"
    # a newer one applies, and then it is the remembered one
    out = m.apply_batch(0, [(5, [(5, 11, encode_get(b"c")), (5, 11, encode_put(b"c", b"x")),
                                 (5, 10, encode_get(b"c"))])])
    assert [decode_result(r) for r in out[0]] == [(OK, b"1"), (OK, b"1"), (STALE, None)]
    # client 0: no session, always applied
    out = m.apply_batch(0, [(6, [(0, 3, encode_put(b"z", b"1")), (0, 3, encode_cas(b"z", b"1", b"2")),
                                 (0, 3, encode_cas(b"z", b"1", b"3"))])])
    assert [status(r) for r in out[0]] == [OK, OK, CAS_FAILED]
    m.flush()
    m = KVStateMachine(store)
    out = m.apply_batch(0, [(7, [(5, 11, encode_put(b"c", b"y"))])])
    assert decode_result(out[0][0]) == (OK, b"1")
    assert m.session_count(0) == 1


def test_session_eviction_is_lru_and_deterministic():
    store = MemoryStore()
    m = KVStateMachine(store, max_sessions=3)
    m.apply_batch(0, [(0, [put(1, 1, b"a", b"1"), put(2, 1, b"a", b"2"), put(3, 1, b"a", b"3")])])
    m.apply_batch(0, [(1, [put(1, 1, b"a", b"retry")])])     # a retry refreshes client 1
    m.flush()
    assert m.session_count(0) == 3
    m.apply_batch(0, [(2, [put(4, 1, b"b", b"4")])])         # evicts client 2 (least recently used)
    assert m.session_count(0) == 3
    m.flush()
    sessions = sorted(k[-8:] for k in store.data if k[4:5] == b"s")
    assert sessions == [struct.pack(">Q", c) for c in (1, 3, 4)]
    m = KVStateMachine(store, max_sessions=3)
    # client 2 was forgotten: its retry applies again; client 3 is the oldest now
    out = m.apply_batch(0, [(3, [put(2, 1, b"a", b"again"), put(1, 1, b"a", b"no"), put(4, 1, b"b", b"no")])])
    assert [status(r) for r in out[0]] == [OK, OK, OK]
    assert value_of(m, 0, b"a") == b"again" and value_of(m, 0, b"b") == b"4"
    m.flush()
    sessions = sorted(k[-8:] for k in store.data if k[4:5] == b"s")
    assert sessions == [struct.pack(">Q", c) for c in (1, 2, 4)]
    # many new clients in one instance: only the newest three stay
    m.apply_batch(0, [(4, [put(c, 1, b"x", b"") for c in range(100, 110)])])
    m.flush()
    sessions = sorted(k[-8:] for k in store.data if k[4:5] == b"s")
    assert sessions == [struct.pack(">Q", c) for c in (107, 108, 109)]
    assert m.session_count(0) == 3


def test_session_eviction_heap_stays_bounded():
    m = KVStateMachine(MemoryStore(), max_sessions=10)
    instance = 0
    for round_ in range(200):
        cmds = [put(c, round_ + 1, b"k", b"v") for c in range(1, 10)] + [put(1000 + round_, 1, b"k", b"v")]
        m.apply_batch(0, [(instance, cmds)])
        instance += 1
        if round_ % 7 == 0:
            m.flush()
    g = m._groups[0]
    assert len(g.sessions) == 10
    assert len(g.heap) <= 2 * 10 + 64
    # at capacity, existing clients only: the heap of last uses does not grow without bound
    for round_ in range(200, 400):
        m.apply_batch(0, [(instance, [put(c, round_ + 1, b"k", b"v") for c in range(1, 10)])])
        instance += 1
    assert g.heap is None or len(g.heap) <= 2 * 10 + 64
    m.apply_batch(0, [(instance, [put(5000, 1, b"k", b"v")])])
    assert len(g.sessions) == 10 and 1000 + 199 not in g.sessions and 5000 in g.sessions


# --- exactly-once past the session bound (eviction) --------------------------------------------------------


def session_records(store):
    return {k: v for k, v in store.data.items() if k[4:5] == b"s"}


def evict_client_1(m, instance):
    """Client 1 puts a=1 (seq 1) and a=2 (seq 2); client 9 then puts a=other; clients 2 and 3 evict client 1
    (max_sessions=2). Returns the next instance."""
    m.apply_batch(0, [(instance, [put(1, 1, b"a", b"1")]), (instance + 1, [put(1, 2, b"a", b"2")]),
                      (instance + 2, [put(9, 1, b"a", b"other")]),
                      (instance + 3, [put(2, 1, b"x", b"")]), (instance + 4, [put(3, 1, b"y", b"")])])
    assert 1 not in m._groups[0].sessions
    return instance + 5


@pytest.mark.parametrize("flush_between", [False, True])
def test_evicted_session_late_retry_is_refused_not_applied_twice(flush_between):
    store = MemoryStore()
    m = KVStateMachine(store, max_sessions=2)
    instance = evict_client_1(m, 0)
    if flush_between:
        m.flush()
        m = KVStateMachine(store, max_sessions=2)
    m.flush()
    sessions_before = session_records(store)
    # the late retry of client 1's seq 2, with or without the retry flag: refused, nothing applied
    out = m.apply_batch(0, [(instance, [put(1, 2, b"a", b"2"), put(1, 2 | RETRY_FLAG, b"a", b"2"),
                                        put(1, 7, b"a", b"2")])])
    assert [decode_result(r) for r in out[0]] == [(SESSION_UNKNOWN, None)] * 3
    assert value_of(m, 0, b"a") == b"other"
    # not even the session table changed (no session created, none evicted, no last use refreshed)
    assert m.session_count(0) == 2 and 1 not in m._groups[0].sessions
    m.flush()
    assert session_records(store) == sessions_before
    assert m.applied_next(0) == instance + 1


def test_evicted_session_retry_flagged_first_request_is_refused():
    m = KVStateMachine(MemoryStore(), max_sessions=1)
    m.apply_batch(0, [(0, [put(1, 1, b"a", b"1")]), (1, [put(9, 1, b"a", b"other")])])      # evicts client 1
    out = m.apply_batch(0, [(2, [put(1, 1 | RETRY_FLAG, b"a", b"1")])])
    assert decode_result(out[0][0]) == (SESSION_UNKNOWN, None)
    assert value_of(m, 0, b"a") == b"other" and m.session_count(0) == 1
    # a flagged first request of a session never seen at all is refused the same way
    out = m.apply_batch(0, [(3, [put(5, 1 | RETRY_FLAG, b"a", b"5"), put(6, 0 | RETRY_FLAG, b"a", b"6")])])
    assert [status(r) for r in out[0]] == [SESSION_UNKNOWN, SESSION_UNKNOWN]
    assert value_of(m, 0, b"a") == b"other"


def test_unknown_session_first_request_without_flag_is_applied():
    m = KVStateMachine(MemoryStore())
    out = m.apply_batch(0, [(0, [put(1, 1, b"a", b"1"), put(2, 0, b"b", b"2"), put(3, 2, b"c", b"3")])])
    assert [status(r) for r in out[0]] == [OK, OK, SESSION_UNKNOWN]
    assert value_of(m, 0, b"a") == b"1" and value_of(m, 0, b"b") == b"2" and value_of(m, 0, b"c") is None
    assert m.session_count(0) == 2
    # the session started: its next request, and a flagged retry of it, behave as usual
    out = m.apply_batch(0, [(1, [put(1, 2, b"a", b"x"), put(1, 2 | RETRY_FLAG, b"a", b"y"), put(1, 1, b"a", b"z")])])
    assert [status(r) for r in out[0]] == [OK, OK, STALE]
    assert value_of(m, 0, b"a") == b"x"


def test_retry_flag_is_masked_off_and_never_stored():
    store = MemoryStore()
    m = KVStateMachine(store)
    assert status(m.apply_batch(0, [(0, [put(1, 1, b"a", b"1")])])[0][0]) == OK
    # a flagged request newer than the session's latest is applied; the session keeps the seq without the flag
    out = m.apply_batch(0, [(1, [(1, 2 | RETRY_FLAG, encode_cas(b"a", b"1", b"2"))])])
    assert status(out[0][0]) == OK
    assert m._groups[0].sessions[1][1] == 2
    m.flush()
    record = store.data[b"\x00\x00\x00\x00s" + struct.pack(">Q", 1)]
    assert struct.unpack_from(">QIQ", record)[2] == 2
    snap = m.snapshot(0)
    assert struct.pack(">Q", 2 | RETRY_FLAG) not in snap
    # flag or not, the same seq gets the remembered result, an older one STALE
    out = m.apply_batch(0, [(2, [(1, 2, encode_cas(b"a", b"1", b"2")), (1, 2 | RETRY_FLAG, encode_put(b"a", b"no")),
                                 (1, 1 | RETRY_FLAG, encode_put(b"a", b"no"))])])
    assert [status(r) for r in out[0]] == [OK, OK, STALE]
    assert value_of(m, 0, b"a") == b"2"
    # restored from a snapshot, the session answers the same way
    other = KVStateMachine(MemoryStore())
    other.restore(0, m.snapshot(0))
    out = other.apply_batch(0, [(3, [(1, 2 | RETRY_FLAG, encode_put(b"a", b"no"))])])
    assert status(out[0][0]) == OK and value_of(other, 0, b"a") == b"2"


def test_session_refusals_are_deterministic_across_nodes():
    """Two nodes fed the same log, with different flush points and a restart on one, decide every command
    (evictions, refusals, flags) identically and end with identical snapshots."""
    rng = random.Random(7)
    log = []
    latest = {}
    for instance in range(300):
        cmds = []
        for _ in range(rng.randrange(1, 5)):
            cid = rng.randrange(1, 12)
            seq = latest.get(cid, 0)
            r = rng.random()
            if r < 0.6:
                seq += 1
                latest[cid] = seq
            elif r < 0.7:
                seq = rng.randrange(0, seq + 2)
            flag = RETRY_FLAG if rng.random() < 0.3 else 0
            cmds.append((cid, seq | flag, encode_put(b"k%d" % rng.randrange(4), b"%d" % instance)))
        log.append((instance, cmds))
    a_store, b_store = MemoryStore(), MemoryStore()
    a = KVStateMachine(a_store, max_sessions=4)
    b = KVStateMachine(b_store, max_sessions=4)
    ra, rb = [], []
    for instance, cmds in log:
        ra.extend(a.apply_batch(0, [(instance, cmds)]))
        if instance % 10 == 0:
            a.flush()
    for start in range(0, len(log), 37):
        rb.extend(b.apply_batch(0, log[start:start + 37]))
        b.flush()
        if start % 2:
            b = KVStateMachine(b_store, max_sessions=4)        # a restart
    a.flush()
    assert ra == rb
    assert a.snapshot(0) == b.snapshot(0)
    assert a_store.data == b_store.data
    statuses = {status(r) for res in ra for r in res}
    assert {OK, STALE, SESSION_UNKNOWN} <= statuses


def test_session_refusal_names_the_client_exceptions():
    from paxos_core.errors import SessionExpired, StaleRequest, Timeout

    assert decode_result(kvmod.R_SESSION_UNKNOWN) == (SESSION_UNKNOWN, None)
    assert kvmod.STATUS_NAMES[SESSION_UNKNOWN] == "SESSION_UNKNOWN"
    assert kvmod.session_refusal(kvmod.R_STALE) is StaleRequest
    assert kvmod.session_refusal(kvmod.R_SESSION_UNKNOWN) is SessionExpired
    assert issubclass(SessionExpired, Timeout) and issubclass(StaleRequest, PaxosError)
    for other in (kvmod.R_OK, kvmod.R_NOT_FOUND, kvmod.E_TRUNCATED, b"\x80" + kvmod.R_STALE, b"\x84x"):
        assert kvmod.session_refusal(other) is None


# --- model-based (hypothesis) -----------------------------------------------------------------------------

KEYS = [b"", b"a", b"b", b"key"]
CLIENTS = [0, 1, 2, 3, 4, 5]
GROUPS = [0, 7]
MAX_SESSIONS = 3


class Model:
    """A plain dict model of one group."""

    def __init__(self):
        self.data = {}
        self.sessions = {}          # cid -> [order, seq, result]
        self.applied_next = 0

    def execute(self, op):
        kind, args = op
        if kind == "bad":
            return None
        if kind == "put":
            self.data[args[0]] = args[1]
            return (OK, None)
        if kind == "get":
            v = self.data.get(args[0])
            return (NOT_FOUND, None) if v is None else (OK, v)
        if kind == "delete":
            if args[0] not in self.data:
                return (NOT_FOUND, None)
            del self.data[args[0]]
            return (OK, None)
        key, expected, new = args
        current = self.data.get(key)
        if current != expected:
            return (CAS_FAILED, current)
        if new is None:
            self.data.pop(key, None)
        else:
            self.data[key] = new
        return (OK, None)

    def command(self, order, cid, seq, op):
        if cid:
            retry = seq & RETRY_FLAG
            seq &= SEQ_MASK
            s = self.sessions.get(cid)
            if s is None:
                if retry or seq > 1:
                    return (SESSION_UNKNOWN, None)
            else:
                if seq == s[1]:
                    s[0] = order
                    return s[2]
                if seq < s[1]:
                    return (STALE, None)
        result = self.execute(op)
        if result is None:
            return (ERROR, None)
        if cid:
            self.sessions[cid] = [order, seq, result]
            while len(self.sessions) > MAX_SESSIONS:
                victim = min(self.sessions, key=lambda c: (self.sessions[c][0], c))
                del self.sessions[victim]
        return result


def encode(op):
    kind, args = op
    if kind == "put":
        return encode_put(*args)
    if kind == "get":
        return encode_get(*args)
    if kind == "delete":
        return encode_delete(*args)
    if kind == "cas":
        return encode_cas(*args)
    return args


keys = st.sampled_from(KEYS)
values = st.binary(max_size=6)
opt_values = st.none() | values
valid_ops = st.one_of(
    st.tuples(st.just("put"), st.tuples(keys, values)),
    st.tuples(st.just("get"), st.tuples(keys)),
    st.tuples(st.just("delete"), st.tuples(keys)),
    st.tuples(st.just("cas"), st.tuples(keys, opt_values, opt_values)),
)


@st.composite
def bad_ops(draw):
    raw = encode(draw(valid_ops))
    how = draw(st.sampled_from(["cut", "extra", "type"]))
    if how == "cut":
        return ("bad", raw[:draw(st.integers(0, len(raw) - 1))])
    if how == "extra":
        return ("bad", raw + draw(st.binary(min_size=1, max_size=3)))
    return ("bad", bytes([draw(st.sampled_from([0, 5, 9, 0x81, 255]))]) + raw[1:])


ops = st.one_of(valid_ops, valid_ops, valid_ops, bad_ops())


class KVMachineTest(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.store = MemoryStore()
        self.m = KVStateMachine(self.store, max_sessions=MAX_SESSIONS)
        self.models = {g: Model() for g in GROUPS}
        self.queue = {g: [] for g in GROUPS}
        self.last = {}              # (group, cid) -> (seq, op) last sent by that client

    @rule(requests=st.lists(st.tuples(st.sampled_from(GROUPS), st.sampled_from(CLIENTS), ops,
                                      st.sampled_from([1, 1, 1, 2])), min_size=1, max_size=6))
    def new_requests(self, requests):
        for group, cid, op, step in requests:
            seq = self.last.get((group, cid), (0, None))[0] + step
            self.last[(group, cid)] = (seq, op)
            self.queue[group].append((cid, seq, op))

    @precondition(lambda self: self.last)
    @rule(data=st.data(), flag=st.sampled_from([0, RETRY_FLAG]))
    def retried_request(self, data, flag):
        group, cid = data.draw(st.sampled_from(sorted(self.last)))
        seq, op = self.last[(group, cid)]
        self.queue[group].append((cid, seq | flag, op))

    @precondition(lambda self: any(s > 1 for s, _ in self.last.values()))
    @rule(data=st.data(), op=ops, flag=st.sampled_from([0, RETRY_FLAG]))
    def old_request(self, data, op, flag):
        group, cid = data.draw(st.sampled_from(sorted(k for k, v in self.last.items() if v[0] > 1)))
        seq = data.draw(st.integers(0, self.last[(group, cid)][0] - 1))
        self.queue[group].append((cid, seq | flag, op))

    @rule(group=st.sampled_from(GROUPS), sizes=st.lists(st.integers(0, 6), min_size=1, max_size=4))
    def commit(self, group, sizes):
        model = self.models[group]
        queue = self.queue[group]
        batch, expected = [], []
        instance = model.applied_next
        for size in sizes:
            cmds, queue[:] = queue[:size], queue[size:]
            batch.append((instance, [(cid, seq, encode(op)) for cid, seq, op in cmds]))
            expected.append([model.command((instance, pos), cid, seq, op)
                             for pos, (cid, seq, op) in enumerate(cmds)])
            instance += 1
        model.applied_next = instance
        out = self.m.apply_batch(group, batch)
        got = [[decode_result(r) for r in results] for results in out]
        for exp_results, got_results in zip(expected, got):
            for exp, res in zip(exp_results, got_results):
                if exp[0] == ERROR:
                    assert res.status == ERROR
                else:
                    assert res == exp
        assert len(got) == len(expected)

    @rule()
    def flush(self):
        self.m.flush()

    @rule()
    def reopen(self):
        self.m.flush()
        self.m = KVStateMachine(self.store, max_sessions=MAX_SESSIONS)

    @rule(group=st.sampled_from(GROUPS))
    def snapshot_into_fresh_machine(self, group):
        snap = self.m.snapshot(group)
        other = KVStateMachine(MemoryStore(), max_sessions=MAX_SESSIONS)
        other.restore(group, snap)
        assert other.snapshot(group) == snap
        for g in GROUPS:
            if g != group:
                other.restore(g, self.m.snapshot(g))
        other.flush()
        self.m.flush()
        assert other._store.data == self.store.data
        self.store, self.m = other._store, other

    @invariant()
    def state_matches_model(self):
        for group, model in self.models.items():
            assert self.m.applied_next(group) == model.applied_next
            for key in KEYS:
                assert value_of(self.m, group, key) == model.data.get(key)
            assert self.m.session_count(group) == len(model.sessions)


TestKVMachine = KVMachineTest.TestCase
TestKVMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])


# --- determinism ---------------------------------------------------------------------------------------------


def random_instances(rng, n_instances, groups=(0, 1, 2)):
    """[(group, [command, ...])] with retries, stale requests, bad ops and empty instances."""
    seqs = {}
    out = []
    for _ in range(n_instances):
        group = rng.choice(groups)
        cmds = []
        for _ in range(rng.randrange(0, 6)):
            cid = rng.choice([0, 1, 2, 3, 4, 5, 6, 7])
            seq = seqs.get((group, cid), 0)
            r = rng.random()
            if r < 0.7:
                seq += 1
            elif r < 0.8 and seq > 0:
                seq -= 1
            seqs[(group, cid)] = max(seq, seqs.get((group, cid), 0))
            if r >= 0.7 and rng.random() < 0.5:
                seq |= RETRY_FLAG          # a flagged retry (or old request)
            key = rng.choice([b"a", b"b", b"c", b"d"])
            val = bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
            op = rng.choice([
                encode_put(key, val), encode_get(key), encode_delete(key),
                encode_cas(key, rng.choice([None, val, b""]), rng.choice([None, val])),
                encode_put(key, val)[:-1], b"\x07junk",
            ])
            cmds.append((cid, seq, op))
        out.append((group, cmds))
    return out


def feed(m, instances, rng=None):
    """Apply instances per group; with rng, in randomly sized apply_batch calls and random flushes."""
    results = []
    nxt = {}
    pending = {}
    for group, cmds in instances:
        pending.setdefault(group, []).append((nxt.get(group, 0), cmds))
        nxt[group] = nxt.get(group, 0) + 1
        if rng is None or rng.random() < 0.4:
            for g, batch in sorted(pending.items()):
                results.append((g, m.apply_batch(g, batch)))
            pending.clear()
            if rng is None or rng.random() < 0.5:
                m.flush()
    for g, batch in sorted(pending.items()):
        results.append((g, m.apply_batch(g, batch)))
    m.flush()
    flat = {}
    for g, out in results:
        flat.setdefault(g, []).extend(out)
    return flat


def test_determinism_same_batches_same_results_and_store():
    instances = random_instances(random.Random(1), 400)
    a, b = KVStateMachine(MemoryStore(), max_sessions=4), KVStateMachine(MemoryStore(), max_sessions=4)
    ra, rb = feed(a, instances), feed(b, instances)
    assert ra == rb
    assert a._store.data == b._store.data
    assert all(a.snapshot(g) == b.snapshot(g) for g in (0, 1, 2))
    statuses = {status(r) for out in ra.values() for res in out for r in res}
    assert statuses == {OK, NOT_FOUND, CAS_FAILED, ERROR, STALE, SESSION_UNKNOWN}


def test_determinism_whatever_the_batching_and_flush_points():
    instances = random_instances(random.Random(2), 400)
    a = KVStateMachine(MemoryStore(), max_sessions=4)
    ra = feed(a, instances)
    for seed in range(3):
        b = KVStateMachine(MemoryStore(), max_sessions=4)
        assert feed(b, instances, random.Random(seed)) == ra
        assert b._store.data == a._store.data


# --- snapshots ---------------------------------------------------------------------------------------------


def make_machine_with_state(store=None):
    m = KVStateMachine(store or MemoryStore())
    m.apply_batch(4, [(0, [put(1, 1, b"a", b"1"), put(2, 1, b"b", b"")]), (1, []),
                      (2, [put(0, 0, b"c", b"x" * 1000), (2, 6, encode_cas(b"b", b"nope", None))])])
    m.apply_batch(5, [(0, [put(1, 1, b"other", b"group")])])
    return m


@pytest.mark.parametrize("flush_first", [False, True])
def test_snapshot_restore_gives_same_state(flush_first):
    m = make_machine_with_state()
    if flush_first:
        m.flush()
    snap = m.snapshot(4)
    fresh = KVStateMachine(MemoryStore())
    fresh.restore(4, snap)
    assert fresh.applied_next(4) == m.applied_next(4) == 3
    for key in (b"a", b"b", b"c", b"other"):
        assert fresh.read(4, encode_get(key)) == m.read(4, encode_get(key))
    assert fresh.snapshot(4) == snap
    assert fresh.applied_next(5) == 0
    # sessions came along: retries are answered from them, old requests are STALE
    out = fresh.apply_batch(4, [(3, [put(1, 1, b"a", b"no"), put(2, 6, b"a", b"no"), put(2, 5, b"a", b"no")])])
    assert [decode_result(r) for r in out[0]] == [(OK, None), (CAS_FAILED, b""), (STALE, None)]
    assert value_of(fresh, 4, b"a") == b"1"
    fresh.flush()
    again = KVStateMachine(fresh._store)
    assert again.applied_next(4) == 4 and value_of(again, 4, b"c") == b"x" * 1000


def test_restore_replaces_existing_state():
    store = MemoryStore()
    target = KVStateMachine(store)
    target.apply_batch(4, [(i, [put(9, i + 1, b"old%d" % i, b"v")]) for i in range(10)])
    target.flush()
    source = make_machine_with_state()
    target.restore(4, source.snapshot(4))
    assert value_of(target, 4, b"old0") is None and value_of(target, 4, b"a") == b"1"
    assert target.applied_next(4) == 3 and target.session_count(4) == 2
    target.flush()
    assert store.writes == 2
    target = KVStateMachine(store)
    assert value_of(target, 4, b"old0") is None and value_of(target, 4, b"a") == b"1"
    assert target.snapshot(4) == source.snapshot(4)


def test_empty_group_snapshot():
    m = KVStateMachine(MemoryStore())
    snap = m.snapshot(9)
    other = KVStateMachine(MemoryStore())
    other.apply_batch(9, [(0, [put(0, 0, b"x", b"y")])])
    other.restore(9, snap)
    assert other.applied_next(9) == 0 and value_of(other, 9, b"x") is None


def test_corrupted_snapshot_raises_and_changes_nothing():
    snap = make_machine_with_state().snapshot(4)
    store = MemoryStore()
    target = KVStateMachine(store)
    target.apply_batch(4, [(0, [put(3, 1, b"mine", b"1")])])
    target.flush()
    target.apply_batch(4, [(1, [put(0, 0, b"unflushed", b"2")])])
    before_snap = target.snapshot(4)
    before_store = dict(store.data)
    rng = random.Random(5)
    corruptions = [snap[:-1], snap[:10], b"", snap + b"\x00", snap[:-4] + bytes(4)]
    for _ in range(40):
        i = rng.randrange(len(snap))
        corruptions.append(snap[:i] + bytes([snap[i] ^ (1 << rng.randrange(8))]) + snap[i + 1:])
    for bad in corruptions:
        with pytest.raises(RecordCorrupt):
            target.restore(4, bad)
        assert target.snapshot(4) == before_snap
    assert dict(store.data) == before_store            # a refused restore wrote nothing to the store
    assert target.applied_next(4) == 2
    target.flush()
    assert value_of(target, 4, b"unflushed") == b"2" and value_of(target, 4, b"a") is None
    assert store.data[b"\x00\x00\x00\x04dunflushed"] == b"2"
    # a well-formed checksum around a broken body is refused too
    body = snap[:-4]
    for broken in (b"XXXX" + body[4:], body[:-3], body + b"\x00"):
        with pytest.raises(RecordCorrupt):
            target.restore(4, broken + struct.pack(">I", crc32c(broken)))
    newer = body[:4] + b"\x02" + body[5:]
    with pytest.raises(UnknownVersion):
        target.restore(4, newer + struct.pack(">I", crc32c(newer)))
    assert target.snapshot(4) != snap


# --- RocksStore ----------------------------------------------------------------------------------------------


def test_rocks_store_apply_flush_close_reopen(tmp_path):
    path = tmp_path / "db"
    db = open_rocks_with_sm(path)
    store = RocksStore(db)
    m = make_machine_with_state(store)
    m.apply_batch(6, [(0, [put(0, 0, b"gone", b"1")])])
    m.flush()
    assert store.writes == 1
    m.drop_group(6)
    m.apply_batch(4, [(3, [put(7, 1, b"d", b"4")])])
    m.flush()
    assert store.writes == 2
    snap4 = m.snapshot(4)
    assert list(db.items()) == []          # nothing in the default column family
    store.close()
    db.close()

    db = open_rocks_with_sm(path)
    store = RocksStore(db)
    m = KVStateMachine(store)
    assert m.applied_next(4) == 4 and m.applied_next(5) == 1 and m.applied_next(6) == 0
    assert value_of(m, 4, b"a") == b"1" and value_of(m, 4, b"d") == b"4"
    assert value_of(m, 5, b"other") == b"group" and value_of(m, 6, b"gone") is None
    assert m.snapshot(4) == snap4
    out = m.apply_batch(4, [(4, [put(7, 1, b"d", b"no"), put(1, 2, b"a", b"2")])])
    assert [status(r) for r in out[0]] == [OK, OK] and value_of(m, 4, b"d") == b"4"
    m.flush()
    restored = KVStateMachine(MemoryStore())
    restored.restore(4, m.snapshot(4))
    assert value_of(restored, 4, b"a") == b"2"
    store.close()
    db.close()


def test_rocks_store_scan_and_ranges(tmp_path):
    db = open_rocks_with_sm(tmp_path / "db")
    store = RocksStore(db)
    mem = MemoryStore()
    keys = [b"", b"a", b"ab", b"abc", b"b", b"\xff", b"\xff\xff", b"a\xff"]
    for s in (store, mem):
        s.write([(k, b"v" + k) for k in keys], [])
        assert list(s.scan(b"a")) == [(b"a", b"va"), (b"ab", b"vab"), (b"abc", b"vabc"), (b"a\xff", b"va\xff")]
        assert list(s.scan(b"\xff")) == [(b"\xff", b"v\xff"), (b"\xff\xff", b"v\xff\xff")]
        assert s.get(b"abc") == b"vabc" and s.get(b"zz") is None
        # ranges first, then deletes, then puts
        s.write([(b"ab", b"new")], [b"b"], [(b"a", b"b")])
        assert [k for k, _ in s.scan(b"")] == [b"", b"ab", b"\xff", b"\xff\xff"]
        assert s.get(b"ab") == b"new"
    it = store.scan(b"")
    next(it)
    it.close()
    store.close()
    db.close()
    db = open_rocks_with_sm(tmp_path / "db")            # the LOCK was released
    db.close()


# --- groups ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flush_between", [False, True])
def test_groups_are_independent_and_drop_group_removes_only_that_group(flush_between):
    store = MemoryStore()
    m = KVStateMachine(store)
    groups = (0, 1, 2, 0xFFFFFFFF)
    for g in groups:
        m.apply_batch(g, [(0, [put(1, 1, b"k", b"%d" % g)]), (1, [])])
    assert {value_of(m, g, b"k") for g in groups} == {b"%d" % g for g in groups}
    if flush_between:
        m.flush()
    m.drop_group(1)
    m.drop_group(0xFFFFFFFF)
    assert m.applied_next(1) == 0 and value_of(m, 1, b"k") is None
    assert m.applied_next(0xFFFFFFFF) == 0
    for g in (0, 2):
        assert m.applied_next(g) == 2 and value_of(m, g, b"k") == b"%d" % g
    # group 1 starts afresh: client 1's session went with it
    out = m.apply_batch(1, [(0, [put(1, 1, b"new", b"x")])])
    assert status(out[0][0]) == OK and value_of(m, 1, b"new") == b"x"
    assert value_of(m, 1, b"k") is None
    m.flush()
    m = KVStateMachine(store)
    assert m.applied_next(1) == 1 and value_of(m, 1, b"k") is None and value_of(m, 1, b"new") == b"x"
    assert m.applied_next(0xFFFFFFFF) == 0
    assert {k[:4] for k in store.data} == {struct.pack(">I", g) for g in (0, 1, 2)}
    for g in (0, 2):
        assert m.applied_next(g) == 2 and value_of(m, g, b"k") == b"%d" % g
        out = m.apply_batch(g, [(2, [put(1, 1, b"k", b"no")])])
        assert status(out[0][0]) == OK and value_of(m, g, b"k") == b"%d" % g


def test_bad_group_numbers_are_refused():
    m = KVStateMachine(MemoryStore())
    for bad in (-1, 2 ** 32):
        with pytest.raises(ValueError):
            m.apply_batch(bad, [(0, [])])
        with pytest.raises(ValueError):
            m.read(bad, encode_get(b"k"))
    with pytest.raises(TypeError):
        m.applied_next("0")


def test_store_layout_is_documented():
    m = KVStateMachine(MemoryStore())
    m.apply_batch(0x01020304, [(0, [put(9, 1, b"key", b"val")])])
    m.flush()
    data = m._store.data
    prefix = b"\x01\x02\x03\x04"
    assert data[prefix + b"d" + b"key"] == b"val"
    assert data[prefix + b"m"] == b"\x01" + struct.pack(">Q", 1)
    assert data[prefix + b"s" + struct.pack(">Q", 9)] == struct.pack(">QIQ", 0, 0, 1) + b"\x00"
    assert len(data) == 3
    assert "group | \"d\" | user key" in kvmod.__doc__


def test_idle_groups_are_unloaded_and_reload_with_their_sessions():
    store = MemoryStore()
    sm = KVStateMachine(store, max_loaded_groups=3)
    kv = kvmod
    for group in range(10):
        sm.apply_batch(group, [(0, [(77, 1, kv.encode_put(b"k", b"v%d" % group))])])
        sm.flush()
    assert len(sm._groups) == 3
    # A group unloaded long ago still knows its session: a retry is answered, not applied again.
    result = sm.apply_batch(0, [(1, [(77, 1, kv.encode_put(b"k", b"other"))])])
    assert kv.decode_result(result[0][0]).status == kv.OK
    sm.flush()
    assert kv.decode_result(sm.read(0, kv.encode_get(b"k"))).value == b"v0"
    assert sm.applied_next(0) == 2 and sm.applied_next(9) == 1


def test_unload_all_leaves_no_loaded_group_and_loses_nothing():
    store = MemoryStore()
    sm = KVStateMachine(store)
    kv = kvmod
    for group in range(5):
        sm.apply_batch(group, [(0, [(77, 1, kv.encode_put(b"k", b"v%d" % group))])])
    sm.unload_all()                                   # not flushed yet: nothing may be dropped
    assert len(sm._groups) == 5
    sm.flush()
    sm.unload_all()
    assert len(sm._groups) == 0
    for group in range(5):
        assert kv.decode_result(sm.read(group, kv.encode_get(b"k"))).value == b"v%d" % group
        assert sm.applied_next(group) == 1
    # sessions came back from the store too: a retry of (client 77, seq 1) is not applied again
    sm.apply_batch(3, [(1, [(77, 1, kv.encode_put(b"k", b"again"))])])
    sm.flush()
    assert kv.decode_result(sm.read(3, kv.encode_get(b"k"))).value == b"v3"

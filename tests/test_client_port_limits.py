"""Bad input on the client port bounded: a clear error, nothing changed, and honest clients still served.

Driven through the sans-I/O ReplicaLoop (what runtime/worker.py and the simulator drive):

* lease reads count against limits.max_pending like proposals (Overloaded beyond it), and a query larger
  than paxos.max_value_bytes is refused (ValueTooLarge): 20 reads of 2 MiB that named an epoch nobody will
  ever reach once filled a max_pending=5 worker, parked 40 MB and got an honest proposal Overloaded;
* every request's timeout is capped at limits.max_request_timeout_ms (the wire allows 49.7 days), and a
  request parked for an absurd min_epoch (a read or a proposal) is answered Timeout at that capped deadline;
* a PROPOSE_BATCH declaring more than MAX_BATCH_OPS operations is refused before a single one is split
  (64 MiB of zero-length operations were 16.7 million of them), and the Client refuses such a batch in the
  caller's thread;
* SUBSCRIBE keeps at most MAX_SUBSCRIBERS connections (the most recent): connect-and-subscribe in a loop no
  longer grows the set forever, nor the events sent per master change.
"""
import random

import pytest

from paxos_core.client import Client
from paxos_core.config import DEFAULTS
from paxos_core.core.config import CoreConfig
from paxos_core.replica import loop as loop_module
from paxos_core.replica.loop import LoopSettings, ReplicaLoop
from paxos_core.statemachine import kv
from paxos_core.statemachine.store import MemoryStore
from paxos_core.storage.memory import MemoryLog
from paxos_core.wire import rpc

from cluster_harness import free_base_port, wait_for
from loop_harness import run_turns

HUGE_EPOCH = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
CAP_S = DEFAULTS["limits"].get("max_request_timeout_ms", 60000) / 1000       # 60 s
# (Read with a default, so that against the code before these bounds the tests fail on behaviour.)
MAX_BATCH_OPS = getattr(rpc, "MAX_BATCH_OPS", 1 << 16)
MAX_SUBSCRIBERS = getattr(loop_module, "MAX_SUBSCRIBERS", 1024)


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _loop(clock, **settings):
    core = CoreConfig(node_id=1, members=(1,), n_groups=1, sticky_ticks=30)
    s = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30, lease_margin=0.3, **settings)
    log = MemoryLog(1)
    return ReplicaLoop(s, core, clock=clock, log=log, store=MemoryStore(), send=lambda m: None, hosted=[0],
                       recovery=log.recover(), rng=random.Random(7))


def _turns(loop, clock, frames=(), n=1, step=0.01):
    """Every reply decoded: [(identity, status, req_id, body)]."""
    return run_turns(loop, clock, frames, n, step, identities=True)


def _ready(loop, clock):
    """A put applied: the single node is master of group 0."""
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    assert [r[1] for r in _turns(loop, clock, [(b"setup", put)], n=30)] == [rpc.OK]


# ---------------------------------------------------------------------------------------------- 1: reads
def test_reads_count_against_max_pending_and_big_queries_are_refused():
    """The review's demo: 20 lease reads of 2 MiB naming epoch 2**64-1 with timeout 0xFFFFFFFF at a worker
    with max_pending=5. Now each is refused (the queries are too large) and nothing is parked; reads of a
    small query are parked up to max_pending and the rest are told Overloaded; an honest proposal is served
    once they end, and they end at the capped deadline with Timeout."""
    clock = _Clock()
    loop = _loop(clock, max_pending=5)
    _ready(loop, clock)
    big = b"q" * (2 << 20)
    frames = [(b"evil", rpc.read_request(100 + k, 0, rpc.READ_LEASE, U32_MAX, big, HUGE_EPOCH)) for k in range(20)]
    replies = _turns(loop, clock, frames)
    assert sorted(r[2] for r in replies) == list(range(100, 120))
    assert {r[1] for r in replies} == {rpc.VALUE_TOO_LARGE}
    assert b"max_value_bytes" in replies[0][3]
    assert loop.pending_count() == 0

    small = kv.encode_get(b"k")
    frames = [(b"evil", rpc.read_request(200 + k, 0, rpc.READ_LEASE, U32_MAX, small, HUGE_EPOCH)) for k in range(20)]
    replies = _turns(loop, clock, frames)
    assert loop.pending_count() == 5
    assert len(replies) == 15 and {r[1] for r in replies} == {rpc.OVERLOADED}
    assert loop.stats["overloaded"] == 15
    # Linearizable reads count too.
    lin = rpc.read_request(300, 0, rpc.READ_LINEARIZABLE, 1000, small)
    assert [r[1] for r in _turns(loop, clock, [(b"evil", lin)])] == [rpc.OVERLOADED]
    # A stale read waits for nothing: it is answered at once.
    stale = rpc.read_request(301, 0, rpc.READ_STALE, 1000, small)
    assert [r[1:3] for r in _turns(loop, clock, [(b"evil", stale)])] == [(rpc.OK, 301)]

    # The parked reads end at the capped deadline (60 s by default), not in 49.7 days.
    cap_s = CAP_S
    timed_out = []
    elapsed = 0.0
    while elapsed < cap_s + 1 and len(timed_out) < 5:
        timed_out += [r for r in _turns(loop, clock, step=0.5) if r[0] == b"evil"]
        elapsed += 0.5
    assert cap_s - 1 <= elapsed <= cap_s + 1
    assert sorted(r[2] for r in timed_out) == list(range(200, 205))
    assert {r[1] for r in timed_out} == {rpc.TIMEOUT}
    assert loop.pending_count() == 0
    put = rpc.propose_request(400, 0, 1000, 78, 1, kv.encode_put(b"k", b"v2"))
    assert [r[1:3] for r in _turns(loop, clock, [(b"honest", put)], n=30)] == [(rpc.OK, 400)]
    get = rpc.read_request(401, 0, rpc.READ_LEASE, 1000, small)
    assert [(r[1], kv.decode_result(r[3])) for r in _turns(loop, clock, [(b"honest", get)], n=30)] == \
        [(rpc.OK, (kv.OK, b"v2"))]


@pytest.mark.parametrize("op", ["propose", "read", "batch"])
def test_a_request_for_an_absurd_epoch_ends_at_its_capped_deadline(op):
    """A proposal, a batch or a read naming an epoch this node will never reach is parked (the node takes
    itself to be behind) and answered Timeout at its deadline: the client's, at most
    max_request_timeout_ms (60 s by default; the client asked for 0xFFFFFFFF ms)."""
    clock = _Clock()
    loop = _loop(clock)
    _ready(loop, clock)
    if op == "propose":
        frame = rpc.propose_request(9, 0, U32_MAX, 79, 1, kv.encode_put(b"k", b"x"), HUGE_EPOCH)
    elif op == "batch":
        frame = rpc.propose_batch_request(9, 0, U32_MAX, 79, 1, [kv.encode_put(b"k", b"x")] * 3, HUGE_EPOCH)
    else:
        frame = rpc.read_request(9, 0, rpc.READ_LEASE, U32_MAX, kv.encode_get(b"k"), HUGE_EPOCH)
    assert _turns(loop, clock, [(b"c", frame)]) == []
    assert loop.pending_count() == 1
    replies, elapsed = [], 0.0
    while not replies and elapsed < CAP_S + 10:
        replies = _turns(loop, clock, step=0.25)
        elapsed += 0.25
    assert [r[1:3] for r in replies] == [(rpc.TIMEOUT, 9)]
    assert CAP_S - 0.5 <= elapsed <= CAP_S + 0.5
    assert loop.pending_count() == 0
    # Nothing was proposed: the key still holds what the setup wrote.
    get = rpc.read_request(10, 0, rpc.READ_LEASE, 1000, kv.encode_get(b"k"))
    assert [kv.decode_result(r[3]) for r in _turns(loop, clock, [(b"c", get)], n=30)] == [(kv.OK, b"v1")]


def test_a_parked_request_released_past_its_deadline_is_answered_timeout():
    """A timeout within the cap is kept (0.5 s). The read, parked for its epoch, is released (and parked again)
    at every claim of the lease it keeps renewing; one released between its deadline and the next expiry
    scan was dropped without an answer (the client waited for its own deadline). Now it is told Timeout."""
    clock = _Clock()
    loop = _loop(clock)
    _ready(loop, clock)
    frame = rpc.read_request(9, 0, rpc.READ_LEASE, 500, kv.encode_get(b"k"), HUGE_EPOCH)
    _turns(loop, clock, [(b"c", frame)])
    replies, elapsed = [], 0.0
    while not replies and elapsed < 10:
        replies = _turns(loop, clock, step=0.1)
        elapsed += 0.1
    assert [r[1] for r in replies] == [rpc.TIMEOUT] and 0.4 <= elapsed <= 0.8


# ---------------------------------------------------------------------------------------------- 2: batches
def test_a_batch_of_too_many_operations_is_refused_before_it_is_split(monkeypatch):
    """The count is checked first: the frame's ops are never split (the old code built each of them)."""
    too_many = MAX_BATCH_OPS + 1
    frame = rpc.propose_batch_request(5, 0, 1000, 1, 1, [b""] * too_many)
    split = []
    monkeypatch.setattr(rpc, "_split", lambda *a, **k: split.append(1))
    with pytest.raises(rpc.BadRequest, match="at most %d" % MAX_BATCH_OPS):
        rpc.decode_request(frame)
    assert not split


def test_a_frame_of_millions_of_empty_operations_is_refused_quickly(monkeypatch):
    """16 MiB of zero-length operations: 4.2 million of them (the old decoder split every one: over a second
    and hundreds of MB); refused before any is split, and the loop carries on serving."""
    count = 4 << 20
    frame = (rpc._HEAD.pack(rpc.PROPOSE_BATCH, 5) + rpc._PROPOSE.pack(0, 1000, 1, 1, 0) + rpc._U32.pack(count)
             + bytes(4 * count))
    clock = _Clock()
    loop = _loop(clock)
    _ready(loop, clock)
    split = []
    real_split = rpc._split
    monkeypatch.setattr(rpc, "_split", lambda *a, **k: split.append(1) or real_split(*a, **k))
    replies = _turns(loop, clock, [(b"evil", frame)])
    assert not split
    assert [r[1] for r in replies] == [rpc.BAD_REQUEST]
    assert b"at most %d" % MAX_BATCH_OPS in replies[0][3]
    assert loop.pending_count() == 0
    put = rpc.propose_request(6, 0, 1000, 78, 1, kv.encode_put(b"k", b"v2"))
    assert [r[1:3] for r in _turns(loop, clock, [(b"honest", put)], n=30)] == [(rpc.OK, 6)]


def test_a_batch_at_the_bound_still_decodes():
    frame = rpc.propose_batch_request(5, 0, 1000, 1, 1, [b"x"] * MAX_BATCH_OPS)
    assert len(rpc.decode_request(frame)[-1]) == MAX_BATCH_OPS


def test_a_batch_larger_than_max_pending_is_overloaded_as_before():
    clock = _Clock()
    loop = _loop(clock, max_pending=5)
    _ready(loop, clock)
    frame = rpc.propose_batch_request(5, 0, 1000, 1, 1, [kv.encode_put(b"k", b"x")] * 6)
    assert [r[1] for r in _turns(loop, clock, [(b"c", frame)])] == [rpc.OVERLOADED]


def _idle_client(**kw):
    port = free_base_port(1, 1)
    return Client({1: ["tcp://127.0.0.1:%d" % port]}, 1, 4, **kw)


def test_the_client_refuses_a_batch_of_too_many_operations_in_the_callers_thread():
    with _idle_client() as client:
        with pytest.raises(ValueError, match="at most %d" % MAX_BATCH_OPS):
            client.propose_batch_future(0, [b""] * (MAX_BATCH_OPS + 1))
        assert not client._pending and not client._retry and not client._inbox


def test_the_client_sends_a_timeout_beyond_the_wires_u32():
    """A timeout of 10**7 s (accepted by the client) is 10**10 ms, more than the wire's u32: the request is
    sent with the u32's maximum (the worker caps it further), not failed at once."""
    sent = []

    class Socket:
        def send(self, frame, flags=0):
            sent.append(frame)

    with _idle_client(attempt_timeout=60) as client:
        client._socket = lambda node, worker: Socket()
        future = client.propose_future(0, b"op", timeout=1e7)
        wait_for(lambda: sent, 10, message="the request was sent")
        assert rpc.decode_request(sent[0])[3] == U32_MAX       # its timeout in ms: the u32's maximum
        assert not future.done()


# ---------------------------------------------------------------------------------------------- 3: subscribers
def test_subscribers_are_bounded_and_a_resubscribe_refreshes():
    clock = _Clock()
    loop = _loop(clock)
    limit = MAX_SUBSCRIBERS
    honest = b"honest"
    frames = [(honest, rpc.simple_request(rpc.SUBSCRIBE, 1))]
    frames += [(b"c%d" % k, rpc.simple_request(rpc.SUBSCRIBE, 1)) for k in range(limit - 1)]
    replies = _turns(loop, clock, frames)
    assert len(replies) == limit and {r[1] for r in replies} == {rpc.OK}
    assert len(loop.subscribers) == limit
    # The honest client subscribes again (refreshed: the newest) and survives the next limit - 1 subscribers,
    # which push out the oldest (c0 ...); 5 * limit more push it out too.
    _turns(loop, clock, [(honest, rpc.simple_request(rpc.SUBSCRIBE, 2))])
    _turns(loop, clock, [(b"d%d" % k, rpc.simple_request(rpc.SUBSCRIBE, 1)) for k in range(limit - 1)])
    assert len(loop.subscribers) == limit and honest in loop.subscribers and b"c0" not in loop.subscribers
    _turns(loop, clock, [(b"e%d" % k, rpc.simple_request(rpc.SUBSCRIBE, 1)) for k in range(5 * limit)])
    assert len(loop.subscribers) == limit and honest not in loop.subscribers
    # A master change sends one event per remembered subscriber, no more.
    replies = _turns(loop, clock, [(b"setup", rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v")))],
                     n=30)
    events = [r for r in replies if r[1] == rpc.EVENT]
    assert len(events) == limit
    assert {r[0] for r in events} == {b"e%d" % k for k in range(4 * limit, 5 * limit)}

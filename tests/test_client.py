"""The Client against fake workers: ROUTER sockets on loopback that answer the client protocol as a test
scripts them, by default from one real KVStateMachine (the replicated state every node would agree on).

Covers what results and error replies mean to a caller: STALE and SESSION_UNKNOWN are never a success, a group
stopped on one node is routed around, and re-sends carry the retry flag exactly when an earlier attempt may
have been proposed.
"""
import asyncio
import collections
import threading
import time

import pytest
import zmq

from paxos_core import errors
from paxos_core.client import Client
from paxos_core.kv import KV
from paxos_core.wire import rpc
from paxos_core.statemachine import KVStateMachine, MemoryStore
from paxos_core.statemachine import kv as ops

FLAG = ops.RETRY_FLAG


class FakeCluster:
    """One fake worker (a ROUTER socket) per node. `handlers[node](node, request)` returns the reply frame, or
    None to stay silent; `request` is rpc.decode_request's tuple. Every request is recorded in `seen`."""

    def __init__(self, nodes=(1, 2, 3), max_sessions=1000):
        self.ctx = zmq.Context()
        self.sm = KVStateMachine(MemoryStore(), max_sessions=max_sessions)
        self.sm_lock = threading.Lock()
        self.socks = {}
        self.endpoints = {}
        for node in nodes:
            sock = self.ctx.socket(zmq.ROUTER)
            sock.linger = 0
            sock.bind("tcp://127.0.0.1:*")
            self.socks[node] = sock
            self.endpoints[node] = [sock.getsockopt_string(zmq.LAST_ENDPOINT)]
        self.handlers = {node: self.apply for node in nodes}
        self.seen = []                 # (node, request tuple)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def client(self, **options):
        options.setdefault("prefer", min(self.endpoints))
        options.setdefault("default_timeout", 3.0)
        options.setdefault("attempt_timeout", 1.0)   # generous: a loaded CI machine is slow
        return Client(self.endpoints, 1, **options)

    def _run(self):
        poller = zmq.Poller()
        by_sock = {}
        for node, sock in self.socks.items():
            poller.register(sock, zmq.POLLIN)
            by_sock[sock] = node
        while not self._stop:
            for sock, _ in poller.poll(10):
                identity, frame = sock.recv_multipart()
                node = by_sock[sock]
                request = rpc.decode_request(frame)
                self.seen.append((node, request))
                reply = self.handlers[node](node, request)
                if reply is not None:
                    sock.send_multipart([identity, reply])

    def close(self):
        self._stop = True
        self._thread.join(timeout=5)
        for sock in self.socks.values():
            sock.close(0)
        self.ctx.term()

    # --- handlers ---

    def apply(self, node, request):
        """Serve the request from the shared state machine, as the group's master would."""
        op, req_id = request[0], request[1]
        with self.sm_lock:
            if op == rpc.PROPOSE:
                _, _, group, _, client_id, seq, _, payload = request
                instance = self.sm.applied_next(group)
                result = self.sm.apply_batch(group, [(instance, [(client_id, seq, payload)])])[0][0]
                return rpc.propose_ok(req_id, instance, result)
            if op == rpc.PROPOSE_BATCH:
                _, _, group, _, client_id, first, _, payloads = request
                instance = self.sm.applied_next(group)
                commands = [(client_id, first + k, p) for k, p in enumerate(payloads)]
                results = self.sm.apply_batch(group, [(instance, commands)])[0]
                return rpc.propose_batch_ok(req_id, [(instance, r) for r in results])
            if op == rpc.READ:
                _, _, group, _, _, _, query = request
                return rpc.reply(rpc.OK, req_id, self.sm.read(group, query))
        return rpc.error_reply(rpc.BAD_REQUEST, req_id, "fake: unexpected op %d" % op)

    @staticmethod
    def silent(node, request):
        return None

    @staticmethod
    def answer(result):
        """Answer every proposal with this state-machine result."""
        def handler(node, request):
            if request[0] == rpc.PROPOSE_BATCH:
                return rpc.propose_batch_ok(request[1], [(9, result) for _ in request[7]])
            return rpc.propose_ok(request[1], 9, result)
        return handler

    @staticmethod
    def refuse(status, message):
        def handler(node, request):
            return rpc.error_reply(status, request[1], message % {"group": request[2]})
        return handler

    @staticmethod
    def redirect(master):
        def handler(node, request):
            return rpc.not_master(request[1], master, 1)
        return handler

    def proposals(self):
        """(node, client id, request seq as sent) of every proposal seen."""
        return [(node, r[4], r[5]) for node, r in self.seen if r[0] in (rpc.PROPOSE, rpc.PROPOSE_BATCH)]


@pytest.fixture
def fake():
    cluster = FakeCluster()
    clients = []

    def make(**options):
        c = cluster.client(**options)
        clients.append(c)
        return c

    cluster.make_client = make
    yield cluster
    for c in clients:
        c.close()
    cluster.close()


# --- bug 2: STALE and SESSION_UNKNOWN are outcomes of their own, never a success -------------------------


def test_stale_result_raises_stale_request_not_success(fake):
    client = fake.make_client()
    for node in fake.handlers:
        fake.handlers[node] = fake.answer(ops.R_STALE)
    with pytest.raises(errors.StaleRequest, match="nothing was applied") as info:
        client.propose(3, ops.encode_put(b"k", b"v"))
    assert not isinstance(info.value, errors.Timeout)
    assert isinstance(info.value, errors.PaxosError)
    assert info.value.request_id == (fake.proposals()[-1][1], 1)
    with pytest.raises(errors.StaleRequest):
        KV(client, 16).put(b"k", b"v")
    with pytest.raises(errors.StaleRequest):
        KV(client, 16).cas(b"k", None, b"v")
    with pytest.raises(errors.StaleRequest):
        KV(client, 16).delete(b"k")
    with pytest.raises(errors.StaleRequest):
        asyncio.run(KV(client, 16).put_async(b"k", b"v"))
    # A stale session is not handed out again.
    assert not client._sessions.get(3)


def test_stale_result_of_a_real_state_machine_raises_stale_request(fake):
    client = fake.make_client()
    first = client.propose(0, ops.encode_put(b"a", b"1"))
    second = client.propose(0, ops.encode_put(b"a", b"2"))
    assert second.request_id == (first.request_id[0], 2)            # the pooled session, next seq
    with pytest.raises(errors.StaleRequest) as info:
        client.propose(0, ops.encode_put(b"a", b"old"), request_id=first.request_id, retry=False)
    assert info.value.request_id == first.request_id
    assert KV(client, 1).get(b"a") == b"2"                              # nothing applied
    # A retry (the caller's request id, flagged): its earlier attempt may have been applied, so STALE says
    # nothing about the request's outcome: a Timeout, caused by the StaleRequest.
    with pytest.raises(errors.Timeout, match="StaleRequest.*outcome is unknown") as info:
        client.propose(0, ops.encode_put(b"a", b"old"), request_id=first.request_id)
    assert isinstance(info.value.__cause__, errors.StaleRequest)
    assert info.value.request_id == first.request_id
    assert KV(client, 1).get(b"a") == b"2"


def test_session_unknown_result_raises_session_expired(fake):
    client = fake.make_client()
    for node in fake.handlers:
        fake.handlers[node] = fake.answer(ops.R_SESSION_UNKNOWN)
    with pytest.raises(errors.SessionExpired, match="not known") as info:
        client.propose(3, ops.encode_put(b"k", b"v"), request_id=(77, 4))
    assert isinstance(info.value, errors.Timeout)          # the outcome of the earlier attempt is unknown
    assert info.value.request_id == (77, 4)
    with pytest.raises(errors.SessionExpired):
        KV(client, 16).put(b"k", b"v")
    # A caller retry of a session the state machine does not know (seq 1, flagged) is refused: not applied.
    fake.handlers = {node: fake.apply for node in fake.handlers}
    with pytest.raises(errors.SessionExpired):
        client.propose(0, ops.encode_put(b"x", b"1"), request_id=(4242, 1))
    assert KV(client, 1).get(b"x") is None


def test_kv_facade_checks_session_results_even_without_the_clients_check(fake):
    client = fake.make_client(session_refusal=None)
    for node in fake.handlers:
        fake.handlers[node] = fake.answer(ops.R_STALE)
    assert client.propose(3, b"anything").result == ops.R_STALE        # a state machine of its own: as is
    with pytest.raises(errors.StaleRequest):
        KV(client, 16).put(b"k", b"v")


def test_batch_with_stale_items_raises_with_every_result(fake):
    client = fake.make_client()
    batch = [ops.encode_put(b"b%d" % i, b"v") for i in range(3)]
    done = client.propose_batch(0, batch)
    rid = done[0].request_id
    assert [r.request_id for r in done] == [(rid[0], 1), (rid[0], 2), (rid[0], 3)]
    # The whole batch again (a retry): the first two are STALE, the last one the remembered result. The
    # earlier attempt may have applied the STALE ones (it did): the outcome is unknown, not "nothing applied".
    with pytest.raises(errors.Timeout) as info:
        client.propose_batch(0, batch, request_id=rid)
    assert [ops.decode_result(r.result).status for r in info.value.results] == [ops.STALE, ops.STALE, ops.OK]
    assert info.value.request_id == rid
    assert isinstance(info.value.__cause__, errors.StaleRequest)
    # The same ids sent as a first attempt (retry=False): nothing was applied for the STALE ones.
    with pytest.raises(errors.StaleRequest) as info:
        client.propose_batch(0, batch, request_id=rid, retry=False)
    assert [ops.decode_result(r.result).status for r in info.value.results] == [ops.STALE, ops.STALE, ops.OK]


def test_unflagged_session_unknown_is_resent_once_under_a_fresh_session(fake):
    fake.sm.max_sessions = 1
    client = fake.make_client()
    first = client.propose(0, ops.encode_put(b"k", b"1"))
    # Another client's session evicts ours; our pooled session (seq 2) is unknown now.
    other = fake.make_client()
    other.propose(0, ops.encode_put(b"other", b"x"))
    again = client.propose(0, ops.encode_put(b"k", b"2"))
    assert again.request_id[0] != first.request_id[0] and again.request_id[1] == 1
    assert ops.decode_result(again.result).status == ops.OK
    sent = fake.proposals()
    assert sent[-2][1:] == (first.request_id[0], 2)        # refused: SESSION_UNKNOWN, nothing applied
    assert sent[-1][1:] == (again.request_id[0], 1)        # the fresh session, no retry flag
    assert KV(client, 1).get(b"k") == b"2"
    # A session whose first request was malformed never started: the next request renews it too.
    bad = client.propose(0, b"\x07junk")
    assert ops.decode_result(bad.result).status == ops.ERROR
    assert ops.decode_result(client.propose(0, ops.encode_put(b"k", b"3")).result).status == ops.OK


# --- bug 3: a group stopped on one node ----------------------------------------------------------------


def test_group_stopped_on_one_node_then_ok_from_another_succeeds(fake):
    fake.handlers[1] = fake.refuse(rpc.GROUP_STOPPED, "group %(group)d is stopped: divergence")
    client = fake.make_client(prefer=1)
    for i in range(20):
        result = client.propose(0, ops.encode_put(b"k%d" % i, b"v"))
        assert ops.decode_result(result.result).status == ops.OK
    assert KV(client, 1).get(b"k7") == b"v"
    assert client.read(0, ops.encode_get(b"k3"), mode="linearizable") == bytes([ops.OK | 0x80]) + b"v"
    # Node 1 was asked once, then avoided: not hundreds of refusals.
    assert sum(1 for node, _ in fake.seen if node == 1) <= 2
    # Reads route around it as well, even when asked to start there.
    assert KV(client, 1).get(b"k1", mode="lease") == b"v"
    assert client.read(0, ops.encode_get(b"k2"), node=1) == bytes([ops.OK | 0x80]) + b"v"


def test_group_stopped_everywhere_raises_group_stopped_quickly(fake):
    for node in fake.handlers:
        fake.handlers[node] = fake.refuse(rpc.GROUP_STOPPED, "group %(group)d is stopped: damage")
    client = fake.make_client(default_timeout=10.0)
    t0 = time.monotonic()
    with pytest.raises(errors.GroupStopped, match=r"node 1: .*node 2: .*node 3: "):
        client.propose(5, ops.encode_put(b"k", b"v"))
    with pytest.raises(errors.GroupStopped):
        client.read(5, ops.encode_get(b"k"))
    assert time.monotonic() - t0 < 2.0


def test_unknown_group_on_a_node_that_is_behind_is_routed_around(fake):
    fake.handlers[1] = fake.refuse(rpc.UNKNOWN_GROUP, "no group %(group)d here")
    client = fake.make_client(prefer=1)
    assert ops.decode_result(client.propose(0, ops.encode_put(b"k", b"v")).result).status == ops.OK
    for node in fake.handlers:
        fake.handlers[node] = fake.refuse(rpc.UNKNOWN_GROUP, "no group %(group)d here")
    with pytest.raises(rpc.UnknownGroupError, match=r"\b123\b"):
        client.propose(123, ops.encode_put(b"k", b"v"))


def test_group_stopped_on_some_nodes_and_unknown_on_the_rest_raises_group_stopped_at_the_deadline(fake):
    fake.handlers[1] = fake.refuse(rpc.GROUP_STOPPED, "group %(group)d is stopped")
    fake.handlers[2] = fake.refuse(rpc.UNKNOWN_GROUP, "no group %(group)d here")
    fake.handlers[3] = fake.refuse(rpc.UNKNOWN_GROUP, "no group %(group)d here")
    client = fake.make_client()
    with pytest.raises(errors.GroupStopped):
        client.propose(5, ops.encode_put(b"k", b"v"), timeout=0.5)


# --- bug 4: the retry flag --------------------------------------------------------------------------------


def _connected(fake, node, **options):
    """A client preferring `node`, once it has reached it. A request that finds no connection to a node yet
    goes to the next one unflagged (nothing was sent), so tests of what the first attempt does need this."""
    client = fake.make_client(prefer=node, **options)
    deadline = time.monotonic() + 10
    while not any(n == node for n, _ in fake.seen):
        assert time.monotonic() < deadline, "the client never reached node %d" % node
        KV(client, 1).get(b"warm-up", mode="stale")
    return client


def test_retry_flag_set_on_resends_after_an_attempt_that_may_have_been_proposed(fake):
    client = _connected(fake, 1, attempt_timeout=0.5)
    warm = client.propose(0, ops.encode_put(b"k", b"0"))           # the session is known now, seq 1
    fake.handlers[1] = fake.silent
    result = client.propose(0, ops.encode_put(b"k", b"v"))
    sent = fake.proposals()[1:]
    assert [node for node, _, _ in sent] == [1, 2]
    assert sent[0][1:] == (warm.request_id[0], 2)          # the first attempt: no flag
    assert sent[1][1:] == (warm.request_id[0], 2 | FLAG)   # node 1 may hold it: the re-send is a retry
    assert result.request_id == (warm.request_id[0], 2)    # the request id never shows the flag
    assert ops.decode_result(result.result).status == ops.OK
    # The state machine stored the seq without the flag: an unflagged retry gets the remembered result.
    again = client.propose(0, ops.encode_put(b"k", b"other"), request_id=result.request_id, retry=False)
    assert again.result == result.result
    assert KV(client, 1).get(b"k", mode="stale") == b"v"


def test_flagged_resend_of_a_first_request_that_never_landed_is_refused(fake):
    # The documented price of the flag: a session's first request (seq 1) whose first attempt may still be
    # somewhere cannot be told from an expired session's retry. Outcome unknown, nothing applied twice.
    client = _connected(fake, 1)
    fake.handlers[1] = fake.silent
    with pytest.raises(errors.SessionExpired, match="earlier attempt"):
        client.propose(0, ops.encode_put(b"k", b"v"))
    # The first attempt went to node 1 unflagged; every later one (one, unless a loaded machine made an
    # attempt time out as well) carries the flag.
    seqs = [seq for _, _, seq in fake.proposals()]
    assert seqs[0] == 1 and len(seqs) >= 2 and set(seqs[1:]) == {1 | FLAG}
    assert KV(client, 1).get(b"k", mode="stale") is None


def test_no_retry_flag_after_a_not_master_redirect(fake):
    client = _connected(fake, 1)
    fake.handlers[1] = fake.redirect(2)
    del fake.seen[:]
    client.propose(0, ops.encode_put(b"k", b"v"))
    sent = fake.proposals()
    assert [(node, seq) for node, _, seq in sent] == [(1, 1), (2, 1)]


def test_a_callers_request_id_is_a_retry_unless_it_says_otherwise(fake):
    client = fake.make_client()
    with pytest.raises(errors.SessionExpired):
        client.propose(0, ops.encode_put(b"k", b"v"), request_id=(99, 1))
    assert fake.proposals()[-1][1:] == (99, 1 | FLAG)
    first = client.propose(0, ops.encode_put(b"k", b"v"), request_id=(99, 1), retry=False)
    assert fake.proposals()[-1][1:] == (99, 1)
    again = client.propose(0, ops.encode_put(b"k", b"w"), request_id=(99, 1 | FLAG))   # a flagged id is masked
    assert fake.proposals()[-1][1:] == (99, 1 | FLAG)
    assert again.result == first.result and again.request_id == (99, 1)
    with pytest.raises(ValueError):
        client.propose(0, b"", retry=True)


def _apply_unanswered_then_refuse(fake, status):
    """A handler that applies the first proposal and never answers it (a node that proposed it, then went
    silent for a while), and refuses everything after with `status`."""
    refuse = fake.refuse(status, "refused (group %(group)d)")
    applied = []

    def handler(node, request):
        if applied:
            return refuse(node, request)
        applied.append(request)
        fake.apply(node, request)
        return None
    return handler


@pytest.mark.parametrize("status, refusal", [(rpc.OVERLOADED, errors.Overloaded),
                                             (rpc.GROUP_STOPPED, errors.GroupStopped),
                                             (rpc.VALUE_TOO_LARGE, errors.ValueTooLarge)])
def test_a_refusal_after_an_attempt_that_may_have_been_proposed_is_an_unknown_outcome(fake, status, refusal):
    # Node 1 applies the write and its answer is lost; the re-sends are refused. "Overloaded" (or any
    # refusal) would say that nothing was applied: the write was, so the outcome can only be unknown.
    client = _connected(fake, 1, attempt_timeout=0.3)
    warm = client.propose(0, ops.encode_put(b"k", b"0"))
    fake.handlers[1] = _apply_unanswered_then_refuse(fake, status)
    for node in (2, 3):
        fake.handlers[node] = fake.refuse(status, "refused by node %d" % node)
    with pytest.raises(errors.Timeout, match="outcome is unknown") as info:
        client.propose(0, ops.encode_put(b"k", b"v"), timeout=2.0)
    assert isinstance(info.value.__cause__, refusal)
    assert info.value.request_id == (warm.request_id[0], 2)
    fake.handlers = {node: fake.apply for node in fake.handlers}
    assert KV(client, 1).get(b"k", mode="stale") == b"v"       # it was applied
    # The same refusal of a first attempt is definite: nothing was proposed.
    for node in fake.handlers:
        fake.handlers[node] = fake.refuse(status, "refused by node %d" % node)
    with pytest.raises(refusal):
        client.propose(0, ops.encode_put(b"k", b"w"), timeout=2.0)


def test_a_request_submitted_while_the_client_closes_never_hangs(fake):
    # close() runs between the caller's check that the client is open and its request reaching the inbox (here
    # made certain: the inbox closes the client first): the I/O thread's last sweep found the inbox empty, so
    # nobody would ever end the request. It must be refused instead, at once.
    client = fake.make_client()

    class ClosingInbox(collections.deque):
        def append(self, req):
            client.close()
            super().append(req)

    client._inbox = ClosingInbox()
    with pytest.raises(errors.PaxosError, match="closed"):
        client.propose_future(0, ops.encode_put(b"k", b"v"))
    assert not client._inbox


def test_batch_timeout_names_the_first_seq_and_its_retry_is_flagged(fake):
    for node in fake.handlers:
        fake.handlers[node] = fake.silent
    client = fake.make_client(attempt_timeout=0.1)
    batch = [ops.encode_put(b"b%d" % i, b"v") for i in range(3)]
    with pytest.raises(errors.Timeout) as info:
        client.propose_batch(0, batch, timeout=0.5)
    client_id = fake.proposals()[0][1]
    assert info.value.request_id == (client_id, 1)
    assert {seq for _, _, seq in fake.proposals()[1:]} == {1 | FLAG}
    fake.handlers = {node: fake.apply for node in fake.handlers}
    # Nothing landed, so the retry (flagged, seq 1) cannot tell it from an expired session: refused.
    rid = info.value.request_id
    with pytest.raises(errors.SessionExpired) as info:
        client.propose_batch(0, batch, request_id=rid)
    assert [ops.decode_result(r.result).status for r in info.value.results] == [ops.SESSION_UNKNOWN] * 3
    assert KV(client, 1).get(b"b0") is None


def test_a_redirect_to_a_master_the_client_has_no_address_for_goes_to_a_node_it_knows(fake):
    """A node that joined after the Client was made (`member add`) can be named master by a NOT_MASTER reply
    or a master-change event. The client kept it as its hint; the next attempt failed inside the client
    (KeyError: no address), the request ended unknown, and the socket made for it kept close() from
    returning. Hints now name only nodes the client can reach: the request goes to a node it knows."""
    client = _connected(fake, 1)
    fake.handlers[1] = fake.redirect(9)
    del fake.seen[:]
    result = client.propose(0, ops.encode_put(b"k", b"v"))
    assert ops.decode_result(result.result).status == ops.OK
    assert [node for node, _, _ in fake.proposals()][0] == 1 and 9 not in client._master_hint.values()
    # A master-change event naming node 9 (the answer to a request, in place of it: that attempt times out).
    events = []

    def event_then_apply(node, request):
        if not events:
            events.append(request)
            return rpc.master_event(0, 9, 7)
        return fake.apply(node, request)
    for node in fake.handlers:
        fake.handlers[node] = event_then_apply
    result = client.propose(0, ops.encode_put(b"k", b"w"))
    assert events and ops.decode_result(result.result).status == ops.OK
    assert 9 not in client._master_hint.values()
    with pytest.raises(errors.PaxosError, match="no address for node 9"):
        client._socket(9, 0)
    assert (9, 0) not in client._sockets
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 5


def test_a_stale_read_pinned_to_a_node_that_cannot_serve_it_ends_in_not_master(fake):
    """README: a node too far behind (or rebuilding) answers a stale read NotMaster, and an unpinned read goes
    to the master instead. A pinned one was sent on to the master named, or, with none named, to node None:
    the client's socket lookup failed (KeyError: None, seen in nemesis seed 603's client logs) and the read
    ended as a Timeout. It now ends in NotMaster, naming the master when the node knows one, and nothing is
    sent to another node."""
    client = _connected(fake, 2)
    for master in (0, 3):
        fake.handlers[2] = fake.redirect(master)
        del fake.seen[:]
        with pytest.raises(errors.NotMaster) as caught:
            client.read_stale(0, ops.encode_get(b"k"), node=2)
        assert caught.value.master == (master or None)
        assert [node for node, _ in fake.seen] == [2]
    fake.handlers[2] = fake.apply
    assert KV(client, 1).get(b"k", mode="stale") is None

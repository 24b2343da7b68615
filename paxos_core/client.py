"""The client side of the facade: talks to the workers' client sockets of any node.

One background I/O thread owns every ZeroMQ socket; callers (any thread, or asyncio) submit requests; the
blocking API waits on ``concurrent.futures.Future`` objects, the asyncio API on loop futures that the I/O
thread completes in bursts (one wake-up of the loop per burst), so both share one implementation.

What the client does for you:
  * sends a request to the worker that hosts its group (`group % workers`) on a preferred node;
  * follows NotMaster redirects to the group's master (a few hops at most);
  * when a node does not answer within `attempt_timeout`, or answers "no master yet", tries another node;
  * when a node answers that the group is stopped there, or that it has no such group (it may be behind),
    tries the other nodes until the deadline, and steers later requests of the group away from a node that
    said "stopped"; GroupStopped is raised only when every node said so (UnknownGroupError: when every node
    said it has no such group);
  * gives every proposal a request id (session id, sequence number) so that a retry - its own or yours - is
    applied at most once (the state machine remembers each session's latest result).

A Timeout means the OUTCOME IS UNKNOWN. The exception carries ``request_id``; pass it back as
``propose(..., request_id=...)`` to retry the same request: it is applied at most once. Every other error of a
proposal means that nothing of it was applied, so a request that an earlier attempt may have proposed (the
retry flag below) ends in Timeout whatever refused its last attempt (Overloaded, GroupStopped, STALE, ...):
the refusal is the Timeout's ``__cause__``.

Results that applied nothing are never returned as a success (with the KV state machine; see
``session_refusal`` below): STALE raises :class:`~paxos_core.errors.StaleRequest` (the session already
applied a newer request; nothing was applied for this one; on a retry: a Timeout caused by it),
SESSION_UNKNOWN raises :class:`~paxos_core.errors.SessionExpired` (a Timeout: the session expired or never
started, nothing was applied by this attempt, an earlier attempt's outcome is unknown).

The retry flag (bit 63 of the request seq on the wire, ``statemachine.kv.RETRY_FLAG``). It tells the state
machine "an earlier attempt of this request may have been proposed", so that a retry of a session it no longer
knows is refused (SESSION_UNKNOWN) instead of applied a second time. The rule:
  * the first attempt of a request goes without the flag;
  * so does a re-send after an answer that proves the attempt was refused without being proposed: NotMaster
    (a redirect, or a fenced entry, which is decided but never applied), GroupStopped and UnknownGroupError
    (the node refuses before it proposes), or a send that never left this process (no connection);
  * once an attempt MAY have been proposed - no answer within ``attempt_timeout`` (a slow, partitioned or
    dead node may still hold it, or have proposed it) - every later attempt of the request carries the flag;
  * a request id passed by the caller is a retry (``retry=None`` means True then): its earlier attempt is
    the caller's, and its outcome unknown to this client. A caller that names its own ids for a FIRST attempt
    passes ``retry=False``; a new session must start at seq 1.
The price of the flag: a flagged re-send of a session's FIRST request (seq 1) whose earlier attempt has not
landed is refused (SessionExpired) rather than applied, since the state machine cannot tell it from the retry
of an expired session. An unflagged attempt of a pooled session that got SESSION_UNKNOWN (the group evicted the
idle session, or its first request was malformed and never started it) applied nothing and has no other attempt
that could land: the client re-sends it once under a fresh session.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import json
import logging
import os
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Sequence

import zmq

from . import errors
from .core.config import SYSTEM_GROUP, shard_of
from .core.voters import config_state
from .wire import rpc
from .statemachine import kv as kv_ops

if TYPE_CHECKING:
    from .config import NodeConfig
    from .membership import Membership

log = logging.getLogger("paxos_core.client")

#: A request id: (client id, seq). Errors of a proposal carry it as ``request_id``; pass it back to retry.
RequestId = tuple[int, int]
#: How a read is served (see Client.read).
ReadMode = Literal["lease", "linearizable", "stale"]
#: ``callback(group, master node, epoch)``, see Client.on_master_change.
MasterCallback = Callable[[int, int, int], object]

REDIRECT_PAUSE_EVERY = 4         # after this many redirects in a row, wait a little before following more
STOPPED_AVOID_SECONDS = 5.0      # a node that said "group stopped" is asked last, for this long
ROUND_PAUSE = 0.05               # every node refused the request: wait this long before asking them again
_REFUSALS = (rpc.GROUP_STOPPED, rpc.UNKNOWN_GROUP)
# PAXOS_CORE_CLIENT_LOOP_BRIDGE=0 completes asyncio callers with asyncio.wrap_future, one loop wake-up per
# result (kept to measure what the bridge gains).
_LOOP_BRIDGE = os.environ.get("PAXOS_CORE_CLIENT_LOOP_BRIDGE", "1") != "0"
# PAXOS_CORE_CLIENT_WAKE_COALESCE=0 writes a wake-up byte to the I/O thread for every request (kept to measure
# the difference).
_WAKE_COALESCE = os.environ.get("PAXOS_CORE_CLIENT_WAKE_COALESCE", "1") != "0"


U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1


# ---------------------------------------------------------------- arguments, checked in the caller's thread
# A bad argument fails its own call, in the caller's thread, before anything is queued to the I/O thread:
# found there, it would fail every request in flight (and a Python object that is not bytes could be turned
# into something else on the way: bytes(12) is twelve zero bytes).


def _first_of_add(group: int, incarnation: int, infos: Mapping[Any, dict]) -> bytes:
    """The first configuration an add of `group`'s `incarnation` sends every node (core/voters.pyx
    config_state(); empty: the table's first voters): the one the nodes holding the incarnation (held, or
    handed over) started it on, else the voters the newest membership table among the nodes asked places the
    group on. `infos`: GROUP_INFO answers."""
    holders = [i for i in infos.values() if i["incarnation"] == incarnation and (i["hosted"] or i["status"] == "vacated")]
    if holders:
        held = {json.dumps(i.get("first"), sort_keys=True) for i in holders}
        if len(held) > 1:
            raise errors.ConfigError("group %d: nodes hold its incarnation on different first voters (%s); remove "
                                     "the group everywhere first" % (group, ", ".join(sorted(held))))
        first = holders[0].get("first")
        return config_state(first["epoch"], first["voters"]) if first else b""
    tables = [i["table"] for i in infos.values() if i.get("table") and i["table"]["epoch"] >= 1]
    if not tables:
        return b""                 # no membership table yet: the first voters of every group
    newest = max(tables, key=lambda t: t["epoch"])
    return config_state(newest["epoch"], newest["voters"])


def as_bytes(value: Any, what: str) -> bytes:
    """`value` as bytes: bytes as it is, a bytearray or memoryview copied (the caller may change it while the
    request is in flight); TypeError for anything else, with `what` naming the argument."""
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("%s must be bytes, bytearray or memoryview, not %s" % (what, type(value).__name__))


def check_int(value: Any, what: str, lo: int, hi: int) -> int:
    """`value` if it is an int (not a bool) in lo..hi; TypeError or ValueError naming `what` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, not %s" % (what, type(value).__name__))
    if not lo <= value <= hi:
        raise ValueError("%s must be in %d..%d, got %d" % (what, lo, hi, value))
    return int(value)


def check_timeout(timeout: Any, what: str = "timeout") -> float | None:
    """None, or a finite number of seconds > 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("%s must be a number of seconds or None, not %s" % (what, type(timeout).__name__))
    if not 0 < timeout < 1e9:        # also refuses NaN and infinity
        raise ValueError("%s must be a number of seconds > 0, got %r" % (what, timeout))
    return float(timeout)


@dataclass(frozen=True)
class ProposeResult:
    """A chosen and applied proposal: its log position, the state machine's result, the request id."""
    group: int
    instance: int
    result: bytes
    request_id: RequestId


class _LoopBridge:
    """Hands results from the I/O thread to one asyncio loop: one wake-up of the loop per burst of results,
    not one per result (asyncio.wrap_future costs a thread-safe call - a pipe write - for every future)."""

    def __init__(self, loop):
        self.loop = loop
        self.lock = threading.Lock()
        self.items = []

    def post(self, future, value, exc):
        with self.lock:
            first = not self.items
            self.items.append((future, value, exc))
        if first:
            try:
                self.loop.call_soon_threadsafe(self.drain)
            except RuntimeError:       # the loop is closed: nobody is waiting any more
                pass

    def drain(self):
        with self.lock:
            items, self.items = self.items, []
        for future, value, exc in items:
            if future.done():
                continue               # cancelled by the caller
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(value)


class _AsyncSlot:
    """What the I/O thread completes for an asyncio caller (the Future interface it uses)."""

    __slots__ = ("future", "bridge", "_done")

    def __init__(self, future, bridge):
        self.future = future
        self.bridge = bridge
        self._done = False

    def done(self):
        return self._done

    def set_result(self, value):
        self._done = True
        self.bridge.post(self.future, value, None)

    def set_exception(self, exc):
        self._done = True
        self.bridge.post(self.future, None, exc)


class _Request:
    __slots__ = ("future", "kind", "group", "body", "deadline", "node", "tried", "req_id", "sent_at", "hops",
                 "session", "count", "own_session", "retry", "renewed", "refusals", "retry_at", "pinned")

    def __init__(self, future, kind, group, body, deadline, node):
        self.future = future
        self.kind = kind
        self.group = group
        self.body = body            # function (req, req_id, remaining_ms, min_epoch) -> request frame
        self.deadline = deadline
        self.node = node
        self.tried = set()
        self.req_id = 0
        self.sent_at = 0.0
        self.hops = 0
        # proposals: the request id (client id, first seq), without the retry flag
        self.session: RequestId | None = None
        self.count = 1              # how many seqs the request uses (a batch: one per operation)
        self.own_session = False    # session taken from this client's pool (returned to it on success)
        self.retry = False          # an earlier attempt may have been proposed: send with the retry flag
        self.renewed = False        # already re-sent once under a fresh session
        self.refusals = None        # node -> (status, message) of its latest GROUP_STOPPED / UNKNOWN_GROUP
        self.pinned = False         # only ever sent to `node` (a stale read of that node)
        self.retry_at = 0.0

    def wire_seq(self):
        """The request seq to send: the session's seq, with the retry flag when it applies."""
        assert self.session is not None, "only a proposal has a session"
        seq = self.session[1]
        return seq | kv_ops.RETRY_FLAG if self.retry else seq


class Client:
    """A connection to a paxos-core cluster. Thread-safe; usable from asyncio too. Close it when done."""

    def __init__(self, endpoints: Mapping[int, Sequence[str]], workers: int, groups: int | None = None,
                 prefer: int | None = None, default_timeout: float = 5.0, attempt_timeout: float = 1.0,
                 session_refusal: Callable[[bytes], type[errors.PaxosError] | None] | None
                 = kv_ops.session_refusal, curve_server_keys: Mapping[int, bytes] | None = None,
                 curve_keypair: tuple[bytes, bytes] | None = None) -> None:
        """`endpoints`: {node id: [client endpoint of worker 0, worker 1, ...]}.

        `curve_server_keys`: {node id: its CURVE public key (z85)} for a cluster with CURVE keys (its client
        sockets then take CURVE connections only); `curve_keypair`: (public, secret) z85 keys this client
        connects with: a member's keys let it run administrative operations (add and remove groups); without
        one it makes a key pair of its own, enough for reads and writes. from_config and from_cluster_dir
        pass both.

        `session_refusal(result)`: the exception class for a state-machine result that applied nothing for a
        session reason, else None (default: the KV store's STALE and SESSION_UNKNOWN). A cluster running a
        state machine of its own passes a function for its results, or None to take every result as it is.
        """
        if not endpoints:
            raise errors.ConfigError("client: no node endpoints given")
        self.endpoints = {int(n): list(eps) for n, eps in endpoints.items()}
        self.workers = int(workers)
        for n, eps in self.endpoints.items():
            if len(eps) != self.workers:
                raise errors.ConfigError("client: node %d has %d worker endpoints, expected %d"
                                         % (n, len(eps), self.workers))
        self.groups = groups
        self.nodes = sorted(self.endpoints)
        self.prefer = prefer if prefer in self.endpoints else self.nodes[0]
        self.default_timeout = default_timeout
        self.attempt_timeout = attempt_timeout
        self._curve_server_keys = dict(curve_server_keys) if curve_server_keys else None
        if self._curve_server_keys is not None:
            missing = [n for n in self.endpoints if n not in self._curve_server_keys]
            if missing:
                raise errors.ConfigError("client: no CURVE public key for node(s) %s" % ", ".join(map(str, missing)))
            if curve_keypair is None:
                curve_keypair = zmq.curve_keypair()
        self._curve_keypair = curve_keypair
        self._ctx = zmq.Context()
        self._sockets: dict[tuple[int, int], zmq.Socket[bytes]] = {}
        self._inbox: collections.deque[_Request] = collections.deque()
        self._wake_pending = False        # a wake-up byte is on its way to the I/O thread: no need for another
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._pending: dict[int, _Request] = {}
        self._req_ids = itertools.count(1)
        self._sessions: dict[int, list[RequestId]] = {}        # group -> [(client id, next seq)] free sessions
        # I/O thread only: group -> node that last served it as master; group -> highest master epoch a node
        # told us of; group -> {node: when it said the group is stopped}.
        self._master_hint: dict[int, int] = {}
        self._epoch_hint: dict[int, int] = {}
        self._stopped_at: dict[int, dict[int, float]] = {}
        self._session_refusal = session_refusal
        self._events_seen: dict[int, int] = {}    # group -> epoch of the last master change reported to callbacks
        self._lock = threading.Lock()
        self._callbacks: list[MasterCallback] = []
        self._bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBridge] = (
            weakref.WeakKeyDictionary())
        self._subscribed: set[int] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._io_loop, name="paxos-client-io", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_config(cls, config: NodeConfig, prefer: int | None = None, **kw: Any) -> Client:
        """A client of the cluster `config` belongs to; it prefers `prefer` (default: `config`'s node).

        With CURVE keys in the config, it connects with CURVE using the node's own key pair: it holds the
        cluster's credentials, so administrative operations are allowed."""
        endpoints = {n.id: [n.client_endpoint(w) for w in range(config.workers)] for n in config.nodes}
        if config.keys_dir is not None and "curve_server_keys" not in kw:
            kw["curve_server_keys"] = {n.id: config.curve_public_key(n.id) for n in config.nodes}
            kw.setdefault("curve_keypair", (config.curve_public_key(config.node_id), config.curve_secret_key()))
        return cls(endpoints, config.workers, config.groups, prefer=prefer or config.node_id, **kw)

    @classmethod
    def from_cluster_dir(cls, directory: str | os.PathLike[str], **kw: Any) -> Client:
        """A client of the cluster whose node files are in `directory` (as `paxos-core init` writes them),
        with its CURVE keys when it has them (see from_config)."""
        from .config import load_cluster

        configs = load_cluster(directory)
        return cls.from_config(configs[0], prefer=configs[0].node_id, **kw)

    # ------------------------------------------------------------------ sessions (exactly-once)
    def _take_session(self, group):
        with self._lock:
            free = self._sessions.get(group)
            if free:
                return free.pop()
        return self._fresh_session()

    @staticmethod
    def _fresh_session():
        """A new session: a random client id, first seq 1 (a state machine starts a session only there)."""
        return (secrets.randbits(63) | 1, 1)

    def _return_session(self, group, client_id, next_seq):
        with self._lock:
            self._sessions.setdefault(group, []).append((client_id, next_seq))

    @staticmethod
    def _caller_request(request_id, retry):
        """(client id, seq, retry flag) of a request id the caller passed; its seq without the flag bit."""
        if not isinstance(request_id, (tuple, list)) or len(request_id) != 2:
            raise TypeError("request_id must be a (client id, seq) pair, not %r" % (request_id,))
        client_id = check_int(request_id[0], "request_id's client id", 0, U64_MAX)
        seq = check_int(request_id[1], "request_id's seq", 0, U64_MAX)
        return client_id, seq & kv_ops.SEQ_MASK, True if retry is None else bool(retry)

    def _check_target(self, group, timeout, node):
        """The checks every request makes in the caller's thread (see as_bytes)."""
        check_int(group, "group", 0, U32_MAX)
        timeout = check_timeout(timeout)
        if node is not None and (isinstance(node, bool) or node not in self.endpoints):
            raise ValueError("node must be one of %s or None, got %r" % (self.nodes, node))
        return timeout

    # ------------------------------------------------------------------ public API
    def _proposal(self, kind, group, body, timeout, request_id, retry, node, future):
        """A proposal request with its session: the caller's request id, or one from this client's pool."""
        timeout = self._check_target(group, timeout, node)
        timeout = self.default_timeout if timeout is None else timeout
        req = _Request(future or concurrent.futures.Future(), kind, group, body, time.monotonic() + timeout, node)
        if request_id is None:
            if retry:
                raise ValueError("retry=True needs the request_id of the earlier attempt")
            req.session = self._take_session(group)
            # Only a session this client handed out goes back to its pool: a request id of the caller's own
            # is the caller's to manage, and pooling it would let two requests share one (client id, seq).
            req.own_session = True
        else:
            client_id, seq, req.retry = self._caller_request(request_id, retry)
            req.session = (client_id, seq)
        return req

    def propose_future(self, group: int, op: bytes, timeout: float | None = None,
                       request_id: RequestId | None = None, node: int | None = None, retry: bool | None = None,
                       _future: Any = None) -> concurrent.futures.Future[ProposeResult]:
        """Submit a proposal; a Future of ProposeResult. See propose()."""
        op = as_bytes(op, "op")

        def body(req, req_id, remaining_ms, min_epoch):
            return rpc.propose_request(req_id, group, remaining_ms, req.session[0], req.wire_seq(), op, min_epoch)

        req = self._proposal(rpc.PROPOSE, group, body, timeout, request_id, retry, node, _future)
        self._submit(req)
        return req.future

    def propose_batch_future(self, group: int, ops: Iterable[bytes], timeout: float | None = None,
                             request_id: RequestId | None = None, node: int | None = None,
                             retry: bool | None = None,
                             _future: Any = None) -> concurrent.futures.Future[list[ProposeResult]]:
        """Submit many operations of one group in one request; a Future of [ProposeResult] in order.

        The operations share one session with consecutive sequence numbers (`request_id` names the first),
        so a retry of the whole batch applies each at most once. If any operation applied nothing for a
        session reason the batch raises, with ``results`` (every operation's ProposeResult): StaleRequest when
        no earlier attempt may have been proposed (nothing was applied for the STALE ones), SessionExpired if
        any came back SESSION_UNKNOWN, and Timeout (outcome unknown) on a retry, whose STALE operations may
        have been applied by the earlier attempt (the first ones of a re-sent batch come back STALE).
        At most ``rpc.MAX_BATCH_OPS`` operations (ValueError), and a worker answers Overloaded to a batch of
        more than its ``limits.max_pending``.
        """
        if isinstance(ops, (bytes, bytearray, memoryview, str)):
            raise TypeError("ops must be an iterable of operations (bytes), not one %s" % type(ops).__name__)
        ops = [as_bytes(op, "ops[%d]" % k) for k, op in enumerate(ops)]
        if len(ops) > rpc.MAX_BATCH_OPS:
            raise ValueError("a batch holds at most %d operations (rpc.MAX_BATCH_OPS; a worker also refuses more "
                             "than its limits.max_pending with Overloaded), got %d" % (rpc.MAX_BATCH_OPS, len(ops)))

        def body(req, req_id, remaining_ms, min_epoch):
            return rpc.propose_batch_request(req_id, group, remaining_ms, req.session[0], req.wire_seq(), ops,
                                             min_epoch)

        req = self._proposal(rpc.PROPOSE_BATCH, group, body, timeout, request_id, retry, node, _future)
        req.count = len(ops)
        self._submit(req)
        return req.future

    def propose_batch(self, group: int, ops: Iterable[bytes], timeout: float | None = None,
                      request_id: RequestId | None = None, node: int | None = None,
                      retry: bool | None = None) -> list[ProposeResult]:
        """Propose many operations to one group in one request (they may share Paxos instances)."""
        return self.propose_batch_future(group, ops, timeout, request_id, node, retry).result()

    async def propose_batch_async(self, group: int, ops: Iterable[bytes], timeout: float | None = None,
                                  request_id: RequestId | None = None, node: int | None = None,
                                  retry: bool | None = None) -> list[ProposeResult]:
        return await self._await(self.propose_batch_future, group, ops, timeout, request_id, node, retry)

    def propose(self, group: int, op: bytes, timeout: float | None = None, request_id: RequestId | None = None,
                node: int | None = None, retry: bool | None = None) -> ProposeResult:
        """Propose `op` to `group`; blocks until it is chosen and applied. Returns ProposeResult.

        `request_id` (client id, seq): retry a request (from a Timeout's ``request_id``); it is then sent with
        the retry flag, unless `retry=False` says that no attempt under this id was ever sent (a caller's own
        id for a first attempt; a new session starts at seq 1). Raises Timeout or SessionExpired (outcome
        unknown: also every refusal of a request that an earlier attempt may have proposed, with the refusal as
        its ``__cause__``), StaleRequest (nothing applied), GroupStopped (every node has the group stopped),
        Overloaded, ValueTooLarge, UnknownGroupError. A NotMaster answer is followed, never raised.
        """
        return self.propose_future(group, op, timeout, request_id, node, retry).result()

    async def propose_async(self, group: int, op: bytes, timeout: float | None = None,
                            request_id: RequestId | None = None, node: int | None = None,
                            retry: bool | None = None) -> ProposeResult:
        return await self._await(self.propose_future, group, op, timeout, request_id, node, retry)

    def read_future(self, group: int, query: bytes, mode: ReadMode = "lease", timeout: float | None = None,
                    node: int | None = None, _future: Any = None) -> concurrent.futures.Future[bytes]:
        """A stale read with `node` given reads that node only (its state is what was asked for)."""
        if not isinstance(mode, str) or mode not in rpc.READ_MODES:
            raise ValueError("read mode must be one of %s, got %r" % (", ".join(rpc.READ_MODES), mode))
        query = as_bytes(query, "query")
        timeout = self._check_target(group, timeout, node)
        timeout = self.default_timeout if timeout is None else timeout
        code = rpc.READ_MODES[mode]
        future = _future or concurrent.futures.Future()

        def body(req, req_id, remaining_ms, min_epoch):
            return rpc.read_request(req_id, group, code, remaining_ms, query, min_epoch)

        req = _Request(future, rpc.READ, group, body, time.monotonic() + timeout, node)
        req.pinned = mode == "stale" and node is not None
        self._submit(req)
        return future

    def read(self, group: int, query: bytes, mode: ReadMode = "lease", timeout: float | None = None,
             node: int | None = None) -> bytes:
        """Read through the group's state machine.

        mode "lease": answered by the master from its state while its lease holds (no log round);
        "linearizable": a read barrier goes through the log first; "stale": this node's state, maybe old.
        """
        return self.read_future(group, query, mode, timeout, node).result()

    async def read_async(self, group: int, query: bytes, mode: ReadMode = "lease", timeout: float | None = None,
                         node: int | None = None) -> bytes:
        return await self._await(self.read_future, group, query, mode, timeout, node)

    async def _await(self, make_future, *args):
        """Run a *_future call for an asyncio caller: its result arrives through the loop's bridge (one
        wake-up per burst of results), or, with the bridge switched off, through asyncio.wrap_future."""
        if not _LOOP_BRIDGE:
            return await asyncio.wrap_future(make_future(*args))
        slot = self._async_slot()
        make_future(*args, _future=slot)
        return await slot.future

    def _async_slot(self):
        """A result slot the I/O thread fills for an asyncio caller (see _LoopBridge)."""
        loop = asyncio.get_running_loop()
        bridge = self._bridges.get(loop)
        if bridge is None:
            bridge = self._bridges[loop] = _LoopBridge(loop)
        return _AsyncSlot(loop.create_future(), bridge)

    def read_stale(self, group: int, query: bytes, node: int | None = None, timeout: float | None = None) -> bytes:
        """A local read of possibly old state (no master, no log): cheap, and named for what it is."""
        return self.read(group, query, "stale", timeout, node)

    async def read_stale_async(self, group: int, query: bytes, node: int | None = None,
                               timeout: float | None = None) -> bytes:
        return await self.read_async(group, query, "stale", timeout, node)

    def _admin(self, op, node, worker, group=None, timeout=5.0):
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def body(req, req_id, remaining_ms, min_epoch):
            return rpc.simple_request(op, req_id, group)

        req = _Request(future, op, group if group is not None else worker, body, time.monotonic() + timeout, node)
        self._submit(req)
        return future

    def status(self, node: int | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Per-worker status dicts of one node (default: every node; unreachable ones are skipped)."""
        self._check_target(0, timeout, node)
        return self._status_of([node] if node is not None else self.nodes, timeout)

    def _status_of(self, nodes, timeout):
        """Per-worker status dicts of these nodes, asked all at once."""
        futures = [(n, w, self._admin(rpc.STATUS, n, w, timeout=timeout)) for n in nodes for w in range(self.workers)]
        out = []
        for n, w, f in futures:
            try:
                out.append(f.result())
            except errors.PaxosError as exc:
                out.append({"node": n, "worker": w, "error": str(exc)})
        return out

    def members(self, timeout: float = 5.0) -> list[int]:
        """The cluster's members now: the ids of the membership table's nodes that were not removed (read
        through the system group's log). Members this client has no address for (nodes that joined after its
        node files were written) become addressable for the calls that name a node (status, group_info, the
        group admin calls), at the table's address and CURVE key; requests that name no node still go to this
        client's own nodes."""
        return self._learn_members(self.membership.table(timeout))

    def admin_nodes(self, timeout: float = 5.0) -> list[int]:
        """The nodes that add_group and remove_group ask when given none: the table's members (`members`), or
        this client's nodes if the table cannot be read (no majority of the system group answers) or is not
        seeded yet (a cluster just started)."""
        try:
            return self.members(timeout) or list(self.nodes)
        except errors.PaxosError:
            return list(self.nodes)

    def _learn_members(self, table: dict[str, Any]) -> list[int]:
        """The ids of `table`'s members (not removed), ascending; an address for each one this client lacks."""
        from .membership import client_endpoints

        members = []
        for row in table["nodes"]:
            if row["role"] == "removed":
                continue
            node = int(row["id"])
            members.append(node)
            if node in self.endpoints:
                continue
            if self._curve_server_keys is not None:
                if row.get("public_key", "-") == "-":
                    continue                    # no key to connect with: calls naming it fail as for any node
                self._curve_server_keys[node] = row["public_key"].encode()
            self.endpoints[node] = client_endpoints(row, self.workers)     # after its key: the I/O thread reads both
        return sorted(members)

    def group_info(self, group: int, node: int, timeout: float = 5.0) -> dict[str, Any]:
        """What `node` holds of `group` (a dict: hosted, incarnation, removed, status, first: the voters the
        incarnation it holds started on, None for the first voters; table: the epoch and voters its membership
        table places the group on)."""
        self._check_target(group, timeout, node)
        if node is None:
            raise ValueError("group_info needs a node")
        return self._admin(rpc.GROUP_INFO, node, None, group, timeout).result()

    @property
    def membership(self) -> Membership:
        """The cluster's members: read the table, add, promote, remove, replace, update (paxos_core/membership.py).
        Changes need the cluster's credentials."""
        from .membership import Membership

        return Membership(self)

    def add_group(self, group: int, nodes: Iterable[int] | None = None, timeout: float = 5.0) -> int:
        """Create `group` on every node, in one incarnation newer than any a node holds or removed. Idempotent.

        The group starts on the voters the newest membership table any node knows places it on (its epoch and
        voters, sent to every node alike; an add that was interrupted finishes on the voters the nodes holding
        the incarnation started it on), so a group added after a majority of the cluster's first voters left
        still has a quorum. Refused (ConfigError) if a node cannot be asked or still hosts an earlier
        incarnation: a group id is never added again where an earlier incarnation may live on (remove it there
        first). An earlier incarnation held only rebuilding, where the newest is held elsewhere (left over on a
        node that lost its data: it holds the groups of its node file again), is replaced by the newest there.
        `nodes` limits the nodes changed (an operator's repair tool; every node of the group should be
        listed); the others are still asked which voters an incarnation they hold started on, and those that
        do not answer within `timeout` are left out of that. Every node: the members of the membership table
        (`admin_nodes`), so a node that joined after this client's node files were written gets the group too,
        and a node removed from the cluster is not asked; the table is read again once the group is added,
        and a member that joined meanwhile gets it as well."""
        targets = self._check_admin(group, nodes, timeout)
        members = self.admin_nodes(timeout) if nodes else targets
        infos = self._group_infos(group, targets, timeout)
        hosted = {n: i["incarnation"] for n, i in infos.items() if i["hosted"]}
        if len(set(hosted.values())) > 1:
            leftovers = self._left_over(group, infos, hosted)
            for f in [self._admin(rpc.REMOVE_GROUP, n, None, group, timeout) for n in leftovers]:
                f.result()
            infos.update(self._group_infos(group, leftovers, timeout))
            hosted = {n: i["incarnation"] for n, i in infos.items() if i["hosted"]}
        if hosted:
            incarnation = next(iter(hosted.values()))
            removed = sorted(n for n, i in infos.items() if i["removed"] >= incarnation)
            if removed:
                raise errors.ConfigError(
                    "group %d: node(s) %s removed incarnation %d, which node(s) %s still host an earlier or equal "
                    "incarnation of; adding it back there would make an acceptor that forgot its votes. Remove "
                    "the group everywhere first" % (group, ", ".join(map(str, removed)), incarnation,
                                                     ", ".join(map(str, sorted(hosted)))))
            if len(hosted) == len(targets):
                return incarnation                               # already everywhere: idempotent
            # else: an add that was interrupted: finish it at the same incarnation
        else:
            incarnation = max(i["removed"] for i in infos.values()) + 1
        # The voters it starts on: those of the nodes already holding the incarnation, the nodes not listed too
        # (asked as well, those that answer: an add to some nodes, then to others, must name the same voters).
        others = [n for n in members if n not in infos]
        if others:
            infos = {**infos, **self._group_infos(group, others, timeout, strict=False)}
        first = _first_of_add(group, incarnation, infos)
        # Held somewhere already (an add interrupted, or a node that lost its data getting the group back), or
        # held perhaps by a node that did not answer: a node that lost its synced state may have held the
        # incarnation too, and rebuilds it before it votes. Only an incarnation no node holds, every node
        # answering, is new.
        join = any(i["incarnation"] == incarnation and (i["hosted"] or i["status"] == "vacated")
                   for i in infos.values()) or any(n not in infos for n in members)
        futures = [self._admin_add(n, group, incarnation, first, join, timeout) for n in targets if n not in hosted]
        for f in futures:
            f.result()
        if not nodes and self._joined_since(targets, timeout):
            # A node joined meanwhile: it holds its node file's groups only, and a `member promote` that ran
            # before any node held this group found nothing missing there. It gets the group now.
            return self.add_group(group, None, timeout)
        return incarnation

    def _joined_since(self, targets, timeout):
        """Whether the table now has a member outside `targets` (False if it cannot be read)."""
        try:
            return any(n not in targets for n in self.members(timeout))
        except errors.PaxosError:
            return False

    def _add_to_learner(self, group: int, node: int, timeout: float) -> int | None:
        """Put `group` on `node`, a learner that lacks it, in the incarnation the other members hold, on the
        voters that incarnation started on: what `member promote` and `replace` do for the groups added while
        the cluster ran (membership.py). Unlike add_group, members that do not answer are left out: `member
        replace` takes the place of a member that is gone for good, and still listed until then. The incarnation
        put there (None if no member that answers holds the group; `node`'s own if it holds it already)."""
        self._check_target(group, timeout, node)
        infos = self._group_infos(group, [n for n in self.admin_nodes(timeout) if n != node], timeout, strict=False)
        held = [i["incarnation"] for i in infos.values() if i["hosted"]]
        mine = self._group_infos(group, [node], timeout)[node]
        if mine["hosted"] or not held:
            return mine["incarnation"] if mine["hosted"] else None
        incarnation = max(held)
        if mine["removed"] >= incarnation:
            raise errors.ConfigError("group %d: node %d removed incarnation %d, which the other members hold; it "
                                     "cannot hold it again" % (group, node, incarnation))
        self._admin_add(node, group, incarnation, _first_of_add(group, incarnation, infos), True, timeout).result()
        return incarnation

    @staticmethod
    def _left_over(group, infos, hosted):
        """The nodes holding an incarnation of `group` older than the newest one held, when each of them holds it
        rebuilding: a node that lost its data holds the groups of its node file again, in their first
        incarnation, and rebuilds them; one removed and added again since cannot rebuild there (the others drop
        the messages of another incarnation). Such a copy votes in nothing and holds nothing yet, so removing it
        loses nothing, and the add then puts the newest incarnation there, where it rebuilds before it votes
        (a join: others hold it). An older copy that votes (a node that kept an incarnation the others removed)
        is refused (ConfigError): its data would go, which only the operator may decide."""
        newest = max(hosted.values())
        older = sorted(n for n, incarnation in hosted.items() if incarnation < newest)
        voting = [n for n in older if infos[n]["status"] != "repairing"]
        if voting:
            raise errors.ConfigError(
                "group %d: nodes host different incarnations of it (%s): node(s) %s hold an earlier one than "
                "incarnation %d and vote in it; if its data may go, remove it there first "
                "(Client.remove_group(%d, nodes=[%s])), then add the group again"
                % (group, hosted, ", ".join(map(str, voting)), newest, group, ", ".join(map(str, voting))))
        return older

    def remove_group(self, group: int, nodes: Iterable[int] | None = None, timeout: float = 5.0) -> None:
        """Delete `group` and its data on every node. Idempotent; two phases: every node is asked first (any
        node that cannot be asked refuses the removal, ConfigError), then every node removes it (a node that
        fails leaves the removal to be run again; the group is added back only once no node holds it). Every
        node: the members of the membership table (`admin_nodes`), as for add_group."""
        targets = self._check_admin(group, nodes, timeout)
        self._group_infos(group, targets, timeout)
        for f in [self._admin(rpc.REMOVE_GROUP, n, None, group, timeout) for n in targets]:
            f.result()

    def _check_admin(self, group, nodes, timeout):
        """The nodes a group admin call goes to (`nodes`, else admin_nodes), once its arguments are checked."""
        if isinstance(group, int) and group >= SYSTEM_GROUP:
            raise errors.ConfigError("group ids %d and above are reserved: %d is the system group (membership), "
                                     "which is never added or removed" % (SYSTEM_GROUP, SYSTEM_GROUP))
        self._check_target(group, timeout, None)        # before the table is read: a refused call reads nothing
        targets = list(nodes) if nodes else self.admin_nodes(timeout)
        for n in targets:
            self._check_target(group, timeout, n)
        return targets

    def _group_infos(self, group, nodes, timeout, strict=True):
        """GROUP_INFO of each node; a node that cannot be asked is a ConfigError, or left out if not `strict`."""
        futures = {n: self._admin(rpc.GROUP_INFO, n, None, group, timeout) for n in nodes}
        infos = {}
        for n, f in futures.items():
            try:
                infos[n] = f.result()
            except errors.PaxosError as exc:
                if strict:
                    raise errors.ConfigError("group %d: node %d cannot be asked (%s); nothing was changed"
                                             % (group, n, exc)) from None
        return infos

    def _admin_add(self, node, group, incarnation, first, join, timeout):
        future: concurrent.futures.Future[None] = concurrent.futures.Future()

        def body(req, req_id, remaining_ms, min_epoch):
            return rpc.add_group_request(req_id, group, incarnation, first, join)

        req = _Request(future, rpc.ADD_GROUP, group, body, time.monotonic() + timeout, node)
        self._submit(req)
        return future

    def on_master_change(self, callback: MasterCallback) -> None:
        """Call `callback(group, master_node, epoch)` once per master change of any group (from the I/O thread).

        Changes that happened before the subscription are not reported."""
        self._callbacks.append(callback)
        for n in self.nodes:
            for w in range(self.workers):
                self._admin(rpc.SUBSCRIBE, n, w)

    # The admin calls' asyncio twins run the blocking call in a thread: they are rare, and each may wait on
    # several nodes in turn.
    async def status_async(self, node: int | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.status, node, timeout)

    async def members_async(self, timeout: float = 5.0) -> list[int]:
        return await asyncio.to_thread(self.members, timeout)

    async def admin_nodes_async(self, timeout: float = 5.0) -> list[int]:
        return await asyncio.to_thread(self.admin_nodes, timeout)

    async def group_info_async(self, group: int, node: int, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.to_thread(self.group_info, group, node, timeout)

    async def add_group_async(self, group: int, nodes: Iterable[int] | None = None, timeout: float = 5.0) -> int:
        return await asyncio.to_thread(self.add_group, group, nodes, timeout)

    async def remove_group_async(self, group: int, nodes: Iterable[int] | None = None,
                                 timeout: float = 5.0) -> None:
        await asyncio.to_thread(self.remove_group, group, nodes, timeout)

    def close(self) -> None:
        """Stop the I/O thread; requests still in flight fail with Timeout ("client closed": their outcome is
        unknown)."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._ctx.term()

    async def close_async(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ I/O thread
    def _submit(self, req):
        if self._closed:
            raise errors.PaxosError("client is closed")
        self._inbox.append(req)
        if self._closed:
            # close() ran meanwhile: its I/O thread fails what it finds in the inbox, but may have looked already.
            try:
                self._inbox.remove(req)
            except ValueError:
                return                    # the I/O thread took it: it ends the request
            raise errors.PaxosError("client is closed")
        # One wake-up per burst, not per request: the I/O thread clears the flag BEFORE it drains the inbox,
        # so a request appended after the drain always finds the flag clear and wakes it again.
        if not self._wake_pending or not _WAKE_COALESCE:
            self._wake_pending = True
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass                      # closed meanwhile: its I/O thread failed the request on its way out

    def _socket(self, node, worker):
        key = (node, worker)
        sock = self._sockets.get(key)
        if sock is None:
            if node not in self.endpoints:
                # Checked before a socket exists: one made and left behind would keep close() waiting for ever.
                raise errors.PaxosError("this client has no address for node %r" % (node,))
            sock = self._ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.sndhwm = 100000
            sock.rcvhwm = 100000
            sock.immediate = True
            if self._curve_server_keys is not None and self._curve_keypair is not None:
                sock.curve_serverkey = self._curve_server_keys[node]
                sock.curve_publickey, sock.curve_secretkey = self._curve_keypair
            sock.connect(self.endpoints[node][worker])
            self._sockets[key] = sock
            self._poller.register(sock, zmq.POLLIN)
        return sock

    def _worker_of(self, req):
        if req.kind in (rpc.STATUS, rpc.SUBSCRIBE):
            return req.group
        return shard_of(req.group, self.workers)

    @staticmethod
    def _routed(req):
        """A request the client may send to any node (proposals, and reads not pinned to one node)."""
        return not req.pinned and req.kind in (rpc.PROPOSE, rpc.PROPOSE_BATCH, rpc.READ)

    def _stopped_nodes(self, group):
        """Nodes that said recently that `group` is stopped there: asked last."""
        stopped = self._stopped_at.get(group)
        if not stopped:
            return ()
        now = time.monotonic()
        for node in [n for n, at in stopped.items() if now - at >= STOPPED_AVOID_SECONDS]:
            del stopped[node]
        if not stopped:
            del self._stopped_at[group]
        return stopped

    def _pick_node(self, req):
        if not self._routed(req):
            return req.node                       # admin requests and pinned reads are for one node only
        # The node asked for, then the last known master, then the preferred node and the rest; a node that
        # said lately that the group is stopped there only when no other is left.
        tried = req.tried
        avoid = self._stopped_nodes(req.group)
        if req.node is not None and req.node not in tried and req.node not in avoid:
            return req.node
        hint = self._master_hint.get(req.group)
        if hint in self.endpoints and hint not in tried and hint not in avoid:
            return hint
        order = [self.prefer] + [n for n in self.nodes if n != self.prefer]
        if all(n in tried for n in order):
            tried.clear()              # every node tried: go round again
        candidates = [n for n in order if n not in tried]
        for n in candidates:
            if n not in avoid:
                return n
        return candidates[0]

    def _send(self, req, node=None):
        """Send one attempt of `req`. An unexpected error here (a bug: arguments are checked in the caller's
        thread) ends this request only, in Timeout, and leaves the I/O thread and every other request alone."""
        try:
            self._send_attempt(req, node)
        except Exception as exc:
            req_id = req.req_id
            if self._pending.get(req_id) is req:
                del self._pending[req_id]
            log.exception("paxos-core client: cannot send a request")
            self._fail_unknown(req, "client error sending the request (%r)" % (exc,))

    def _send_attempt(self, req, node):
        now = time.monotonic()
        remaining = req.deadline - now
        if remaining <= 0:
            self._fail_timeout(req)
            return
        node = node if node is not None else self._pick_node(req)
        req.node = node
        req.req_id = next(self._req_ids)
        req.sent_at = now
        self._pending[req.req_id] = req
        # The wire's timeout is a u32 of ms (a worker caps it further, limits.max_request_timeout_ms); the
        # client keeps its own deadline and tries again after attempt_timeout anyway.
        remaining_ms = min(U32_MAX, max(1, int(remaining * 1000)))
        frame = req.body(req, req.req_id, remaining_ms, self._epoch_hint.get(req.group, 0))
        try:
            self._socket(node, self._worker_of(req)).send(frame, zmq.NOBLOCK)
        except zmq.Again:                 # no connection to that node (yet): try another one soon
            del self._pending[req.req_id]
            if self._routed(req):
                req.tried.add(node)
                req.node = None
            req.retry_at = now + 0.02
            self._retry.append(req)

    def _fail_timeout(self, req):
        exc = self._refused_everywhere(req, final=True)
        if exc is None:
            exc = errors.Timeout("group %s: no answer in time: the outcome is unknown" % req.group)
        self._finish(req, exc=exc)

    def _refused_everywhere(self, req, final=False):
        """The error to raise when every node's latest answer refused the request because of the group, else None.

        All "stopped": GroupStopped; all "no such group": UnknownGroupError. A mix of the two (some nodes may
        just be behind) is raised as GroupStopped only at the deadline (`final`)."""
        if not req.refusals or any(n not in req.refusals for n in self.nodes):
            return None
        statuses = {status for status, _ in req.refusals.values()}
        if len(statuses) > 1 and not final:
            return None
        answers = "; ".join("node %d: %s" % (n, msg) for n, (_, msg) in sorted(req.refusals.items()))
        if statuses == {rpc.UNKNOWN_GROUP}:
            return rpc.UnknownGroupError("group %d is not known to any node (%s)" % (req.group, answers))
        return errors.GroupStopped("group %d is served by no node (%s)" % (req.group, answers))

    def _finish(self, req, value=None, exc=None):
        if req.future.done():
            return
        if exc is not None:
            if req.session is not None:
                if req.retry and not isinstance(exc, (errors.Timeout, errors.CommandError)):
                    # This answer refused (or found stale) one attempt, but an earlier one may have been proposed
                    # and may be applied yet: the outcome is unknown, whatever this attempt was told. Overloaded,
                    # GroupStopped, StaleRequest ... say "nothing was applied": raised here they would be wrong.
                    # (A CommandError is the request's remembered outcome: it was applied, and changed nothing.)
                    exc = self._unknown_after_retry(req, exc)
                exc.request_id = req.session       # the request id to retry with (a batch: its first seq)
            req.future.set_exception(exc)
        else:
            if req.own_session:
                self._return_session(req.group, req.session[0], req.session[1] + req.count)
            req.future.set_result(value)

    @staticmethod
    def _unknown_after_retry(req, refusal):
        """The Timeout a retried request ends in when its last attempt was refused: `refusal` is its cause
        (``__cause__``), and a batch's ``results`` come along."""
        exc = errors.Timeout("group %s: %s: %s after an earlier attempt that may have been applied: the outcome "
                             "is unknown; retry with request_id=%r" % (req.group, type(refusal).__name__, refusal,
                                                                         req.session))
        exc.__cause__ = refusal
        results = getattr(refusal, "results", None)
        if results is not None:
            exc.results = results
        return exc

    def _session_outcome(self, req, results):
        """Finish a proposal whose state-machine results arrived; results that applied nothing for a session
        reason raise (never a success). `results` is [ProposeResult]; one for a single proposal."""
        check = self._session_refusal
        refusals = [check(r.result) for r in results] if check is not None else ()
        if not any(refusals):
            self._finish(req, results[0] if req.kind == rpc.PROPOSE else results)
            return
        if (all(r is errors.SessionExpired for r in refusals) and not req.retry and req.own_session
                and not req.renewed):
            # This attempt was refused whole and no other attempt may have been proposed: nothing of the
            # request can be applied under this session any more, so re-send it under a fresh one.
            req.renewed = True
            req.session = self._fresh_session()
            self._send(req, req.node)
            return
        client_id, seq = req.session
        exc: errors.ProposalError
        if errors.SessionExpired in refusals:
            earlier = ("whether an earlier attempt was applied is unknown" if req.retry
                       else "no earlier attempt was sent by this client")
            exc = errors.SessionExpired(
                "group %d: the session of request (%d, %d) is not known to the group (it expired, or never "
                "started): nothing was applied by this attempt; %s" % (req.group, client_id, seq, earlier))
        else:
            exc = errors.StaleRequest(
                "group %d: the session of request (%d, %d) has applied a newer request: nothing was applied for "
                "this one, and an earlier attempt's result is no longer known" % (req.group, client_id, seq))
        if req.kind == rpc.PROPOSE_BATCH:
            exc.results = results
        self._finish(req, exc=exc)

    def _on_refusal(self, req, status, body):
        """GROUP_STOPPED or UNKNOWN_GROUP from one node: the others may serve the group (that node may have
        stopped it over local damage, or be behind). Nothing was proposed: ask the next node."""
        now = time.monotonic()
        node = req.node
        if req.refusals is None:
            req.refusals = {}
        req.refusals[node] = (status, body.decode("utf-8", "replace"))
        if status == rpc.GROUP_STOPPED:
            self._stopped_at.setdefault(req.group, {})[node] = now
        if self._master_hint.get(req.group) == node:
            del self._master_hint[req.group]
        exc = self._refused_everywhere(req)
        if exc is not None:
            self._finish(req, exc=exc)
            return
        req.tried.add(node)
        req.node = None
        untried = any(n not in req.tried for n in self.nodes)
        req.retry_at = now + (0.0 if untried else ROUND_PAUSE)
        self._retry.append(req)

    def _on_reply(self, frame):
        status, req_id, body = rpc.decode_reply(frame)
        if status == rpc.BATCH:
            for frame in rpc.split_reply_batch(body):
                self._on_reply(frame)
            return
        if status == rpc.EVENT:
            kind, group, master, epoch = rpc.decode_event(body)
            if epoch <= self._events_seen.get(group, 0):
                return            # every node reports the same change: call back once per epoch
            self._events_seen[group] = epoch
            if epoch > self._epoch_hint.get(group, 0):
                self._epoch_hint[group] = epoch
            self._hint_master(group, master)
            for cb in list(self._callbacks):
                try:
                    cb(group, master, epoch)
                except Exception:
                    log.exception("master change callback failed")
            return
        req = self._pending.pop(req_id, None)
        if req is None:
            return            # a late answer to an attempt we gave up on
        try:
            self._on_answer(req, status, body)
        except (rpc.BadRequest, ValueError) as exc:
            # An answer we cannot read (a broken or hostile node): as if that node had not answered.
            log.warning("undecodable reply from node %s dropped: %s", req.node, exc)
            if req.future.done():
                return
            if self._routed(req):
                req.retry = req.kind != rpc.READ
                req.tried.add(req.node)
                req.node = None
                req.retry_at = time.monotonic() + 0.02
                self._retry.append(req)
            else:
                self._fail_unknown(req, "undecodable reply from node %s (%s)" % (req.node, exc))

    def _hint_master(self, group, master):
        """A node named `master` the group's master: the next attempt goes there, if this client has its
        address. A node that joined after the client was made (`member add`) is not one it can reach: kept as
        the hint, every attempt went to it and failed in the client (a KeyError), the request ended unknown,
        and the socket made for it kept close() waiting."""
        if master in self.endpoints:
            self._master_hint[group] = master
        else:
            self._master_hint.pop(group, None)

    def _on_answer(self, req, status, body):
        """The answer to one attempt of `req` (its entry in _pending is gone)."""
        if req.refusals:
            req.refusals.pop(req.node, None)       # that node's latest answer is this one
        if status == rpc.OK:
            if req.kind == rpc.PROPOSE:
                assert req.session is not None, "a proposal has a session"
                self._master_hint[req.group] = req.node
                instance, result = rpc.decode_propose_ok(body)
                answer = ProposeResult(req.group, instance, result, req.session)
                if self._session_refusal is None or self._session_refusal(result) is None:
                    self._finish(req, answer)          # the common case, kept short
                else:
                    self._session_outcome(req, [answer])
            elif req.kind == rpc.PROPOSE_BATCH:
                assert req.session is not None, "a proposal has a session"
                self._master_hint[req.group] = req.node
                client_id, first = req.session
                items = rpc.decode_propose_batch_ok(body)
                self._session_outcome(req, [ProposeResult(req.group, instance, result, (client_id, first + k))
                                            for k, (instance, result) in enumerate(items)])
            elif req.kind in (rpc.STATUS, rpc.GROUP_INFO):
                self._finish(req, json.loads(body))
            else:
                self._finish(req, body if req.kind == rpc.READ else None)
            return
        if status == rpc.NOT_MASTER and self._routed(req):
            # (A stale read pinned to a node too far behind to serve it ends in NotMaster, as documented: it
            # went to the master named, or, with none named, to node None, whose socket lookup raised KeyError
            # and ended the read unknown; nemesis seed 603's clients logged it.)
            master, epoch = rpc.decode_not_master(body)
            if epoch > self._epoch_hint.get(req.group, 0):
                self._epoch_hint[req.group] = epoch
            self._hint_master(req.group, master)
            # Keep following redirects until the request's own deadline: a master that just died is still
            # named by the others until its lease runs out, and a new one is elected soon after. Pause now
            # and then so that a redirect loop between lagging nodes does not spin.
            req.hops += 1
            pause = 0.0 if req.hops % REDIRECT_PAUSE_EVERY else 0.05
            if master and master in self.endpoints and master != req.node and master not in req.tried:
                if pause:
                    req.node = master
                    req.retry_at = time.monotonic() + pause
                    self._retry.append(req)
                else:
                    self._send(req, master)
            else:
                req.tried.add(req.node)
                req.node = None
                req.retry_at = time.monotonic() + max(pause, 0.02)
                self._retry.append(req)
            return
        if status in _REFUSALS and self._routed(req):
            self._on_refusal(req, status, body)
            return
        try:
            rpc.raise_for(status, body, req.session)
        except errors.PaxosError as exc:
            self._finish(req, exc=exc)

    def _io_loop(self):
        """The I/O thread. An unexpected error fails the requests in flight (instead of leaving their
        callers waiting forever), is logged, and the loop carries on."""
        self._poller = zmq.Poller()
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._retry: list[_Request] = []
        while True:
            try:
                self._io_loop_body()
                return
            except Exception as exc:         # a bug: never leave callers hanging
                log.exception("paxos-core client I/O thread error; the requests in flight end in Timeout")
                failed = list(self._pending.values()) + self._retry
                self._pending.clear()
                self._retry = []
                for req in failed:
                    self._fail_unknown(req, "client I/O error (%r)" % (exc,))
                if self._closed:
                    return

    def _fail_unknown(self, req, why):
        """End `req` with Timeout: whatever went wrong in this process, the request may have been proposed by
        an earlier attempt, so its outcome is unknown (only a Timeout says that)."""
        if req.future.done():
            return
        exc = errors.Timeout("%s: the outcome of the request is unknown" % why)
        exc.request_id = req.session
        req.future.set_exception(exc)

    def _io_loop_body(self):
        last_scan = 0.0
        while not self._closed:
            events = dict(self._poller.poll(10))
            self._wake_pending = False
            if self._wake_r in events:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            while self._inbox:
                self._send(self._inbox.popleft())
            for sock, _ in events.items():
                if sock == self._wake_r:          # an int fd: compare by value (`is` fails above 256)
                    continue
                while True:
                    try:
                        frame = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    try:
                        self._on_reply(frame)
                    except rpc.BadRequest:
                        log.warning("undecodable reply dropped")
            now = time.monotonic()
            if self._retry:
                due = [r for r in self._retry if r.retry_at <= now]
                self._retry = [r for r in self._retry if r.retry_at > now]
                for req in due:
                    self._send(req)
            if now - last_scan >= 0.01:
                last_scan = now
                for req_id, req in list(self._pending.items()):
                    if now >= req.deadline:
                        del self._pending[req_id]
                        self._fail_timeout(req)
                    elif now - req.sent_at >= self.attempt_timeout and self._routed(req):
                        del self._pending[req_id]        # that node is silent: try another
                        if self._master_hint.get(req.group) == req.node:
                            del self._master_hint[req.group]
                        # It may have proposed the request, or still may: every later attempt is a retry.
                        req.retry = req.kind != rpc.READ
                        if req.refusals:
                            req.refusals.pop(req.node, None)
                        req.tried.add(req.node)
                        req.node = None
                        self._send(req)
        for req in list(self._pending.values()) + self._retry + list(self._inbox):
            self._fail_unknown(req, "client closed")
        for sock in self._sockets.values():
            sock.close(0)

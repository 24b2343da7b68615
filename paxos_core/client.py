"""The client side of the facade: talks to the workers' client sockets of any node.

One background I/O thread owns every ZeroMQ socket; callers (any thread, or asyncio) submit requests; the
blocking API waits on ``concurrent.futures.Future`` objects, the asyncio API on loop futures that the I/O
thread completes in bursts (one wake-up of the loop per burst), so both share one implementation.

What the client does for you:
  * sends a request to the worker that hosts its group (`group % workers`) on a preferred node;
  * follows NotMaster redirects to the group's master (a few hops at most);
  * when a node does not answer within `attempt_timeout`, or answers "no master yet", tries another node;
  * gives every proposal a request id (session id, sequence number) so that a retry - its own or yours - is
    applied at most once (the state machine remembers each session's latest result).

A Timeout means the OUTCOME IS UNKNOWN. The exception carries ``request_id``; pass it back as
``propose(..., request_id=...)`` to retry the same request: it is applied at most once.
"""
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

import zmq

from . import errors
from .runtime import rpc

log = logging.getLogger("paxos_core.client")

REDIRECT_PAUSE_EVERY = 4         # after this many redirects in a row, wait a little before following more
# PAXOS_CORE_CLIENT_LOOP_BRIDGE=0 completes asyncio callers with asyncio.wrap_future, one loop wake-up per
# result (kept to measure what the bridge gains).
_LOOP_BRIDGE = os.environ.get("PAXOS_CORE_CLIENT_LOOP_BRIDGE", "1") != "0"
# PAXOS_CORE_CLIENT_WAKE_COALESCE=0 writes a wake-up byte to the I/O thread for every request (kept to measure
# the difference).
_WAKE_COALESCE = os.environ.get("PAXOS_CORE_CLIENT_WAKE_COALESCE", "1") != "0"


@dataclass(frozen=True)
class ProposeResult:
    """A chosen and applied proposal: its log position, the state machine's result, the request id."""
    group: int
    instance: int
    result: bytes
    request_id: tuple


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
                 "session", "own_session", "retry_at", "pinned")

    def __init__(self, future, kind, group, body, deadline, node):
        self.future = future
        self.kind = kind
        self.group = group
        self.body = body            # function (req_id, remaining_ms) -> request frame
        self.deadline = deadline
        self.node = node
        self.tried = set()
        self.req_id = 0
        self.sent_at = 0.0
        self.hops = 0
        self.session = None
        self.own_session = False    # session taken from this client's pool (returned to it on success)
        self.pinned = False         # only ever sent to `node` (a stale read of that node)
        self.retry_at = 0.0


class Client:
    """A connection to a paxos-core cluster. Thread-safe; usable from asyncio too. Close it when done."""

    def __init__(self, endpoints, workers, groups=None, prefer=None, default_timeout=5.0, attempt_timeout=1.0):
        """`endpoints`: {node id: [client endpoint of worker 0, worker 1, ...]}."""
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
        self._ctx = zmq.Context()
        self._sockets = {}
        self._inbox = collections.deque()
        self._wake_pending = False        # a wake-up byte is on its way to the I/O thread: no need for another
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._pending = {}
        self._req_ids = itertools.count(1)
        self._sessions = {}                # group -> [(client id, next seq)] free sessions
        self._master_hint = {}             # group -> node that last served it as master (I/O thread only)
        self._epoch_hint = {}              # group -> highest master epoch a node told us of (I/O thread only)
        self._events_seen = {}             # group -> epoch of the last master change reported to callbacks
        self._lock = threading.Lock()
        self._callbacks = []
        self._bridges = weakref.WeakKeyDictionary()     # asyncio loop -> _LoopBridge
        self._subscribed = set()
        self._closed = False
        self._thread = threading.Thread(target=self._io_loop, name="paxos-client-io", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_config(cls, config, prefer=None, **kw):
        endpoints = {n.id: [n.client_endpoint(w) for w in range(config.workers)] for n in config.nodes}
        return cls(endpoints, config.workers, config.groups, prefer=prefer or config.node_id, **kw)

    @classmethod
    def from_cluster_dir(cls, directory, **kw):
        from .config import load_cluster

        configs = load_cluster(directory)
        return cls.from_config(configs[0], prefer=configs[0].node_id, **kw)

    # ------------------------------------------------------------------ sessions (exactly-once)
    def _take_session(self, group):
        with self._lock:
            free = self._sessions.get(group)
            if free:
                return free.pop()
        return (secrets.randbits(63) | 1, 1)

    def _return_session(self, group, client_id, seq):
        with self._lock:
            self._sessions.setdefault(group, []).append((client_id, seq + 1))

    # ------------------------------------------------------------------ public API
    def propose_future(self, group, op, timeout=None, request_id=None, node=None, _future=None):
        """Submit a proposal; a Future of ProposeResult."""
        timeout = self.default_timeout if timeout is None else timeout
        client_id, seq = request_id if request_id is not None else self._take_session(group)
        future = _future or concurrent.futures.Future()

        def body(req_id, remaining_ms, min_epoch):
            return rpc.propose_request(req_id, group, remaining_ms, client_id, seq, op, min_epoch)

        req = _Request(future, rpc.PROPOSE, group, body, time.monotonic() + timeout, node)
        req.session = (client_id, seq)
        # Only a session this client handed out goes back to its pool: a request id of the caller's own (a
        # retry) is the caller's to manage, and pooling it would let two requests share one (client id, seq).
        req.own_session = request_id is None
        self._submit(req)
        return future

    def propose_batch_future(self, group, ops, timeout=None, request_id=None, node=None, _future=None):
        """Submit many operations of one group in one request; a Future of [ProposeResult] in order.

        The operations share one session with consecutive sequence numbers (`request_id` names the first),
        so a retry of the whole batch applies each at most once; an operation that an earlier attempt had
        already applied comes back with the state machine's "stale" result instead of its first result.
        """
        ops = list(ops)
        timeout = self.default_timeout if timeout is None else timeout
        client_id, first = request_id if request_id is not None else self._take_session(group)
        future = _future or concurrent.futures.Future()

        def body(req_id, remaining_ms, min_epoch):
            return rpc.propose_batch_request(req_id, group, remaining_ms, client_id, first, ops, min_epoch)

        req = _Request(future, rpc.PROPOSE_BATCH, group, body, time.monotonic() + timeout, node)
        req.session = (client_id, first + max(len(ops), 1) - 1)
        req.own_session = request_id is None
        self._submit(req)
        return future

    def propose_batch(self, group, ops, timeout=None, request_id=None, node=None):
        """Propose many operations to one group in one request (they may share Paxos instances)."""
        return self.propose_batch_future(group, ops, timeout, request_id, node).result()

    async def propose_batch_async(self, group, ops, timeout=None, request_id=None, node=None):
        return await self._await(self.propose_batch_future, group, ops, timeout, request_id, node)

    def propose(self, group, op, timeout=None, request_id=None, node=None):
        """Propose `op` to `group`; blocks until it is chosen and applied. Returns ProposeResult."""
        return self.propose_future(group, op, timeout, request_id, node).result()

    async def propose_async(self, group, op, timeout=None, request_id=None, node=None):
        return await self._await(self.propose_future, group, op, timeout, request_id, node)

    def read_future(self, group, query, mode="lease", timeout=None, node=None, _future=None):
        """A stale read with `node` given reads that node only (its state is what was asked for)."""
        if mode not in rpc.READ_MODES:
            raise ValueError("read mode must be one of %s, got %r" % (", ".join(rpc.READ_MODES), mode))
        timeout = self.default_timeout if timeout is None else timeout
        code = rpc.READ_MODES[mode]
        future = _future or concurrent.futures.Future()

        def body(req_id, remaining_ms, min_epoch):
            return rpc.read_request(req_id, group, code, remaining_ms, query, min_epoch)

        req = _Request(future, rpc.READ, group, body, time.monotonic() + timeout, node)
        req.pinned = mode == "stale" and node is not None
        self._submit(req)
        return future

    def read(self, group, query, mode="lease", timeout=None, node=None):
        """Read through the group's state machine.

        mode "lease": answered by the master from its state while its lease holds (no log round);
        "linearizable": a read barrier goes through the log first; "stale": this node's state, maybe old.
        """
        return self.read_future(group, query, mode, timeout, node).result()

    async def read_async(self, group, query, mode="lease", timeout=None, node=None):
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

    def read_stale(self, group, query, node=None, timeout=None):
        """A local read of possibly old state (no master, no log): cheap, and named for what it is."""
        return self.read(group, query, "stale", timeout, node)

    def _admin(self, op, node, worker, group=None, timeout=5.0):
        future = concurrent.futures.Future()

        def body(req_id, remaining_ms, min_epoch):
            return rpc.simple_request(op, req_id, group)

        req = _Request(future, op, group if group is not None else worker, body, time.monotonic() + timeout, node)
        self._submit(req)
        return future

    def status(self, node=None, timeout=5.0):
        """Per-worker status dicts of one node (default: every node; unreachable ones are skipped)."""
        nodes = [node] if node is not None else self.nodes
        futures = [(n, w, self._admin(rpc.STATUS, n, w, timeout=timeout)) for n in nodes for w in range(self.workers)]
        out = []
        for n, w, f in futures:
            try:
                out.append(f.result())
            except errors.PaxosError as exc:
                out.append({"node": n, "worker": w, "error": str(exc)})
        return out

    def add_group(self, group, nodes=None, timeout=5.0):
        """Create `group` on every node (or the given ones). Idempotent."""
        targets = nodes or self.nodes
        for f in [self._admin(rpc.ADD_GROUP, n, None, group, timeout) for n in targets]:
            f.result()

    def remove_group(self, group, nodes=None, timeout=5.0):
        """Delete `group` and its data on every node (or the given ones). Idempotent."""
        targets = nodes or self.nodes
        for f in [self._admin(rpc.REMOVE_GROUP, n, None, group, timeout) for n in targets]:
            f.result()

    def on_master_change(self, callback):
        """Call `callback(group, master_node, epoch)` once per master change of any group (from the I/O thread).

        Changes that happened before the subscription are not reported."""
        self._callbacks.append(callback)
        for n in self.nodes:
            for w in range(self.workers):
                self._admin(rpc.SUBSCRIBE, n, w)

    def close(self):
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ I/O thread
    def _submit(self, req):
        if self._closed:
            raise errors.PaxosError("client is closed")
        self._inbox.append(req)
        # One wake-up per burst, not per request: the I/O thread clears the flag BEFORE it drains the inbox,
        # so a request appended after the drain always finds the flag clear and wakes it again.
        if not self._wake_pending or not _WAKE_COALESCE:
            self._wake_pending = True
            os.write(self._wake_w, b"x")

    def _socket(self, node, worker):
        key = (node, worker)
        sock = self._sockets.get(key)
        if sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.sndhwm = 100000
            sock.rcvhwm = 100000
            sock.immediate = True
            sock.connect(self.endpoints[node][worker])
            self._sockets[key] = sock
            self._poller.register(sock, zmq.POLLIN)
        return sock

    def _worker_of(self, req):
        if req.kind in (rpc.STATUS, rpc.SUBSCRIBE):
            return req.group
        return req.group % self.workers

    def _pick_node(self, req):
        if req.pinned or req.kind not in (rpc.PROPOSE, rpc.PROPOSE_BATCH, rpc.READ):
            return req.node                       # admin requests and pinned reads are for one node only
        if req.node is not None and req.node not in req.tried:
            return req.node
        hint = self._master_hint.get(req.group)
        if hint is not None and hint not in req.tried:
            return hint
        order = [self.prefer] + [n for n in self.nodes if n != self.prefer]
        for n in order:
            if n not in req.tried:
                return n
        req.tried.clear()          # every node tried: go round again
        return order[0]

    def _send(self, req, node=None):
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
        frame = req.body(req.req_id, max(1, int(remaining * 1000)), self._epoch_hint.get(req.group, 0))
        try:
            self._socket(node, self._worker_of(req)).send(frame, zmq.NOBLOCK)
        except zmq.Again:                 # no connection to that node (yet): try another one soon
            del self._pending[req.req_id]
            if req.kind in (rpc.PROPOSE, rpc.PROPOSE_BATCH, rpc.READ) and not req.pinned:
                req.tried.add(node)
                req.node = None
            req.retry_at = now + 0.02
            self._retry.append(req)

    def _fail_timeout(self, req):
        exc = errors.Timeout("group %s: no answer in time: the outcome is unknown" % req.group)
        exc.request_id = req.session
        if not req.future.done():
            req.future.set_exception(exc)

    def _finish(self, req, value=None, exc=None):
        if req.future.done():
            return
        if exc is not None:
            if isinstance(exc, errors.Timeout):
                exc.request_id = req.session
            req.future.set_exception(exc)
        else:
            if req.own_session:
                self._return_session(req.group, *req.session)
            req.future.set_result(value)

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
            self._master_hint[group] = master
            for cb in list(self._callbacks):
                try:
                    cb(group, master, epoch)
                except Exception:
                    log.exception("master change callback failed")
            return
        req = self._pending.pop(req_id, None)
        if req is None:
            return            # a late answer to an attempt we gave up on
        if status == rpc.OK:
            if req.kind == rpc.PROPOSE:
                self._master_hint[req.group] = req.node
                instance, result = rpc.decode_propose_ok(body)
                self._finish(req, ProposeResult(req.group, instance, result, req.session))
            elif req.kind == rpc.PROPOSE_BATCH:
                self._master_hint[req.group] = req.node
                client_id, last = req.session
                items = rpc.decode_propose_batch_ok(body)
                first = last - len(items) + 1
                self._finish(req, [ProposeResult(req.group, instance, result, (client_id, first + k))
                                   for k, (instance, result) in enumerate(items)])
            elif req.kind == rpc.STATUS:
                self._finish(req, json.loads(body))
            else:
                self._finish(req, body if req.kind == rpc.READ else None)
            return
        if status == rpc.NOT_MASTER and req.kind in (rpc.PROPOSE, rpc.PROPOSE_BATCH, rpc.READ):
            master, epoch = rpc.decode_not_master(body)
            if epoch > self._epoch_hint.get(req.group, 0):
                self._epoch_hint[req.group] = epoch
            if master:
                self._master_hint[req.group] = master
            else:
                self._master_hint.pop(req.group, None)
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
        try:
            rpc.raise_for(status, body, req.session)
        except errors.PaxosError as exc:
            self._finish(req, exc=exc)

    def _io_loop(self):
        """The I/O thread. An unexpected error fails the requests in flight (instead of leaving their
        callers waiting forever), is logged, and the loop carries on."""
        self._poller = zmq.Poller()
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._retry = []
        while True:
            try:
                self._io_loop_body()
                return
            except Exception as exc:         # a bug: never leave callers hanging
                log.exception("paxos-core client I/O thread error; failing the requests in flight")
                failed = list(self._pending.values()) + self._retry
                self._pending.clear()
                self._retry = []
                for req in failed:
                    if not req.future.done():
                        req.future.set_exception(errors.PaxosError("client I/O error: %r" % (exc,)))
                if self._closed:
                    return

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
                    elif (now - req.sent_at >= self.attempt_timeout and not req.pinned
                          and req.kind in (rpc.PROPOSE, rpc.PROPOSE_BATCH, rpc.READ)):
                        del self._pending[req_id]        # that node is silent: try another
                        if self._master_hint.get(req.group) == req.node:
                            del self._master_hint[req.group]
                        req.tried.add(req.node)
                        req.node = None
                        self._send(req)
        for req in list(self._pending.values()) + self._retry + list(self._inbox):
            if not req.future.done():
                req.future.set_exception(errors.PaxosError("client closed"))
        for sock in self._sockets.values():
            sock.close(0)

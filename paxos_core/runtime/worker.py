"""A worker process: the groups `g % workers == i` of one node, one event loop, one log.

Each turn of the loop:
  1. poll ZeroMQ (peer frames and client requests), at most until the next tick;
  2. step the engine with every message and request (any number of groups);
  3-5. one effect cycle (runtime/cycle.py): send what may leave early, ONE synced write of every group's
     records, send what had to wait, tell the engine;
  6. apply the chosen values (state machine and master table, one store batch) and answer the clients.

Client requests reach the master of their group: a worker that is master (by the log) proposes client
commands stamped with its epoch; one that knows another live master answers NotMaster with a redirect (the
facade follows it); one that knows none claims mastership and holds the request until the claim is decided.
"""
import gc
import json
import logging
import os
import random
import signal
import time

import numpy as np
import zmq

from ..config import NodeConfig, load_config
from ..core.engine import GROUP_STOPPED, Engine
from ..errors import GroupStopped, ValueTooLarge
from ..replica import envelope
from ..replica.applier import APPLIED, BARRIER, CLAIMED, FENCED, Applier
from ..replica.master import MasterTable
from ..replica.staged import StagedStore
from ..statemachine.kv import KVStateMachine
from ..statemachine.store import RocksStore
from ..storage.log import RocksLog
from . import rpc
from .cycle import run_cycle
from .metrics import BATCH_BUCKETS, LATENCY_BUCKETS, Histogram, WorkerCollector
from .transport import PeerTransport

log = logging.getLogger("paxos_core.worker")

SLOW_WRITE_SECONDS = 0.1             # a synced write this long is counted and reported
GROUPS_KEY_PREFIX = b"\xffG"          # in the state machine's column family: groups added (+) / removed (-)


class Request:
    __slots__ = ("identity", "req_id", "op", "group", "deadline", "started", "client_id", "request_seq", "payload",
                 "mode", "seq", "min_epoch", "batch", "index", "ops", "proposed_tick")

    def __init__(self, identity, req_id, op, group, deadline, started):
        self.identity = identity
        self.req_id = req_id
        self.op = op
        self.group = group
        self.deadline = deadline
        self.started = started
        self.seq = None
        self.min_epoch = 0
        self.batch = None          # the Batch this request is one operation of, or None
        self.index = 0
        self.ops = None            # a PROPOSE_BATCH proposed as one CLIENT_BATCH entry: its operations
        self.proposed_tick = 0


class Batch:
    """A PROPOSE_BATCH request: its operations are proposed one by one and answered together."""

    __slots__ = ("identity", "req_id", "results", "remaining", "done")

    def __init__(self, identity, req_id, count):
        self.identity = identity
        self.req_id = req_id
        self.results = [None] * count
        self.remaining = count
        self.done = False


class Worker:
    def __init__(self, config, index, state_machine_factory=None):
        self.config = config
        self.index = index
        self.node_id = config.node_id
        self.workers = config.workers
        self.stopping = False
        self.parent = os.getppid()
        self.ticks = 0
        self.stats = {"proposals": 0, "timeouts": 0, "overloaded": 0, "requests": 0}
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.write_seconds = Histogram(LATENCY_BUCKETS)     # each cycle's synced write
        self.unloaded = False         # the state machine's groups were unloaded when the worker went idle
        self.slow_writes = 0
        self.slow_write_warned = -1e9
        self.ctx = zmq.Context()
        os.makedirs(config.worker_data_dir(index), exist_ok=True)
        self.log = RocksLog(str(config.worker_data_dir(index)), config.node_id, config.cluster_id, config.durability)
        self.store = StagedStore(RocksStore(self.log.rdict, "sm"))
        self.sm = (state_machine_factory or KVStateMachine)(self.store)
        self._open_groups()
        self.transport = PeerTransport(self.ctx, config, index)
        self.client = self.ctx.socket(zmq.ROUTER)
        self.client.linger = 0
        self.client.rcvhwm = config.max_pending
        self.client.sndhwm = config.max_pending
        self.client.bind(config.me.client_endpoint(index))
        self.subscribers = set()
        # Replies of one loop turn are sent as one frame per client (rpc.BATCH); PAXOS_CORE_COALESCE_REPLIES=0
        # sends every reply on its own (kept to measure what coalescing gains).
        self.coalesce = os.environ.get("PAXOS_CORE_COALESCE_REPLIES", "1") != "0"
        # A PROPOSE_BATCH becomes ONE proposal (a CLIENT_BATCH entry) when it fits in a value;
        # PAXOS_CORE_BATCH_ENVELOPE=0 proposes its operations one by one (kept to measure the difference).
        self.batch_envelope = os.environ.get("PAXOS_CORE_BATCH_ENVELOPE", "1") != "0"
        self.outbox = {}
        self.waiting = {}                 # (group, engine seq) -> Request
        self.parked = {}                  # group -> [Request] waiting for a master
        self.next_expiry_scan = 0         # tick of the next scan for requests past their deadline
        self.metrics_server = None
        address = config.me.metrics_address(index)
        if address:
            self._start_metrics(address)
        log.info("node %d worker %d up: %d groups, log %s", self.node_id, index, self.group_count(),
                 config.worker_data_dir(index))

    # ------------------------------------------------------------------ start-up
    def slot_of(self, group):
        return (group - self.index) // self.workers

    def _open_groups(self):
        cfg = self.config
        hosted = set(cfg.worker_groups(self.index))
        for key, value in self.store.scan(GROUPS_KEY_PREFIX):
            group = int.from_bytes(key[2:6], "big")
            if value == b"+":
                hosted.add(group)
            else:
                hosted.discard(group)
        # From here on the engine is the one record of which groups this worker hosts (a status per slot in
        # an array: no Python set of every group id).
        core = cfg.core_config(self.index)
        self.engine = Engine(core, random.Random(int.from_bytes(os.urandom(8), "little")))
        for group in self.engine.groups():
            if group not in hosted:
                self.engine.remove_group(group)
        for group in sorted(hosted):
            self.engine.add_group(group)
        recovery = self.log.recover()
        if recovery.corrupt_records:
            log.error("node %d worker %d: %d damaged records found at start: %s", self.node_id, self.index,
                      recovery.corrupt_records, recovery.problems()[:10])
        for group, state in recovery.groups.items():
            if group in hosted:
                self.engine.restore_group(group, state)
        self.masters = MasterTable(self.node_id, self.engine.n_slots, cfg.lease_ticks, cfg.lease_margin,
                                   nonce_base=int.from_bytes(os.urandom(6), "little") << 16)
        # slot -> tick of the last lease read. Writes renew the master's lease by being applied, so only groups
        # being read need renewal claims. PAXOS_CORE_RENEW_ON_WRITE=1 also claims for busy written groups (the
        # old behaviour, kept to measure the difference: an extra instance per write on sparse groups).
        self.recent_reads = {}
        self.renew_on_write = os.environ.get("PAXOS_CORE_RENEW_ON_WRITE", "0") == "1"
        # After a restart this node may be behind on groups that nobody writes to any more: ask peers for what
        # we miss, a few groups per tick, in a few passes (the first may go out before the connections to the
        # peers are up). A restart costs a few small messages per group, not a timer.
        self.catchup_passes = [50, 300, 1500] if recovery.groups else []
        self.catchup_queue = []
        self.applier = Applier(self.node_id, self.sm, self.masters, self.store, self.slot_of)
        replayed = 0
        for group in sorted(hosted):
            self.applier.restore(group, 0)
            start = self.sm.applied_next(group)
            end = self.engine.learned(group)[0]
            if start < end:
                entries = self.log.read_chosen(group, start, end)
                self.applier.apply([(group, i, v) for i, _, v in entries], 0)
                replayed += len(entries)
        self.sm.flush()
        self.store.commit()
        if replayed:
            log.info("node %d worker %d replayed %d chosen instances into the state machine", self.node_id,
                     self.index, replayed)

    def _start_metrics(self, address):
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        registry.register(WorkerCollector(self))
        try:
            self.metrics_server = start_http_server(address[1], addr=address[0], registry=registry)
        except OSError as exc:
            log.error("metrics endpoint %s:%d not started: %s", address[0], address[1], exc)

    # ------------------------------------------------------------------ the loop
    def run(self):
        tick_s = self.config.tick_ms / 1000.0
        next_tick = time.monotonic() + tick_s
        poller = zmq.Poller()
        poller.register(self.transport.pull, zmq.POLLIN)
        poller.register(self.client, zmq.POLLIN)
        while not self.stopping:
            if self.engine.has_effects():
                timeout = 0
            elif self._idle():
                timeout = 1000.0
                if not self.unloaded:
                    self.sm.unload_all()         # idle groups keep no Python objects of the state machine
                    self.unloaded = True
            else:
                timeout = max(0.0, (next_tick - time.monotonic()) * 1000.0)
                self.unloaded = False
            poller.poll(timeout)
            messages = self.transport.receive()
            if messages:
                self.engine.receive(messages)
            self._client_requests()
            now = time.monotonic()
            if now >= next_tick:
                elapsed = int((now - next_tick) / tick_s) + 1
                self.ticks += elapsed
                next_tick += elapsed * tick_s
                self.engine.tick(self.ticks)
                self._on_tick()
            self._cycle()
            if self.outbox:
                self._flush_replies()
        self.close()

    def _cycle(self):
        fx = run_cycle(self.engine, self.log, self.transport.send)
        if fx.records:
            self._observe_write(self.log.last_write_seconds)
        if fx.chosen:
            outcomes, changes = self.applier.apply(fx.chosen, self.ticks)
            self.sm.flush()
            self.store.commit()
            observe = self.batch_sizes.observe
            for _, _, value in fx.chosen:
                observe(int.from_bytes(value[1:5], "little") if len(value) >= 5 else 0)
            for change in changes:
                self._master_changed(*change)
            for group, seq, kind, data, instance in outcomes:
                self._outcome(group, seq, kind, data, instance)
        for tag, group, reason in fx.expired:
            if isinstance(tag, Request) and self.waiting.pop((group, tag.seq), None) is tag:
                self._reply_error(tag, rpc.TIMEOUT, "not chosen in time (%s): the outcome is unknown" % reason)
        for group, reason in fx.stopped:
            log.error("node %d worker %d: group %d stopped: %s", self.node_id, self.index, group, reason)
            for req in self.parked.pop(group, []):
                self._reply_error(req, rpc.GROUP_STOPPED, reason)

    def _observe_write(self, seconds):
        """A synced write that takes long holds up every reply of the worker: count it, and say so (at most
        once a minute), since the cause is the disk, not paxos-core."""
        self.write_seconds.observe(seconds)
        if seconds >= SLOW_WRITE_SECONDS:
            self.slow_writes += 1
            now = time.monotonic()
            if now - self.slow_write_warned >= 60.0:
                self.slow_write_warned = now
                log.warning("node %d worker %d: a synced write of the log took %.0f ms (%d such writes so far); "
                            "every reply of this worker waited for it. The disk's fsync latency bounds the "
                            "latency of paxos-core (see `paxos-core bench fsync`).",
                            self.node_id, self.index, seconds * 1e3, self.slow_writes)

    # ------------------------------------------------------------------ client requests
    def _client_requests(self, limit=10000):
        sock = self.client
        for _ in range(limit):
            try:
                identity, frame = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                continue
            self.stats["requests"] += 1
            try:
                request = rpc.decode_request(frame)
            except rpc.BadRequest as exc:
                self._send(identity, rpc.error_reply(rpc.BAD_REQUEST, 0, str(exc)))
                continue
            op, req_id = request[0], request[1]
            if op == rpc.PROPOSE:
                self._on_propose(identity, req_id, *request[2:])
            elif op == rpc.PROPOSE_BATCH:
                self._on_propose_batch(identity, req_id, *request[2:])
            elif op == rpc.READ:
                self._on_read(identity, req_id, *request[2:])
            elif op == rpc.STATUS:
                self._send(identity, rpc.reply(rpc.OK, req_id, json.dumps(self.status()).encode()))
            elif op == rpc.ADD_GROUP:
                self._on_add_group(identity, req_id, request[2])
            elif op == rpc.REMOVE_GROUP:
                self._on_remove_group(identity, req_id, request[2])
            elif op == rpc.SUBSCRIBE:
                self.subscribers.add(identity)
                self._send(identity, rpc.reply(rpc.OK, req_id))

    def _new_request(self, identity, req_id, op, group, timeout_ms):
        ticks = max(1, -(-int(timeout_ms) // self.config.tick_ms)) if timeout_ms else self.config.proposal_timeout_ticks
        req = Request(identity, req_id, op, group, self.ticks + ticks, time.monotonic())
        return req

    def _check_group(self, identity, req_id, group):
        if not self.engine.hosts(group):
            worker = group % self.workers
            where = "" if worker == self.index else " (group %d lives on worker %d)" % (group, worker)
            self._send(identity, rpc.error_reply(rpc.UNKNOWN_GROUP, req_id, "no group %d here%s" % (group, where)))
            return False
        if self.engine.group_status(group) == GROUP_STOPPED:
            self._send(identity, rpc.error_reply(rpc.GROUP_STOPPED, req_id, "group %d is stopped: %s"
                                                 % (group, self.engine.stop_reasons.get(group))))
            return False
        return True

    def pending_count(self):
        return len(self.waiting) + sum(len(v) for v in self.parked.values())

    def _on_propose(self, identity, req_id, group, timeout_ms, client_id, request_seq, min_epoch, op):
        if not self._check_group(identity, req_id, group):
            return
        if len(op) > self.config.max_value_bytes:
            self._send(identity, rpc.error_reply(rpc.VALUE_TOO_LARGE, req_id, "value of %d bytes exceeds "
                                                 "max_value_bytes=%d" % (len(op), self.config.max_value_bytes)))
            return
        if self.pending_count() >= self.config.max_pending:
            self.stats["overloaded"] += 1
            self._send(identity, rpc.error_reply(rpc.OVERLOADED, req_id, "worker has %d requests pending"
                                                 % self.pending_count()))
            return
        req = self._new_request(identity, req_id, rpc.PROPOSE, group, timeout_ms)
        req.client_id, req.request_seq, req.payload, req.min_epoch = client_id, request_seq, op, min_epoch
        self._route(req)

    def _on_propose_batch(self, identity, req_id, group, timeout_ms, client_id, first_seq, min_epoch, ops):
        if not self._check_group(identity, req_id, group):
            return
        too_big = [len(op) for op in ops if len(op) > self.config.max_value_bytes]
        if too_big:
            self._send(identity, rpc.error_reply(rpc.VALUE_TOO_LARGE, req_id, "value of %d bytes exceeds "
                                                 "max_value_bytes=%d" % (too_big[0], self.config.max_value_bytes)))
            return
        if not ops:
            self._send(identity, rpc.propose_batch_ok(req_id, []))
            return
        if self.pending_count() + len(ops) > self.config.max_pending:
            self.stats["overloaded"] += len(ops)
            self._send(identity, rpc.error_reply(rpc.OVERLOADED, req_id, "worker has %d requests pending"
                                                 % self.pending_count()))
            return
        if self.batch_envelope and sum(len(op) + 4 for op in ops) + 64 <= self.config.max_value_bytes:
            req = self._new_request(identity, req_id, rpc.PROPOSE_BATCH, group, timeout_ms)
            req.client_id, req.request_seq, req.ops, req.min_epoch = client_id, first_seq, ops, min_epoch
            self._route(req)
            return
        batch = Batch(identity, req_id, len(ops))
        first = self._new_request(identity, req_id, rpc.PROPOSE, group, timeout_ms)
        for k, op in enumerate(ops):
            req = first if k == 0 else Request(identity, req_id, rpc.PROPOSE, group, first.deadline, first.started)
            req.client_id, req.request_seq, req.payload, req.min_epoch = client_id, first_seq + k, op, min_epoch
            req.batch, req.index = batch, k
            self._route(req)

    def _on_read(self, identity, req_id, group, mode, timeout_ms, min_epoch, query):
        if not self._check_group(identity, req_id, group):
            return
        if mode == rpc.READ_STALE:
            self._send(identity, rpc.reply(rpc.OK, req_id, self.sm.read(group, query)))
            return
        req = self._new_request(identity, req_id, rpc.READ, group, timeout_ms)
        req.mode, req.payload, req.min_epoch = mode, query, min_epoch
        if mode == rpc.READ_LINEARIZABLE:
            self._propose_entry(req, envelope.barrier())
        else:
            self._route(req)

    def _route(self, req):
        """Send a proposal or lease read where it can be served: here, to the master, or wait for one."""
        slot = self.slot_of(req.group)
        renews = req.op == rpc.READ or self.renew_on_write
        if renews:
            self.recent_reads[slot] = self.ticks
        masters = self.masters
        if req.min_epoch > masters.epoch[slot]:
            # The client was told of a newer master than we know: we are behind. Catch up first.
            self.parked.setdefault(req.group, []).append(req)
            self.engine.poke(req.group)
            return
        if masters.is_master(slot) and (req.op != rpc.READ or masters.has_lease(slot, self.ticks)):
            self._serve(req, slot)
            if renews and masters.claim_due(slot, self.ticks):
                self._claim(req.group)          # keep the lease of a group being read
            return
        master = masters.known_master(slot, self.ticks)
        if master and master != self.node_id:
            self._reply_frame(req, rpc.not_master(req.req_id, master, int(masters.epoch[slot])))
            return
        self.parked.setdefault(req.group, []).append(req)
        if masters.claim_due(slot, self.ticks):
            self._claim(req.group)

    def _serve(self, req, slot):
        if req.op == rpc.PROPOSE_BATCH:
            payload = envelope.client_batch(int(self.masters.epoch[slot]), req.client_id, req.request_seq, req.ops)
            self.stats["proposals"] += len(req.ops)
            self._propose_entry(req, payload)
        elif req.op == rpc.PROPOSE:
            payload = envelope.client(int(self.masters.epoch[slot]), req.client_id, req.request_seq, req.payload)
            self.stats["proposals"] += 1
            self._propose_entry(req, payload)
        else:
            self._send(req.identity, rpc.reply(rpc.OK, req.req_id, self.sm.read(req.group, req.payload)))
            self.latency.observe(time.monotonic() - req.started)

    def _propose_entry(self, req, payload):
        req.proposed_tick = self.ticks
        try:
            req.seq = self.engine.propose(req.group, payload, req)
        except GroupStopped as exc:
            self._reply_error(req, rpc.GROUP_STOPPED, str(exc))
            return
        except ValueTooLarge as exc:
            self._reply_error(req, rpc.VALUE_TOO_LARGE, str(exc))
            return
        self.waiting[(req.group, req.seq)] = req

    def _claim(self, group):
        slot = self.slot_of(group)
        payload = self.masters.make_claim(slot, self.ticks)
        try:
            self.engine.propose(group, payload, ("claim", group))
        except GroupStopped:
            pass

    def _outcome(self, group, seq, kind, data, instance):
        req = self.waiting.pop((group, seq), None)
        if kind == CLAIMED:
            self._release_parked(group)
            return
        if req is None:
            return                         # answered already (timeout), or a duplicate
        if kind == APPLIED:
            self.masters.extend_own(self.slot_of(group), req.proposed_tick)   # our command renews our lease
            batch = req.batch
            if req.ops is not None:
                self._send(req.identity, rpc.propose_batch_ok(req.req_id, [(instance, r) for r in data]))
                self.latency.observe(time.monotonic() - req.started)
            elif batch is None:
                self._send(req.identity, rpc.propose_ok(req.req_id, instance, data))
                self.latency.observe(time.monotonic() - req.started)
            elif not batch.done:
                batch.results[req.index] = (instance, data)
                batch.remaining -= 1
                if batch.remaining == 0:
                    batch.done = True
                    self._send(batch.identity, rpc.propose_batch_ok(batch.req_id, batch.results))
                    self.latency.observe(time.monotonic() - req.started)
        elif kind == FENCED:
            self._reply_frame(req, rpc.not_master(req.req_id, data, int(self.masters.epoch[self.slot_of(group)])))
        elif kind == BARRIER:
            self._send(req.identity, rpc.reply(rpc.OK, req.req_id, self.sm.read(group, req.payload)))
            self.latency.observe(time.monotonic() - req.started)

    def _release_parked(self, group):
        """The group's mastership was decided: serve, redirect or keep waiting the parked requests."""
        parked = self.parked.pop(group, None)
        if not parked:
            return
        slot = self.slot_of(group)
        for req in parked:
            if req.deadline >= self.ticks:
                if self.masters.is_master(slot) and not self.masters.has_lease(slot, self.ticks) and req.op == rpc.READ:
                    self.parked.setdefault(group, []).append(req)      # lease read: wait for the renewal
                else:
                    self._route(req)

    def _master_changed(self, group, master, epoch):
        log.info("node %d worker %d: group %d master is now node %d (epoch %d)", self.node_id, self.index, group,
                 master, epoch)
        event = rpc.master_event(group, master, epoch)
        for identity in list(self.subscribers):
            self._send(identity, event)
        self._release_parked(group)

    # ------------------------------------------------------------------ timers
    def _on_tick(self):
        now = self.ticks
        if self.catchup_passes and now >= self.catchup_passes[0]:
            self.catchup_passes.pop(0)
            self.catchup_queue = self.engine.groups()
        if self.catchup_queue:
            for group in self.catchup_queue[-64:]:
                if self.engine.hosts(group):
                    self.engine.poke(group)
            del self.catchup_queue[-64:]
        if now % 32 == 0 and os.getppid() != self.parent:
            log.error("node %d worker %d: the supervisor is gone; stopping", self.node_id, self.index)
            self.stopping = True
        # Requests past their deadline: the outcome is unknown (a proposal may still be chosen later). Only
        # requests still waiting are looked at (answered ones are not kept anywhere), every few ticks.
        if now >= self.next_expiry_scan:
            self.next_expiry_scan = now + 5
            expired = [key for key, req in self.waiting.items() if req.deadline < now]
            for key in expired:
                req = self.waiting.pop(key)
                self._reply_error(req, rpc.TIMEOUT, "no decision within the timeout: the outcome is unknown")
            for group, parked in list(self.parked.items()):
                late = [req for req in parked if req.deadline < now]
                if late:
                    self.parked[group] = [req for req in parked if req.deadline >= now]
                    if not self.parked[group]:
                        del self.parked[group]
                    for req in late:
                        self._reply_error(req, rpc.TIMEOUT, "no master for group %d within the timeout" % group)
        # Groups waiting for a master: claim again when the last claim is overdue.
        for group in list(self.parked):
            slot = self.slot_of(group)
            if any(req.min_epoch > self.masters.epoch[slot] for req in self.parked[group]):
                if now % 8 == 0:
                    self.engine.poke(group)          # still behind the epoch a client told us of
            elif self.masters.claim_due(slot, now):
                self._claim(group)
            elif self.masters.has_lease(slot, now) or self.masters.known_master(slot, now) not in (0, self.node_id):
                self._release_parked(group)
        # Masters renew their lease while their group is being read (writes renew it by themselves); idle
        # groups let it lapse (no traffic).
        lease = self.config.lease_ticks
        for group in self._read_mastered_groups(now - lease // 2):
            slot = self.slot_of(group)
            if self.masters.claim_due(slot, now):
                self._claim(group)

    def _read_mastered_groups(self, since):
        """Groups we are master of that had lease reads since tick `since` (forgets older ones)."""
        out = []
        for slot, last in list(self.recent_reads.items()):
            if last < since:
                del self.recent_reads[slot]
            elif self.masters.master[slot] == self.node_id:
                out.append(slot * self.workers + self.index)
        return out

    def _idle(self):
        """Nothing for timers to do: sleep until a message arrives (idle groups cost no CPU)."""
        return (not self.engine.active_groups() and not self.waiting and not self.parked and not self.recent_reads
                and not self.catchup_queue and not self.catchup_passes)

    # ------------------------------------------------------------------ groups at run time
    def _on_add_group(self, identity, req_id, group):
        if group % self.workers != self.index:
            self._send(identity, rpc.error_reply(rpc.BAD_REQUEST, req_id, "group %d belongs to worker %d"
                                                 % (group, group % self.workers)))
            return
        if not self.engine.hosts(group):
            self.engine.add_group(group)
            self.masters.resize(self.engine.n_slots)
            self.store.write([(GROUPS_KEY_PREFIX + group.to_bytes(4, "big"), b"+")], [])
            self.store.commit()
            log.info("node %d worker %d: group %d added", self.node_id, self.index, group)
        self._send(identity, rpc.reply(rpc.OK, req_id))

    def _on_remove_group(self, identity, req_id, group):
        if self.engine.hosts(group):
            self.engine.remove_group(group)
            # The engine may already hold effects of this group (records to write, chosen values to apply):
            # carry them out now, while the group still exists, so that none lands after its data is deleted
            # (records written after delete_group would come back at the next start; a chosen value applied
            # after drop_group is out of order for the emptied state machine and kills the worker).
            self._cycle()
            self.sm.drop_group(group)
            self.sm.flush()
            self.store.write([(GROUPS_KEY_PREFIX + group.to_bytes(4, "big"), b"-")], [])
            self.store.commit()
            self.log.delete_group(group)
            self.masters.restore(self.slot_of(group), 0, 0, 0, 0, self.ticks)
            for req in self.parked.pop(group, []):
                self._reply_error(req, rpc.UNKNOWN_GROUP, "group %d was removed" % group)
            log.info("node %d worker %d: group %d removed", self.node_id, self.index, group)
        self._send(identity, rpc.reply(rpc.OK, req_id))

    # ------------------------------------------------------------------ status and replies
    def group_count(self):
        return self.engine.group_count()

    def masters_held(self):
        return int(np.count_nonzero(self.masters.master == self.node_id))

    def status(self, max_groups=64):
        groups = []
        max_lag = 0
        for group in self.engine.groups():
            view = self.engine.group_view(group)
            applied = self.sm.applied_next(group)
            lag = max(0, view["known_mark"] - applied)
            max_lag = max(max_lag, lag)
            if len(groups) < max_groups:
                slot = self.slot_of(group)
                groups.append({"group": group, "master": int(self.masters.master[slot]),
                               "epoch": int(self.masters.epoch[slot]), "chosen": view["chosen_next"],
                               "applied": applied, "lag": lag, "role": view["role"], "status": view["status"]})
        return {
            "node": self.node_id, "worker": self.index, "pid": os.getpid(), "ticks": self.ticks,
            "groups": self.group_count(),
            "masters": self.masters_held(), "max_lag": max_lag, "group_detail": groups,
            "counters": self.engine.counters_dict(), "log": self.log.stats(),
            "transport": {"sent_frames": self.transport.sent_frames, "dropped_frames": self.transport.dropped_frames,
                          "received_frames": self.transport.received_frames, "rejected": dict(self.transport.rejected),
                          "auth_denied": self.transport.auth_denied()},
            "requests": dict(self.stats), "pending": self.pending_count(), "fenced": self.applier.fenced,
            "latency": self.latency.snapshot(), "batch_size": self.batch_sizes.snapshot(),
            "write_seconds": self.write_seconds.snapshot(), "slow_writes": self.slow_writes,
        }

    def _reply_error(self, req, status, message):
        if status == rpc.TIMEOUT:
            self.stats["timeouts"] += 1
        self._reply_frame(req, rpc.error_reply(status, req.req_id, message))

    def _reply_frame(self, req, frame):
        """Answer a request with an error or redirect; for an operation of a batch, the whole batch."""
        batch = req.batch
        if batch is None:
            self._send(req.identity, frame)
        elif not batch.done:
            batch.done = True
            self._send(batch.identity, frame)

    def _send(self, identity, frame):
        if self.coalesce:
            frames = self.outbox.get(identity)
            if frames is None:
                self.outbox[identity] = [frame]
            else:
                frames.append(frame)
            return
        self._send_now(identity, frame)

    def _flush_replies(self):
        outbox, self.outbox = self.outbox, {}
        for identity, frames in outbox.items():
            self._send_now(identity, frames[0] if len(frames) == 1 else rpc.reply_batch(frames))

    def _send_now(self, identity, frame):
        try:
            self.client.send_multipart([identity, frame], zmq.NOBLOCK)
        except zmq.Again:
            pass            # the client is gone or not reading; it times out on its side
        except zmq.ZMQError as exc:
            log.debug("reply not sent: %s", exc)

    def close(self):
        if self.metrics_server is not None:
            server = self.metrics_server[0] if isinstance(self.metrics_server, tuple) else self.metrics_server
            try:
                server.shutdown()
            except Exception:
                pass
        self.transport.close()
        self.client.close(0)
        self.sm.flush()
        self.store.commit()
        self.store.close()
        self.log.close()
        self.ctx.term()


def worker_main(config_path, index, log_level=logging.INFO):
    """Entry point of a worker process: `python -m paxos_core.runtime.worker CONFIG INDEX [LEVEL]`.

    CONFIG is a node's TOML file, or a JSON file of NodeConfig.to_dict() (written by the supervisor).
    """
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[w" + str(index) + "]: %(message)s")
    if os.environ.get("PAXOS_CORE_GC_TUNING", "1") != "0":
        # The loop allocates many short-lived objects; the default thresholds run a collection every 700
        # allocations, scanning everything long-lived each time. Objects alive after start-up are frozen
        # out of the collector, and young collections run 100x less often.
        gc.set_threshold(70_000, 20, 100)
    if str(config_path).endswith(".json"):
        with open(config_path) as f:
            config = NodeConfig.from_dict(json.load(f), "/")
    else:
        config = load_config(config_path)
    worker = Worker(config, index)
    if os.environ.get("PAXOS_CORE_GC_TUNING", "1") != "0":
        gc.collect()
        gc.freeze()

    def stop(signum, frame):
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker.run()


if __name__ == "__main__":
    import sys

    worker_main(sys.argv[1], int(sys.argv[2]), logging.getLevelName(sys.argv[3]) if len(sys.argv) > 3 else logging.INFO)

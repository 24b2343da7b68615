"""Deterministic simulation of a paxos-core cluster: N nodes x G groups, one seeded RNG, many faults.

Each simulated node runs the real engine (paxos_core.core.engine) behind the same effect contract as the
production worker: send the early messages, write the records as one atomic batch, sync, then release the
messages that waited for the sync and tell the engine. Frames go through the real wire codec; records go
through the real storage format; a restart rebuilds the node with the real recovery code from its
simulated disk only.

Faults (``FAULT_KINDS``): message loss, duplication, long delays, reordering (jitter), partitions (one-way and
both ways, healed later), crashes that lose unsynced writes and may tear the last one, and clock skew
(nodes tick at different rates). At ``fault_ms`` every fault heals; from then on each group must make
progress within ``heal_ms``.

The same seed gives the same trace: every event feeds a running hash, which ``run()`` returns.
"""
import hashlib
import heapq
import random
from dataclasses import dataclass

from ..core.config import CoreConfig
from ..replica.applier import APPLIED, CLAIMED, FENCED
from ..core.engine import Engine
from ..errors import FrameError, GroupStopped
from ..storage.records import INSTANCE_RECORD, decode_record, encode_records, read_chosen
from ..storage.recovery import recover
from ..wire.codec import decode_frame, encode_entries, encode_frame
from ..wire.message import Message
from .disk import SimDisk
from .network import NetworkFaults, SimNetwork
from .oracle import Oracle
from .replica import ClientOp, SimReplica

FAULT_KINDS = ("loss", "duplicate", "delay", "reorder", "partition", "crash", "torn", "skew")
CLUSTER_ID = 0x5349_4D55_4C41_5445    # "SIMULATE"

ACCEPTED_KIND = 4
PROMISE_KIND = 2
ACCEPT_KIND = 3
CATCHUP_REPLY_KIND = 8

# Event kinds, ordered only for readability of traces.
TICK, DELIVER, SYNC_DONE, PROPOSE, CRASH, RESTART, PARTITION, UNPARTITION, HEAL, PROBE, CLIENT_OP, LEASE_CHECK = \
    range(12)
MAX_HOPS = 40


@dataclass
class SimConfig:
    seed: int = 0
    nodes: int = 3
    groups: int = 1
    faults: tuple = FAULT_KINDS
    ops: int = 300                 # client proposals during the fault phase
    fault_ms: int = 3000           # faults happen in [0, fault_ms); then everything heals
    heal_ms: int = 2500            # after the heal every group must make progress within this
    tick_us: int = 10_000          # nominal tick period (each node's differs with skew)
    window: int = 0                # instances in flight per group; 0 = drawn from the seed (1, 2, 4 or 8)
    plant: str = ""
    stop_on_violation: bool = True
    masters: int = -1              # 1: client ops go through masters and leases; 0: raw proposals; -1: by seed
    lease_ticks: int = 30


@dataclass
class SimResult:
    seed: int
    trace: str
    violations: list
    events: int
    chosen: int
    acked: int
    proposed: int
    crashes: int
    stats: dict

    @property
    def ok(self):
        return not self.violations


class SimNode:
    def __init__(self, node_id):
        self.id = node_id
        self.disk = SimDisk()
        self.engine = None
        self.incarnation = 0
        self.tick_us = 10_000
        self.ticks = 0
        self.waiting = []            # [(token, [(dest, msg)])] released once durable
        self.unsynced_tokens = []    # effect tokens of the batches written and not yet synced
        self.sync_busy = False
        self.durable_token = 0
        self.replica = None
        self.flushing = False        # inside flush(): a nested call leaves the new effects to the running loop

    @property
    def up(self):
        return self.engine is not None


class Simulation:
    def __init__(self, cfg):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.node_ids = tuple(range(1, cfg.nodes + 1))
        self.nodes = {n: SimNode(n) for n in self.node_ids}
        self.group_ids = list(range(cfg.groups))
        faults = set(cfg.faults)
        unknown = faults - set(FAULT_KINDS)
        if unknown:
            raise ValueError("unknown fault kinds: %s" % ", ".join(sorted(unknown)))
        self.faults = faults
        r = self.rng
        self.net_faults = NetworkFaults(
            loss=r.uniform(0.0, 0.15) if "loss" in faults else 0.0,
            duplicate=r.uniform(0.0, 0.08) if "duplicate" in faults else 0.0,
            delay_us=(100, r.randint(300, 3000)),
            jitter_us=r.randint(0, 8000) if "reorder" in faults else 0,
        )
        self.long_delay = r.uniform(0.0, 0.02) if "delay" in faults else 0.0
        self.net = SimNetwork(self.rng, self.net_faults)
        self.masters_on = bool(cfg.masters if cfg.masters >= 0 else r.random() < 0.5)
        if cfg.plant in ("lease-overrun", "no-fencing"):
            self.masters_on = True          # these plants live in the master layer
        self.lease_margin = 0.3
        self.acked_writes = {}       # group -> [(key, value)] acknowledged to clients (masters mode)
        self.lease_checks = 0
        self.lease_verified = {}     # (group, node, incarnation) -> acknowledged writes verified there
        self.fenced = 0
        self.redirects = 0
        self.oracle = Oracle(cfg.nodes)
        self.queue = []
        self.seq = 0
        self.now = 0
        self.hash = hashlib.blake2b(digest_size=16)
        self.events = 0
        self.proposed = 0
        self.crashes = 0
        self.probes = {}             # group -> payload
        self.probe_acked = set()
        self.healed = False
        self.stats = {"expired": 0, "stopped": 0, "frames": 0, "messages": 0, "torn_batches": 0,
                      "frame_errors": 0, "repairs": 0, "serve_short": 0}
        self.window = cfg.window or r.choice((1, 2, 4, 8))
        self.core_config = CoreConfig(
            node_id=1, members=self.node_ids, n_groups=cfg.groups, window=self.window, plant=cfg.plant,
            retransmit_ticks=4, max_retransmits=3, election_backoff_ticks=(1, 8), leader_timeout_ticks=15,
            forward_timeout_ticks=10, catchup_interval_ticks=2, catchup_max_instances=64,
            proposal_timeout_ticks=120,
        )
        for node in self.nodes.values():
            # Leases assume tick rates differ by less than the lease margin; without masters the skew is wider.
            lo, hi = (0.85, 1.15) if self.masters_on else (0.6, 1.6)
            skew = r.uniform(lo, hi) if "skew" in faults else 1.0
            node.tick_us = int(cfg.tick_us * skew)

    # ------------------------------------------------------------------ event queue
    def at(self, time_us, kind, node=0, data=None, inc=None):
        self.seq += 1
        heapq.heappush(self.queue, (time_us, self.seq, kind, node, inc, data))

    def _trace(self, *parts):
        self.hash.update(repr(parts).encode())

    # ------------------------------------------------------------------ node lifecycle
    def start_node(self, node):
        recovery = recover(node.disk.items(durable=True))
        cfg = self.core_config.replace(node_id=node.id)
        engine = Engine(cfg, random.Random(self.rng.getrandbits(64)), now=node.ticks)
        for group in self.group_ids:
            state = recovery.groups.get(group)
            if state is not None:
                engine.restore_group(group, state)
        node.engine = engine
        node.replica = None
        if self.masters_on:
            node.replica = SimReplica(node.id, self.cfg.groups, self.cfg.lease_ticks, self.lease_margin, self.cfg.plant,
                                      self.rng.getrandbits(48) << 16)
            node.replica.replay({g: read_chosen(node.disk.get, g, 0, engine.learned(g)[0]) for g in self.group_ids},
                                node.ticks)
        node.incarnation += 1
        node.waiting = []
        node.unsynced_tokens = []
        node.sync_busy = False
        node.durable_token = 0
        if node.incarnation > 1:
            self._check_restart(node, recovery)
        for group in self.group_ids:
            self.oracle.set_learned_start(node.id, group, engine.learned(group)[0])
        self.at(self.now + self.rng.randint(0, node.tick_us), TICK, node.id, inc=node.incarnation)

    def _check_restart(self, node, recovery):
        engine = node.engine
        synced_promise = {}
        synced_accept = {}
        for key, value in node.disk.items(durable=True):
            rec = decode_record(key, value)
            if rec[0] in (0, 1):
                g = rec[1]
                synced_promise[g] = max(synced_promise.get(g, 0), rec[4])
            if rec[0] == INSTANCE_RECORD and not rec[3] & 1:
                synced_accept[(rec[1], rec[2])] = rec[5]
        for group in self.group_ids:
            view = engine.group_view(group)
            if view["status"] == "stopped":
                self.oracle.violate("node %d group %d stopped after restart: %s"
                                    % (node.id, group, view["stop_reason"]))
                continue
            if view["promised"] < synced_promise.get(group, 0):
                self.oracle.violate("node %d group %d: recovered promise %d is below the synced %d"
                                    % (node.id, group, view["promised"], synced_promise[group]))
            for (g, instance), ballot in synced_accept.items():
                if g == group and instance >= view["chosen_next"]:
                    entry = view["accepted"].get(instance)
                    if entry is None or entry[0] < ballot:
                        self.oracle.violate("node %d group %d instance %d: recovered vote is below the synced one"
                                            % (node.id, group, instance))
            self.oracle.on_restart_state(node.id, group, view["promised"], view["accepted"], view["chosen_next"])

    def crash(self, node, tear):
        if not node.up:
            return
        self.crashes += 1
        node.engine = None
        lost = node.disk.crash(tear=tear, rng=self.rng)
        self.stats["torn_batches"] = sum(n.disk.torn_batches for n in self.nodes.values())
        self._trace("crash", node.id, lost)

    # ------------------------------------------------------------------ the effect contract
    def flush(self, node):
        """Carry out the node's effects until none are left (the effect contract, as a worker's cycle does).

        Not re-entrant: applying chosen values can serve parked client ops, which propose; their effects are
        taken by the loop already running. A nested loop would take a later batch, register its token and
        write its records before the running loop has written the earlier batch, and the durable mark
        computed from the oldest unsynced token would then cover a batch that is not synced."""
        if node.flushing:
            return
        node.flushing = True
        try:
            self._flush(node)
        finally:
            node.flushing = False

    def _flush(self, node):
        engine = node.engine
        for step in range(10_000):
            fx = engine.take_effects()
            token = fx.token
            self._send(node, fx.send_now)
            for group, instance, ballot in fx.self_votes:
                self.oracle.on_vote(node.id, group, instance, ballot)
            for group, instance, value in fx.chosen:
                self.oracle.on_learn(node.id, group, instance, value)
            if node.replica is None:
                for tag, group, instance in fx.acks:
                    self.oracle.on_ack(node.id, group, instance, tag)
                    if self.probes.get(group) == tag:
                        self.probe_acked.add(group)
            else:
                if fx.chosen:
                    outcomes, changes = node.replica.applier.apply(fx.chosen, node.ticks)
                    node.replica.sm.flush()
                    for group, seq, kind, data, instance in outcomes:
                        self._outcome(node, group, seq, kind, data, instance)
                    if changes:
                        self._check_leases()
                for tag, group, reason in fx.expired:
                    op = node.replica.pending.pop((group, tag.seq_e), None) if isinstance(tag, ClientOp) else None
                    if op is not None:
                        self._retry_op(node, op, 2000)
            self.stats["expired"] += len(fx.expired)
            for group, reason in fx.stopped:
                self.stats["stopped"] += 1
                self.oracle.violate("node %d stopped group %d: %s" % (node.id, group, reason))
            for dest, group, first, end in fx.serve:
                self._serve(node, dest, group, first, end)
            if fx.records:
                node.disk.write(encode_records(fx.records))
                node.unsynced_tokens.append(token)
                self._start_sync(node)
            if fx.send_after:
                node.waiting.append((token, fx.send_after))
            durable = token if not node.unsynced_tokens else node.unsynced_tokens[0] - 1
            if durable > node.durable_token:
                node.durable_token = durable
                self._release(node)
                engine.persisted(durable)
                if fx or step == 0:
                    continue        # persisted() may have produced effects of its own
            if not fx and not engine.has_effects():
                return
        raise RuntimeError("effects did not settle")

    def _release(self, node):
        ready = [item for item in node.waiting if item[0] <= node.durable_token]
        node.waiting = [item for item in node.waiting if item[0] > node.durable_token]
        for _, messages in ready:
            self._send(node, messages)

    def _start_sync(self, node):
        if node.sync_busy or not node.unsynced_tokens:
            return
        node.sync_busy = True
        count = len(node.unsynced_tokens)
        self.at(self.now + self.rng.randint(50, 1500), SYNC_DONE, node.id, data=count, inc=node.incarnation)

    def _sync_done(self, node, count):
        node.sync_busy = False
        node.disk.sync(count)
        del node.unsynced_tokens[:count]
        self._start_sync(node)
        self.flush(node)

    def _serve(self, node, dest, group, first, end):
        """Read chosen values [first, end) from this node's storage and send them (a serve effect)."""
        entries = read_chosen(node.disk.get, group, first, end)
        if len(entries) < end - first:
            self.stats["serve_short"] += 1
        if not entries:
            return
        chosen_next, chain = node.engine.learned(group)
        reply = Message(CATCHUP_REPLY_KIND, group, first, 0, chosen_next, 0, chain, encode_entries(entries))
        self._send(node, [(dest, reply)])

    def _send(self, node, messages):
        if not messages:
            return
        per_dest = {}
        for dest, msg in messages:
            per_dest.setdefault(dest, []).append(msg)
            kind = msg.kind
            if kind == ACCEPTED_KIND:
                self.oracle.on_vote(node.id, msg.group, msg.instance, msg.ballot)
            elif kind == PROMISE_KIND:
                self.oracle.on_promise_reply(node.id, msg.group, msg.ballot)
            elif kind == ACCEPT_KIND:
                self.oracle.on_accept_sent(msg.group, msg.instance, msg.ballot, msg.value)
        for dest, msgs in per_dest.items():
            frame = encode_frame(CLUSTER_ID, node.id, dest, msgs)
            self.stats["frames"] += 1
            self.stats["messages"] += len(msgs)
            for delay in self.net.deliveries(node.id, dest):
                if self.long_delay and self.rng.random() < self.long_delay:
                    delay += self.rng.randint(20_000, 250_000)
                self.at(self.now + delay, DELIVER, dest, data=frame)

    # ------------------------------------------------------------------ faults and workload
    def _plan(self):
        cfg = self.cfg
        r = self.rng
        fault_end = cfg.fault_ms * 1000
        for k in range(cfg.ops):
            t = r.randint(0, fault_end)
            node = r.choice(self.node_ids)
            group = r.choice(self.group_ids)
            self.at(t, PROPOSE, node, data=(group, b"s%d-op%d" % (cfg.seed, k)))
        if "crash" in self.faults or "torn" in self.faults:
            for _ in range(r.randint(1, 2 * cfg.nodes)):
                t = r.randint(0, fault_end)
                node = r.choice(self.node_ids)
                tear = "torn" in self.faults and r.random() < 0.7
                self.at(t, CRASH, node, data=tear)
                self.at(min(t + r.randint(20_000, 600_000), fault_end), RESTART, node)
        if "partition" in self.faults:
            for _ in range(r.randint(1, 6)):
                t = r.randint(0, fault_end)
                node = r.choice(self.node_ids)
                mode = r.choice((None, "in", "out", "pair"))
                other = r.choice([n for n in self.node_ids if n != node])
                self.at(t, PARTITION, node, data=(mode, other))
                self.at(min(t + r.randint(50_000, 800_000), fault_end), UNPARTITION, node, data=(mode, other))
        self.at(fault_end, HEAL)
        self.at(fault_end + 1, PROBE)
        if self.masters_on:
            self.at(r.randint(0, 5000), LEASE_CHECK)

    def _heal(self):
        self.healed = True
        self.net.heal()
        self.net_faults.loss = 0.0
        self.net_faults.duplicate = 0.0
        self.net_faults.jitter_us = 0
        self.long_delay = 0.0
        for node in self.nodes.values():
            if not node.up:
                self.start_node(node)
                self.flush(node)

    def _probe(self):
        r = self.rng
        for group in self.group_ids:
            node = self.nodes[r.choice(self.node_ids)]
            payload = b"s%d-probe%d" % (self.cfg.seed, group)
            self.probes[group] = payload
            self._propose(node, group, payload)

    # ------------------------------------------------------------------ client ops through masters
    def _client_op(self, node, op):
        """Serve a client op at `node` the way a worker does (masters mode)."""
        if not node.up:
            self._retry_op(node, op, 5000)
            return
        rep = node.replica
        group = op.group
        now = node.ticks
        rep.last_activity[group] = now
        masters = rep.masters
        if op.min_epoch > masters.epoch[group]:
            # A redirect said a newer master exists: this node is behind. Catch up, then serve or redirect.
            rep.parked.setdefault(group, []).append(op)
            node.engine.poke(group)
            self.flush(node)
            return
        if masters.is_master(group):
            op.payload = rep.client_payload(op)
            op.proposed_tick = now
            try:
                op.seq_e = node.engine.propose(group, op.payload, op)
            except GroupStopped:
                self.stats["stopped"] += 1
                return
            rep.pending[(group, op.seq_e)] = op
            if masters.claim_due(group, now):
                self._claim(node, group)
            self.flush(node)
            return
        master = masters.known_master(group, now)
        if master and master != node.id:
            self.redirects += 1
            op.min_epoch = max(op.min_epoch, int(masters.epoch[group]))
            self._retry_op(self.nodes[master], op, self.rng.randint(100, 1500))
            return
        rep.parked.setdefault(group, []).append(op)
        if masters.claim_due(group, now):
            self._claim(node, group)
            self.flush(node)

    def _retry_op(self, node, op, delay_us):
        op.hops += 1
        if op.hops > MAX_HOPS:
            self.stats["ops_abandoned"] = self.stats.get("ops_abandoned", 0) + 1
            return
        target = node if node.up else self.nodes[self.rng.choice(self.node_ids)]
        self.at(self.now + delay_us, CLIENT_OP, target.id, data=op)

    def _claim(self, node, group):
        payload = node.replica.masters.make_claim(group, node.ticks)
        try:
            node.engine.propose(group, payload, None)
        except GroupStopped:
            pass

    def _outcome(self, node, group, seq, kind, data, instance):
        rep = node.replica
        op = rep.pending.pop((group, seq), None)
        if kind == CLAIMED:
            self._release_parked(node, group)
            return
        if op is None:
            return
        if kind == APPLIED:
            rep.masters.extend_own(group, op.proposed_tick)
            self.oracle.on_ack(node.id, group, instance, op.payload)
            self.acked_writes.setdefault(group, []).append((op.key, op.value))
            if op.probe:
                self.probe_acked.add(group)
        elif kind == FENCED:
            self.fenced += 1
            op.min_epoch = max(op.min_epoch, int(rep.masters.epoch[group]))
            target = self.nodes[data] if data else node
            self._retry_op(target, op, self.rng.randint(100, 2000))

    def _release_parked(self, node, group):
        parked = node.replica.parked.pop(group, None)
        for op in parked or ():
            self._client_op(node, op)

    def _replica_tick(self, node):
        rep = node.replica
        now = node.ticks
        masters = rep.masters
        for group in list(rep.parked):
            behind = any(op.min_epoch > masters.epoch[group] for op in rep.parked[group])
            if behind:
                if now % 8 == 0:
                    node.engine.poke(group)
                    for op in rep.parked[group]:
                        if op.min_epoch > masters.epoch[group]:
                            op.hops += 1
                    rep.parked[group] = [op for op in rep.parked[group] if op.hops <= MAX_HOPS]
            elif masters.is_master(group) or masters.known_master(group, now):
                self._release_parked(node, group)
            elif masters.claim_due(group, now):
                self._claim(node, group)
        for group, last in rep.last_activity.items():
            if masters.is_master(group) and now - last < self.cfg.lease_ticks // 2 and masters.claim_due(group, now):
                self._claim(node, group)

    def _check_leases(self):
        """At most one node holds a group's lease, and the holder has applied every acknowledged write."""
        self.lease_checks += 1
        for group in self.group_ids:
            holders = [n for n in self.nodes.values() if n.up and n.replica.has_lease(group, n.ticks)]
            if len(holders) > 1:
                self.oracle.violate("group %d: nodes %s hold the master lease at once"
                                    % (group, [n.id for n in holders]))
            if not holders:
                continue
            holder = holders[0]
            acked = self.acked_writes.get(group, ())
            key = (group, holder.id, holder.incarnation)
            start = self.lease_verified.get(key, 0)     # writes already seen there stay there (no deletes)
            for k in range(start, len(acked)):
                akey, value = acked[k]
                if holder.replica.read(group, akey) != value:
                    self.oracle.violate("group %d: a lease read on master %d would miss acknowledged write %r"
                                        % (group, holder.id, akey))
                    return
            self.lease_verified[key] = len(acked)

    def _propose(self, node, group, payload):
        if self.masters_on:
            self.proposed += 1
            self._client_op(node, ClientOp(group, payload, b"v-" + payload, self.rng.getrandbits(62) + 1, 1,
                                           probe=payload in self.probes.values()))
            return
        if not node.up:
            return
        self.proposed += 1
        try:
            node.engine.propose(group, payload, payload)
        except GroupStopped:
            self.stats["stopped"] += 1
            return
        self.flush(node)

    # ------------------------------------------------------------------ main loop
    def run(self):
        cfg = self.cfg
        for node in self.nodes.values():
            self.start_node(node)
        self._plan()
        end = (cfg.fault_ms + cfg.heal_ms) * 1000
        while self.queue:
            time_us, _, kind, node_id, inc, data = heapq.heappop(self.queue)
            if time_us > end:
                break
            self.now = self.oracle.now = time_us
            self.events += 1
            node = self.nodes.get(node_id)
            if kind == TICK:
                if not node.up or inc != node.incarnation:
                    continue
                node.ticks += 1
                self._trace(time_us, kind, node_id, node.ticks)
                node.engine.tick(node.ticks)
                if node.replica is not None:
                    self._replica_tick(node)
                self.flush(node)
                self.at(time_us + node.tick_us, TICK, node_id, inc=inc)
            elif kind == DELIVER:
                self._trace(time_us, kind, node_id, data)
                if not node.up:
                    continue
                try:
                    _, msgs = decode_frame(data, CLUSTER_ID, node_id)
                except FrameError:
                    self.stats["frame_errors"] += 1
                    continue
                node.engine.receive(msgs)
                self.flush(node)
            elif kind == SYNC_DONE:
                if not node.up or inc != node.incarnation:
                    continue
                self._trace(time_us, kind, node_id, data)
                self._sync_done(node, data)
            elif kind == PROPOSE:
                self._trace(time_us, kind, node_id, data)
                self._propose(node, data[0], data[1])
            elif kind == CRASH:
                self._trace(time_us, kind, node_id, data)
                self.crash(node, data)
            elif kind == RESTART:
                self._trace(time_us, kind, node_id)
                if not node.up and not self.healed:
                    self.start_node(node)
                    self.flush(node)
            elif kind == PARTITION or kind == UNPARTITION:
                self._trace(time_us, kind, node_id, data)
                mode, other = data
                apply = self.net.block if kind == PARTITION else self.net.unblock
                if mode == "pair":
                    apply(node_id, other)
                else:
                    for peer in self.node_ids:
                        if peer != node_id:
                            if mode in (None, "out"):
                                apply(node_id, peer)
                            if mode in (None, "in"):
                                apply(peer, node_id)
            elif kind == CLIENT_OP:
                op = data
                self._trace(time_us, kind, node_id, op.key, op.hops)
                self._client_op(node, op)
            elif kind == LEASE_CHECK:
                self._check_leases()
                self.at(time_us + 5000, LEASE_CHECK)
            elif kind == HEAL:
                self._trace(time_us, kind)
                self._heal()
            elif kind == PROBE:
                self._trace(time_us, kind)
                self._probe()
            if self.oracle.violations and cfg.stop_on_violation:
                break
        if not self.oracle.violations:
            self._check_liveness()
        chosen = len(self.oracle.chosen)
        self.hash.update(b"end")
        return SimResult(cfg.seed, self.hash.hexdigest(), list(self.oracle.violations), self.events, chosen,
                         self.oracle.acked, self.proposed, self.crashes, dict(self.stats))

    def _check_liveness(self):
        for group in self.group_ids:
            if group not in self.probe_acked:
                self.oracle.violate("liveness: group %d's probe was not chosen within %d ms of the heal"
                                    % (group, self.cfg.heal_ms))
                continue
            marks = {n.id: n.engine.learned(group)[0] for n in self.nodes.values()}
            if len(set(marks.values())) != 1:
                self.oracle.violate("liveness: group %d's nodes did not converge after the heal: %r"
                                    % (group, marks))


def run_seed(cfg):
    return Simulation(cfg).run()

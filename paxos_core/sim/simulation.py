"""Deterministic simulation of a paxos-core cluster: N nodes x G groups, one seeded RNG, many faults.

Every node runs the PRODUCTION replica loop (replica/loop.py), the same object a worker process runs, behind
simulated ports (sim/node.py): frames through the real wire codec, records through the real storage format
and recovery, client requests and replies through the real client protocol. What differs from a worker is
only where input comes from and where time goes:

* delivery in bursts: a node's turn takes every frame and request that arrived since its last turn, as one
  poll of a worker does (while a synced write or a pause holds the node, input piles up);
* the clock is read where production reads it (the loop reads it; each node's clock has its own rate and
  offset);
* time passes inside a turn: synced writes take the disk's latency and sometimes stall; a paused process
  stops between any two calls into its ports and resumes with a full inbox and a late clock; a crash can
  strike in the middle of a synced write.

Faults (``FAULT_KINDS``): message loss, duplication, long delays, reordering (jitter), partitions (one-way and
both ways), crashes that lose unsynced writes and may tear the last one, clock skew (bounded rate drift),
process pauses longer than the lease, fsync stalls, damage to synced data (a flipped bit in the write-ahead
log or in a table, an unreadable block, a lost file), wiped data directories (amnesia), a group removed
and added again on some nodes first and the others later (regroup; a node that loses its storage after its
part of it gets the group put back by the operator), and membership changes under load
(member, on 5 nodes: each group votes on 3 of them, and a driver makes groups adopt other voters, replacing one
or two at a time, through every node, while the other faults go on; the oracle derives each instance's voters
from its own view of the chosen log). At ``fault_ms``
everything heals; then every group must accept a write, every node must converge, and every rebuild finish,
within ``heal_ms``.

Invariants (sim/oracle.py and paxos_core.check): at most one value chosen per instance; learned logs are
prefixes of the chosen one; promises and votes never go back across a restart unless the node knows it lost
them and rebuilds; a rebuilding node never votes; a catch-up reply carries only chosen values; every
acknowledged write is in the chosen log; every read (lease and linearizable; stale reads more weakly) is
linearizable against the log and real time; every command applied at most once; no operation a client is
still waiting for is refused as stale; at most one node holds a group's lease at any instant.

The same seed gives the same trace: every event feeds a running hash, which ``run()`` returns.
"""
import hashlib
import heapq
import random

import numpy as np
from dataclasses import dataclass

from ..core.config import SYSTEM_GROUP, CoreConfig
from ..core.voters import config_state, first_config
from ..errors import FrameError
from ..replica import envelope
from ..replica.applier import Applier
from ..replica.loop import LoopSettings, ReplicaLoop
from ..replica.master import MasterTable
from ..replica.snapshots import SnapshotSettings
from ..wire import rpc
from ..statemachine import kv
from ..statemachine.loader import factory_for
from ..statemachine.membership import MembershipStateMachine, encode_change
from ..statemachine.system import WithSystemGroup
from ..statemachine.store import MemoryStore
from ..storage.snapfiles import MemorySnapshotFiles
from ..wire.codec import decode_batch, decode_entries, decode_frame, encode_frame, proposals_of
from ..wire.message import ACCEPT, ACCEPTED, CATCHUP_REPLY, FORWARD, PREPARE, PROMISE, SNAP_CHUNK, Message
from .clients import _UNSEEN, KEYS_PER_GROUP, HistoryOp, Operation, SimClient
from .network import NetworkFaults, SimNetwork
from .node import SimCrash, SimLog, SimNode, SimStore
from .oracle import Oracle, group_key, key_parts

FAULT_KINDS = ("loss", "duplicate", "delay", "reorder", "partition", "crash", "torn", "skew", "pause", "stall",
               "damage", "amnesia", "regroup", "member")
CLUSTER_ID = 0x5349_4D55_4C41_5445    # "SIMULATE"
REGROUP_IDENTITY = b"\x00regroup"     # the operator's connection that removes groups (an admin one)

(WAKE, DELIVER, CLIENT_DELIVER, CLIENT_REPLY, CLIENT_TIMER, CLIENT_RETRY, CLIENT_START, CRASH, RESTART, PARTITION,
 UNPARTITION, PAUSE, DAMAGE, HEAL, PROBE, LEASE_CHECK, REGROUP, MARKS, MEMBER, SYSTEM_CHANGE) = range(20)
INF = float("inf")


@dataclass
class SimConfig:
    seed: int = 0
    nodes: int = 3
    groups: int = 1
    faults: tuple = FAULT_KINDS
    clients: int = 6               # clients issuing operations during the fault phase
    fault_ms: int = 3000           # faults happen in [0, fault_ms); then everything heals
    heal_ms: int = 4000            # after the heal every group must serve and every node converge in this time
    tick_us: int = 10_000          # nominal tick period (each node's clock has its own rate with skew)
    window: int = 0                # instances in flight per group; 0 = drawn from the seed (1, 2, 4 or 8)
    plant: str = ""
    stop_on_violation: bool = True
    lease_ticks: int = 30
    state_machine: str = ""        # "package.module:Factory" of a state machine of your own; "" = the KV store
    retain: int = None             # chosen values logs keep below the applied mark (-1: no truncation); None =
                                   # drawn from the seed


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


class ProbeClient(SimClient):
    """After the heal: a write to its group, then a linearizable read of every key (liveness and the final
    state). Probes retry until the end of the run."""

    def __init__(self, sim, index, rng, group):
        super().__init__(sim, index, rng)
        self.group = group
        self.script = ["write"] + ["read-%d" % k for k in range(KEYS_PER_GROUP)]
        self.batch_sessions = False

    def next_operation(self, now):
        probe = self.sim.probe_ops.get(self.group)
        if probe is not None and probe.outcome != "ok" and self.script and not self.script[0] == "write":
            # The write's outcome is unknown (e.g. its retry was refused: its session had not started): write
            # again under a fresh session.
            self.client_id = self.rng.getrandbits(62) + 1
            self.seq = 0
            self.script.insert(0, "write")
        if not self.script:
            return
        step = self.script.pop(0)
        self.seq += 1
        group = self.group
        model = self.sim.sm_model
        if step == "write":
            value = b"probe-%d-%d" % (group, self.seq)
            payload = model.random_command(self.rng, group) if model else kv.encode_put(b"k0", value)
            op = HistoryOp((self.client_id, self.seq), group, b"k0", "write", value=value, invoke=now, payload=payload)
            frame_for = self._propose_frame(group, self.seq, payload)
            self.sim.probe_ops[group] = op
        elif model is not None:
            self.script = []          # a state machine of the user's: its reads are not checked here
            self.seq -= 1
            return
        else:
            key = b"k%s" % step.split("-")[1].encode()
            op = HistoryOp((self.client_id, self.seq), group, key, "read", mode="linearizable", invoke=now)
            frame_for = self._read_frame(group, rpc.READ_LINEARIZABLE, kv.encode_get(key))
        self.op = Operation([op], group, frame_for, now)
        self._send(now)


class Simulation:
    def __init__(self, cfg):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.node_ids = tuple(range(1, cfg.nodes + 1))
        self.nodes = {n: SimNode(self, n) for n in self.node_ids}
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
        self.stall_rate = r.uniform(0.0, 0.03) if "stall" in faults else 0.0
        self.net = SimNetwork(self.rng, self.net_faults)
        self.lease_margin = 0.3
        # Membership: from a stream of its own, so the rest of a seed's schedule is what it was before it.
        rm = self.rm = random.Random(cfg.seed * 15485863 + 47)
        self.member = "member" in faults and cfg.nodes == 5
        self.first_voters = tuple(sorted(rm.sample(self.node_ids, 3))) if self.member else self.node_ids
        self.member_epochs = {}     # group -> (epoch, voters) the driver last asked for
        # "groups": the simulator moves single groups to other voters (as placement will); "cluster": it changes
        # the system group's table (promote, swap, remove), and every node's membership driver makes the groups
        # adopt it, as in a deployment.
        self.member_mode = rm.choice(("groups", "cluster")) if self.member else ""
        self.queue = []
        self.seq = 0
        self.now = 0
        self.hash = hashlib.blake2b(digest_size=16)
        self.events = 0
        self.crashes = 0
        self.healed = False
        self.ending = False
        self.history = []
        self.last_seen = {}
        self.probe_ops = {}
        self.convergence_marks = {}
        # No operation starts in the last second: the nodes must then converge on what was chosen.
        self.quiet_at = (cfg.fault_ms + cfg.heal_ms - 1000) * 1000
        self.regrouped = set()      # groups removed and added again (their data restarts: not history-checked)
        self.regroup_first = {}     # group -> the first configuration its re-added incarnation starts on
        self.regroup_after_loss = False     # the seed regroups and damages storage too (see _may_lose_memory)
        self._references = {}       # group -> [mark, reference state machine, its applier] (_reference_at)
        self.lease_checks = 0
        self.stats = {"frames": 0, "messages": 0, "torn_batches": 0, "frame_errors": 0, "pauses": 0, "stalls": 0,
                      "damage": 0, "amnesia": 0, "turns": 0, "acked": 0, "ops": 0}
        self.window = cfg.window or r.choice((1, 2, 4, 8))
        self.alpha = max(self.window, rm.choice((8, 16))) if self.member else self.window
        self.oracle = Oracle(cfg.nodes, self.alpha, self.first_voters)
        # The system group's seed, as worker.py makes it from a node file (at made-up addresses): the first
        # voters, and the other nodes as learners.
        self.membership_seed = encode_change("seed", alpha=self.alpha, nodes=[
            {"id": n, "host": "10.0.0.%d" % n, "peer_port": 7000, "client_port": 7100, "public_key": "-",
             "role": "voter" if n in self.first_voters else "learner"} for n in self.node_ids])
        # A state machine of the user's: the nodes run it, the clients send its random_command/random_query
        # (drawn from their own rngs), and the end checks that every replica holds the state the chosen log
        # gives (the key-value history check is the KV's only).
        self.sm_factory = factory_for(cfg.state_machine) if cfg.state_machine else None
        self.sm_model = self.sm_factory(MemoryStore()) if self.sm_factory else None
        self.batch_envelope = r.random() < 0.5
        # Checkpoints: drawn from a second stream, so the rest of a seed's schedule is what it was before them.
        rc = self.rc = random.Random(cfg.seed * 7919 + 17)
        self.aimed_crashes = {}
        self.retain_instances = rc.choice((-1, -1, 0, 4, 64))
        if cfg.retain is not None:
            self.retain_instances = cfg.retain
        elif cfg.plant in ("truncate-too-far", "install-non-atomic"):
            self.retain_instances = 0          # these plants need truncation on
        chunk = rc.choice((64, 512, 4096))
        self.retain_bytes = rc.choice((0, 0, 600, 5000))
        if cfg.retain is None and cfg.plant == "weigh-short":
            self.retain_instances, self.retain_bytes = 1 << 20, 8000     # the byte limit alone cuts
        # The peers' floor: from a third stream, for the same reason. Off in some seeds (a peer that lags beyond
        # retain then always gets a snapshot), so both ways of catching up stay covered.
        rf = random.Random(cfg.seed * 104729 + 31)
        self.peer_lag_instances = rf.choice((0, 0, 16, 256)) if self.retain_instances >= 0 else 0
        self.peer_lag_bytes = rf.choice((1000, 20000))
        if cfg.plant in ("truncate-too-far", "install-non-atomic", "weigh-short"):
            self.peer_lag_instances = 0
        self.snapshot_settings = SnapshotSettings(
            chunk_bytes=chunk, window_bytes=chunk * rc.choice((1, 2, 4)), build_bytes_per_turn=chunk * 2,
            send_bytes_per_turn=chunk * 8, stage_bytes_per_turn=chunk * 2, max_outgoing=rc.choice((1, 4)),
            max_incoming=rc.choice((1, 4)), idle_timeout_s=rc.choice((0.5, 3.0)), retry_s=0.05)
        # Busy clients in most seeds; in some, sparse ones: workers then go idle (a poll of a second) between
        # operations, and masters' leases lapse and move, as in a quiet service.
        self.think_us = (500, 20_000) if r.random() < 0.7 else (50_000, 600_000)
        self.core_config = CoreConfig(
            node_id=1, members=self.node_ids, n_groups=cfg.groups, window=self.window, plant=cfg.plant,
            retransmit_ticks=4, max_retransmits=3, election_backoff_ticks=(1, 8), leader_timeout_ticks=15,
            forward_timeout_ticks=10, catchup_interval_ticks=2, catchup_max_instances=64,
            proposal_timeout_ticks=120, sticky_ticks=cfg.lease_ticks, peer_lag_instances=self.peer_lag_instances,
            alpha=self.alpha, voters=self.first_voters,
            system_group=True,              # every node's (one) worker hosts the system group, as worker 0 does
            # Small batches in some seeds, so that queues are cut into several instances and FORWARDs.
            max_batch_bytes=r.choice((1 << 20, 1 << 20, 1 << 20, 300, 2000)),
        )
        for node in self.nodes.values():
            skew = r.uniform(0.87, 1.15) if "skew" in faults else 1.0
            node.rate = skew
            node.offset = r.uniform(0, 1000)
        self.clients = {}
        for k in range(cfg.clients):
            client = SimClient(self, k, random.Random(r.getrandbits(64)))
            self.clients[client.identity] = client

    # ------------------------------------------------------------------ event queue
    def at(self, time_us, kind, node=0, data=None):
        self.seq += 1
        heapq.heappush(self.queue, (time_us, self.seq, kind, node, data))

    def _trace(self, *parts):
        self.hash.update(repr(parts).encode())

    # ------------------------------------------------------------------ node life cycle
    def start_node(self, node, at):
        if node.left:
            return                   # a node that left after its removal never starts again
        node.incarnation += 1
        node.snapfiles.restart()
        if "damage" in self.faults and node.snapfiles.files and self.rc.random() < 0.3:
            # A bit flipped in a snapshot file while the node was down (files are not fsynced): the frame's
            # crc32c finds it when the file is read, and the file is dropped.
            data = node.snapfiles.files[self.rc.choice(node.snapfiles.complete())][0]
            data[self.rc.randrange(len(data))] ^= 1 << self.rc.randrange(8)
            self.stats["snapfiles_damaged"] = self.stats.get("snapfiles_damaged", 0) + 1
        node.local_now = at
        node.pause = None
        node.busy_until = node.local_now
        node.inbox = []
        node.client_inbox = []
        node.next_wake = None
        node.down_since = None
        damage = node.disk.open(self.cfg.plant)
        log = SimLog(node)
        recovery = log.recover()
        if recovery.registry_damage:
            # As runtime/worker.start_loop: the log cannot say which groups it holds: it goes aside whole.
            recovery = log.set_aside(recovery.registry_damage)
            damage = recovery.report
        amnesia = damage or ("" if node.disk.marker else "the data directory lacks its identity marker")
        node.marker_pending = bool(amnesia)
        settings = LoopSettings(node_id=node.id, tick_s=self.cfg.tick_us / 1e6, lease_ticks=self.cfg.lease_ticks,
                                lease_margin=self.lease_margin, max_pending=100_000,
                                request_timeout_ticks=self.core_config.proposal_timeout_ticks,
                                batch_envelope=self.batch_envelope, plant=self.cfg.plant,
                                retain_instances=self.retain_instances, retain_bytes=self.retain_bytes,
                                peer_lag_instances=self.peer_lag_instances, peer_lag_bytes=self.peer_lag_bytes,
                                snapshots=self.snapshot_settings, membership_seed=self.membership_seed,
                                # in odd seeds a few groups adopting at once (the groups waiting their turn
                                # are exercised), in even ones every group of the run at once
                                membership_max_adopting=4 if self.cfg.seed % 2 else 2048)
        try:
            loop = ReplicaLoop(settings, self.core_config.replace(node_id=node.id), clock=node.clock, log=log,
                               store=SimStore(node), send=node.send, hosted=self.group_ids, recovery=recovery,
                               rng=random.Random(self.rng.getrandbits(64)), amnesia=amnesia,
                               state_machine_factory=self.sm_factory, snapfiles=node.snapfiles)
        except SimCrash:
            self._crashed(node)
            return
        loop.effects_hook = lambda fx, node=node: self._observe(node, fx)
        node.retention_last = None
        if self.retain_instances >= 0:
            self._watch_retention(node, loop)
        loop.snapshots.install_hook = lambda group, applied, chain, node=node: self._installed(node, group, applied)
        self._watch_handovers(node, loop)
        node.loop = loop
        for group in loop.engine.groups():
            # Own recovery never needs a deleted record: the log is never truncated past the state machine's
            # durable applied mark (the plant "truncate-too-far" breaks this).
            if loop.engine.low(group) > loop.sm.applied_next(group):
                self.oracle.violate("node %d group %d: the log is truncated at %d, past the state machine's applied "
                                    "mark %d (values in between are lost here)"
                                    % (node.id, group, loop.engine.low(group), loop.sm.applied_next(group)))
            elif self.retain_instances >= 0:
                self._check_state_at_mark(node, group)
        self._trace("start", node.id, node.incarnation, amnesia)
        if amnesia:
            self.oracle.on_amnesia(node.id)
            node.seen_rebuilding = set()
            self._restore_regrouped(node)
        self._note_rebuilding(node)
        for group in loop.engine.groups():
            self.oracle.set_learned_start(node.id, group_key(group, loop.engine.incarnation_of(group)),
                                          loop.engine.learned(group)[0])
        if node.incarnation > 1:
            self._check_restart(node)
        self._wake(node, node.local_now)

    def _watch_handovers(self, node, loop):
        """Tell the oracle when `node` drops its copy of a group (placed elsewhere) and when it holds one again."""
        vacate, reenter = loop.vacate_groups, loop.reenter_group

        def vacate_groups(groups):
            incarnations = {g: loop.engine.incarnation_of(g) for g in groups if loop.engine.hosts(g)}
            vacate(groups)
            for group, incarnation in incarnations.items():
                if not loop.engine.hosts(group):
                    self.stats["handovers"] = self.stats.get("handovers", 0) + 1
                    self._trace("handover", node.id, group)
                    self.oracle.on_handed_over(node.id, group_key(group, incarnation))

        def reenter_group(group):
            reenter(group)
            self.stats["reentries"] = self.stats.get("reentries", 0) + 1
            self._trace("reenter", node.id, group)
            self.oracle.set_learned_start(node.id, group_key(group, loop.engine.incarnation_of(group)),
                                          loop.engine.learned(group)[0])
        loop.vacate_groups, loop.reenter_group = vacate_groups, reenter_group

    def _installed(self, node, group, applied):
        """A snapshot at `applied` was swapped in on `node`: it learns on from there."""
        self.stats["installs"] = self.stats.get("installs", 0) + 1
        engine = node.loop.engine
        self.oracle.on_install(node.id, group_key(group, engine.incarnation_of(group)), applied)
        self._trace("install", node.id, group, applied)

    def _check_restart(self, node):
        engine = node.loop.engine
        for group in engine.groups():
            view = engine.group_view(group)
            if view["status"] == "repairing":
                continue          # it knows it may have lost state: it rebuilds before voting (checked on send)
            if view["status"] == "stopped":
                self.oracle.violate("node %d group %d stopped after restart: %s"
                                    % (node.id, group, view["stop_reason"]))
                continue
            self.oracle.on_restart_state(node.id, group_key(group, view["incarnation"]), view["promised"],
                                         view["accepted"], view["chosen_next"])

    def _add_joins(self, node, group):
        """Whether an add of `group` on `node` joins an incarnation another node holds already (hosted or handed
        over), or may (a node that is down cannot say): Client.add_group asks every node, and sets ADD_GROUP's
        join flag then (soak seed 7,004,925: the only holders were down when a wiped node got its group back)."""
        loop = node.loop
        if loop.engine.hosts(group) or group in loop.vacated:
            return False                 # held here already: the add changes nothing
        incarnation = loop.tombstones.get(group, 0) + 1
        for other in self.nodes.values():
            held = other.loop
            if other is node or other.left:
                continue
            if held is None:
                return True
            if (held.engine.hosts(group) and held.engine.incarnation_of(group) == incarnation
                    or held.vacated.get(group) == incarnation):
                return True
        return False

    def _left_over_here(self, node, group):
        """Whether `node` holds `group` in an incarnation another node has removed, or an earlier one than
        another node holds: a copy of its node file's group that a wipe brought back (the tombstone went with
        the storage). Another node's tombstone goes once the add reaches it, and the seed's add on some nodes
        reaches them one by one; Client.add_group reads every node it adds to before it adds anywhere, so a
        node of that add that holds the newer incarnation by now was one without it then (soak seed 7,512,725)."""
        engine = node.loop.engine
        if not engine.hosts(group):
            return False
        held = engine.incarnation_of(group)
        for other in self.nodes.values():
            if other is node or other.loop is None:
                continue
            if other.loop.tombstones.get(group, 0) >= held:
                return True
            if other.loop.engine.hosts(group) and other.loop.engine.incarnation_of(group) > held:
                return True
        return False

    def _note_rebuilding(self, node):
        """Which of the group incarnations the node must rebuild (it took part in them before it lost its
        state) it has been seen rebuilding: once one is no longer rebuilding, it rebuilt it (Oracle.check_rebuilt).
        Called when it starts and after every turn and group operation."""
        engine = node.loop.engine
        for key in self.oracle.must_rebuild.get(node.id, ()):
            group, incarnation = key_parts(key)
            if (engine.hosts(group) and engine.incarnation_of(group) == incarnation
                    and engine.group_view(group)["status"] == "repairing"):
                node.seen_rebuilding.add(key)

    def _added(self, node, group, incarnation, first):
        """An operator's add started `group` on `node`, empty, in `incarnation` and first configuration `first`:
        the oracle learns of it, and checks that nothing of a removed incarnation is left."""
        loop = node.loop
        if loop.engine.group_view(group)["status"] == "repairing":
            node.lost_state = True       # it forgot that incarnation: it rebuilds it (the fault budget)
        self.oracle.on_added(node.id, group_key(group, incarnation), first and first_config(first))
        # What it learns starts where it holds the group now (0: an add put back after a wipe learns the
        # incarnation again from its start).
        self.oracle.set_learned_start(node.id, group_key(group, incarnation), loop.engine.learned(group)[0])
        if loop.sm.applied_next(group) != 0:
            self.oracle.violate("node %d group %d: added as a new incarnation, its state machine is already at %d "
                                "(the removed one's data)" % (node.id, group, loop.sm.applied_next(group)))

    def _restore_regrouped(self, node):
        """`node` lost its storage, and with it what the operator did to its groups (removed, added anew): it
        holds each again in its first incarnation, as configured. For each group removed here before, the
        operator removes that and adds the group back (once the add is due), as ``group remove G --nodes N``
        and ``group add G --nodes N`` do; added there, it rebuilds from its peers before it votes
        (ReplicaLoop.add_group on a worker that lost its state). A group not removed here yet needs nothing:
        its operations come as scheduled."""
        for group in sorted(node.regrouped):
            if (group in self.regroup_first and self.rng.random() < 0.5
                    and all(group in n.regrouped for n in self.nodes.values() if n is not node and not n.left)):
                # Removed everywhere and added back: no node holds the first incarnation any more, so the
                # node's copy of it (rebuilding) cannot rebuild; a peer holding the new one tells it, and it
                # takes that one by itself (ReplicaLoop.join_newer), rebuilding first.
                self._trace("restore-by-itself", node.id, group)
                # An add still due here would meet its copy of the first incarnation (a different first
                # configuration): the operator leaves the node to it.
                node.regroup_ops = [op for op in node.regroup_ops if not (op[1] == group and op[0] == "add")]
                continue
            ops = [op for op in node.regroup_ops if op[1] == group and op[0] in ("remove", "add")]
            node.regroup_ops = [op for op in node.regroup_ops if op not in ops]
            node.regroup_ops.append(("remove", group))
            if group in self.regroup_first:          # the add is due (or done): it comes back now
                node.regroup_ops.append(("add", group, self.regroup_first[group]))
            self._trace("restore", node.id, group)

    def _crashed(self, node, tear=None):
        """The node's process is dead (a planned crash struck, maybe inside a write)."""
        if node.crash_times and node.crash_times[0] <= max(node.local_now, self.now):
            node.crash_times.pop(0)
        if node.loop is None and node.down_since is not None:
            return
        self.crashes += 1
        self._process_gone(node)
        if tear is None:
            tear = "torn" in self.faults and self.rng.random() < 0.7
        lost = node.disk.crash(tear=tear, rng=self.rng)
        self.stats["torn_batches"] = sum(n.disk.torn_batches for n in self.nodes.values())
        self._trace("crash", node.id, lost)

    def _process_gone(self, node):
        """The node's process is gone (crashed, or left after its removal): whatever stopped it and whatever
        it had not read go with it."""
        node.loop = None
        node.pause = None
        node.down_since = self.now
        node.next_wake = None
        node.inbox = []
        node.client_inbox = []

    # ------------------------------------------------------------------ turns
    def _wake(self, node, when):
        when = max(when, node.busy_until)
        if node.next_wake is not None and node.next_wake <= when:
            return
        node.next_wake = when
        self.at(when, WAKE, node.id, node.incarnation)

    def _turn(self, node):
        node.next_wake = None
        node.local_now = max(self.now, node.busy_until)
        frames, node.inbox = node.inbox, []
        requests, node.client_inbox = node.client_inbox, []
        loop = node.loop
        try:
            while node.regroup_ops:
                what, group, *args = node.regroup_ops[0]
                if what == "remove" and loop.engine.hosts(group) and loop.engine.incarnation_of(group) > 1:
                    # It took the newer incarnation by itself already (a leftover copy, rebuilding after a
                    # wipe, told by a peer: ReplicaLoop.join_newer): nothing of the old one is left here.
                    self._trace("regroup", node.id, "joined-already", group)
                    node.regrouped.add(node.regroup_ops.pop(0)[1])
                    continue
                if what == "remove":
                    # An operator's REMOVE_GROUP arrives as production gets it: a request in this turn, after
                    # the poll's peer messages went into the engine (which may have chosen values of the group
                    # still to apply: tests/test_cluster.py removes a group under a burst of proposals). The op
                    # is done when its reply comes out of the turn (see below).
                    self._trace("regroup", node.id, what, group)
                    requests.append((REGROUP_IDENTITY, rpc.simple_request(rpc.REMOVE_GROUP, 0, group), True))
                    break
                self._trace("regroup", node.id, what, group, *args)
                if what == "adopt":
                    if loop.engine.hosts(group):
                        loop.engine.adopt(group, *args)
                elif what == "system":
                    loop.propose_internal(SYSTEM_GROUP, args[0], 200)
                elif self._left_over_here(node, group):
                    # An add on some nodes (`group add G --nodes ...`) that meets a copy left over by a wipe, of
                    # an incarnation another node removed: Client.add_group refuses it ("remove the group
                    # everywhere first"), and the node takes the newer incarnation by itself once a peer tells
                    # it (ReplicaLoop.join_newer), as after the restore that leaves it to that (soak seed
                    # 7,408,568: the seed's add came after such a restore).
                    self._trace("regroup", node.id, "add-refused-left-over", group)
                else:
                    first = args[0] if args else b""
                    # Held here already (the operator put it back after a wipe before this add came, soak seed
                    # 7,103,957): the add is idempotent, changes nothing, and the copy may have rebuilt part
                    # of the incarnation meanwhile. Otherwise the group starts here, empty.
                    new = not loop.engine.hosts(group)
                    incarnation = loop.add_group(group, 0, first, self._add_joins(node, group))
                    if new:
                        self._added(node, group, incarnation, first)
                node.regroup_ops.pop(0)       # done (a crash half-way leaves it to do again: both are idempotent)
        except SimCrash:
            self._crashed(node)
            return
        self._note_rebuilding(node)
        messages = []
        for frame in frames:
            try:
                messages.extend(decode_frame(frame, CLUSTER_ID, node.id)[1])
            except FrameError:
                self.stats["frame_errors"] += 1
        self.stats["turns"] += 1
        self._trace("turn", node.id, node.local_now, len(messages), len(requests))
        marks = (loop.retention.truncations, loop.snapshots.writes)
        held = {g: loop.engine.incarnation_of(g) for g in self.regrouped if loop.engine.hosts(g)}
        # Removed to take a newer incarnation, then a crash before the add: the turn takes it (0: not held now).
        held.update((g, 0) for g, _, _ in loop.unfinished_joins if not loop.engine.hosts(g))
        try:
            loop.turn(messages, requests)
            self._note_rebuilding(node)
            for group in self.regrouped:
                if loop.engine.hosts(group) and loop.engine.incarnation_of(group) > held.get(group, -1) >= 0:
                    # A leftover copy replaced by the newer incarnation its peers hold (ReplicaLoop.join_newer).
                    incarnation = loop.engine.incarnation_of(group)
                    self._trace("joined-newer", node.id, group, incarnation)
                    self._added(node, group, incarnation, loop.engine.first_state(group))
            replies = loop.take_replies()
            for identity, frame in replies:
                if identity == REGROUP_IDENTITY:
                    answer = rpc.decode_reply(frame)
                    if answer[0] != rpc.OK:
                        self.oracle.violate("node %d: REMOVE_GROUP %d answered %r" % (node.id, node.regroup_ops[0][1],
                                                                                      answer))
                    node.regrouped.add(node.regroup_ops.pop(0)[1])       # the removal at the head is done
                    continue
                self._to_client(node, identity, frame)
            timeout = loop.poll_timeout()
        except SimCrash:
            self._crashed(node)
            return
        node.busy_until = node.local_now
        if marks[1] != loop.snapshots.writes:
            self._aim_crash(node, "snapshot", 0.4)
        elif marks[0] != loop.retention.truncations:
            self._aim_crash(node, "truncation", 0.2)
        self._check_queue_order(node)
        if node.lost_state and not loop.engine.repairs:
            node.lost_state = False
        if loop.membership.left:
            # Removed, its groups go on without it: it stops for good, as a production node does (its workers
            # report "removed" and the supervisor exits with code 4). Its vote is gone from then on: a node
            # that left while some instance could still count it cuts the group's voters short.
            self._trace("left", node.id)
            node.left = True
            self._process_gone(node)
            return
        if timeout <= 0 or node.regroup_ops:
            self._wake(node, node.busy_until)
        else:
            self._wake(node, node.busy_until + int(timeout * 1e6 / node.rate) + 1)

    def _aim_crash(self, node, what, chance):
        """The turn wrote a truncation or a snapshot's staging or swap: sometimes crash the node within the
        next few milliseconds (before or after its next synced write), where a non-atomic step would show.
        At most 4 such crashes of each kind per seed."""
        rc = self.rc
        fault_end = self.cfg.fault_ms * 1000
        if ("crash" not in self.faults or self.aimed_crashes.get(what, 0) >= 4
                or node.local_now >= fault_end - 30_000 or rc.random() >= chance):
            return
        self.aimed_crashes[what] = self.aimed_crashes.get(what, 0) + 1
        t = node.local_now + rc.randint(0, 3_000)
        node.crash_times.append(t)
        node.crash_times.sort()
        self.at(t, CRASH, node.id)
        self.at(min(t + rc.randint(20_000, 200_000), fault_end), RESTART, node.id)
        self._trace("aimed-crash", node.id, t)

    def _check_queue_order(self, node):
        """A proposer keeps its own proposals in the order they were made (a leader that steps down re-queues
        them in instance order): operations of one client session then reach the log in session order."""
        engine = node.loop.engine
        for slot, pg in engine.proposer.groups.items():
            last = -1
            # Only our proposals still waiting for an outcome count (a former leader may forward back copies
            # of ours, even from before a restart; the proposer skips those). Entries forwarded to a leader
            # are in flight there, and a copy of one that comes back is not a reordering of our queue.
            outstanding = engine.learner.outstanding.get(slot, {})
            seen = {seq for origin, seq, _ in pg.forwarded if origin == node.id}
            for inflight in pg.inflight.values():       # in an instance we lead: a queued copy is redundant
                seen.update(seq for origin, seq, _ in proposals_of(inflight.value) if origin == node.id)
            for origin, seq, _ in pg.pending:
                if origin != node.id or seq in seen or seq not in outstanding:
                    continue
                seen.add(seq)
                if seq < last:
                    self.oracle.violate("node %d group %d: its own proposals are queued out of order (seq %d after "
                                        "%d)" % (node.id, slot, seq, last))
                    return
                last = seq

    def fsync_latency(self):
        if self.stall_rate and not self.healed and self.rng.random() < self.stall_rate:
            self.stats["stalls"] += 1
            return self.rng.randint(20_000, 400_000)
        return self.rng.randint(50, 1500)

    # ------------------------------------------------------------------ the network and what the oracle sees
    def transmit(self, node, messages):
        per_dest = {}
        oracle = self.oracle
        engine = node.loop.engine if node.loop is not None else None
        for dest, msg in messages:
            per_dest.setdefault(dest, []).append(msg)
            kind = msg.kind
            group = group_key(msg.group, msg.inc)
            if kind == ACCEPTED or kind == PROMISE:
                if engine is not None and engine.group_status(msg.group) != 0:
                    oracle.violate("node %d sent %s for group %s while it was not a voter (%s)"
                                   % (node.id, "a vote" if kind == ACCEPTED else "a promise", group,
                                      engine.group_view(msg.group)["status"]))
                oracle.check_rebuilt(node.id, group, "a vote" if kind == ACCEPTED else "a promise",
                                     group in node.seen_rebuilding)
                if kind == ACCEPTED:
                    oracle.on_vote(node.id, group, msg.instance, msg.ballot)
                else:
                    oracle.on_promise_sent(node.id, group, msg.ballot)
            elif kind == ACCEPT:
                oracle.on_accept_sent(group, msg.instance, msg.ballot, msg.value)
                # A leader acts only below its chosen mark + window (the mark rides in the Accept): past it, the
                # values it has not learned yet could decide who votes there (membership's config(j)).
                if msg.instance >= msg.mark + self.window:
                    oracle.violate("node %d sent an Accept for group %s instance %d with its chosen mark at %d: "
                                   "past mark + window (%d)" % (node.id, group, msg.instance, msg.mark, self.window))
            elif kind == PREPARE:
                # A ballot leaves only once this node's own acceptor promised it (durably: prepares leave after
                # the write), so a restart can never reuse a ballot that peers may have promised and voted under.
                if engine is not None and engine.hosts(msg.group) and \
                        engine.group_view(msg.group)["promised"] < msg.ballot:
                    oracle.violate("node %d sent a Prepare of ballot %d for group %s that its own acceptor had not "
                                   "promised (a restart may reuse the ballot)" % (node.id, msg.ballot, group))
            elif kind == CATCHUP_REPLY:
                for instance, _, value in decode_entries(msg.value) if msg.value else ():
                    oracle.on_served(node.id, group, instance, value)
            elif kind == FORWARD:
                self._check_forward(node, dest, group, msg)
            elif kind == SNAP_CHUNK and "damage" in self.faults and msg.value and self.rc.random() < 0.05:
                # A bit flipped in flight under a frame checksum computed after it (a faulty NIC or proxy):
                # the chunk's own crc32c must catch it, and the chunk is fetched again.
                damaged = bytearray(msg.value)
                damaged[self.rc.randrange(len(damaged))] ^= 1 << self.rc.randrange(8)
                per_dest[dest][-1] = Message(kind, msg.group, msg.instance, msg.ballot, msg.mark, msg.aux, msg.chain,
                                             bytes(damaged), msg.flags, msg.src, msg.inc)
                self.stats["chunks_damaged"] = self.stats.get("chunks_damaged", 0) + 1
        for dest, msgs in per_dest.items():
            frame = encode_frame(CLUSTER_ID, node.id, dest, msgs)
            self.stats["frames"] += 1
            self.stats["messages"] += len(msgs)
            for delay in self.net.deliveries(node.id, dest):
                if self.long_delay and self.rng.random() < self.long_delay:
                    delay += self.rng.randint(20_000, 250_000)
                self.at(node.local_now + delay, DELIVER, dest, frame)

    def _check_forward(self, node, dest, group, msg):
        """A FORWARD carries each proposal (origin, seq) once, and at most max_batch_bytes of payload unless it
        is one proposal alone. A node that holds a relayed proposal twice forwards both copies, and the copies
        double at every move of mastership (nemesis seed 116: 100 MB messages)."""
        entries = decode_batch(msg.value)
        keys = [(e[0], e[1]) for e in entries]
        if len(set(keys)) != len(keys):
            twice = sorted(k for k in set(keys) if keys.count(k) > 1)
            self.oracle.violate("node %d forwarded proposal(s) %s more than once in one FORWARD to node %d "
                                "(group %s)" % (node.id, twice[:3], dest, group))
        size = sum(len(e[2]) for e in entries)
        if len(entries) > 1 and size > self.core_config.max_batch_bytes:
            self.oracle.violate("node %d sent a FORWARD of %d proposals and %d bytes to node %d (group %s): more "
                                "than max_batch_bytes %d" % (node.id, len(entries), size, dest, group,
                                                              self.core_config.max_batch_bytes))

    def _observe(self, node, fx):
        engine = node.loop.engine if node.loop is not None else None
        if engine is None:
            return
        incarnation = engine.incarnation_of
        snapshots = node.loop.snapshots
        for group in snapshots.swapped:
            # A snapshot swapped in by this cycle's write: values the engine learned right above it (buffered
            # ones, or a catch-up reply of the same turn) are in this very batch, applied after the swap.
            inc = snapshots.incoming.get(group)
            if inc is not None and engine.hosts(group):
                self.oracle.on_install(node.id, group_key(group, incarnation(group)), inc.applied)
        for group, instance, ballot in fx.self_votes:
            if engine.hosts(group):
                key = group_key(group, incarnation(group))
                self.oracle.check_rebuilt(node.id, key, "a vote", key in node.seen_rebuilding)
                self.oracle.on_vote(node.id, key, instance, ballot)
        for group, instance, value in fx.chosen:
            if engine.hosts(group):
                self.oracle.on_learn(node.id, group_key(group, incarnation(group)), instance, value)

    # ------------------------------------------------------------------ clients
    def client_send(self, client, node_id, frame):
        self.at(self.now + self.rng.randint(50, 500), CLIENT_DELIVER, node_id, (client.identity, frame))

    def _to_client(self, node, identity, frame):
        self.at(node.local_now + self.rng.randint(50, 500), CLIENT_REPLY, node.id, (identity, frame))

    def client_timer(self, client, req_id, when):
        self.at(when, CLIENT_TIMER, 0, (client.identity, req_id))

    def client_retry(self, client, when, node):
        self.at(when, CLIENT_RETRY, node or 0, client.identity)

    def client_idle(self, client, now):
        if self.ending:
            return
        if isinstance(client, ProbeClient):
            self.at(now + 1000, CLIENT_START, 0, client.identity)
        elif now < (self.cfg.fault_ms + self.cfg.heal_ms // 2) * 1000:
            self.at(now + self.rng.randint(*self.think_us), CLIENT_START, 0, client.identity)

    def on_acknowledged(self, hop, instance, status):
        """A client got an answer to a write: it must come from the chosen log at that instance."""
        self.stats["acked"] += 1
        if hop.group in self.regrouped:
            return                  # which incarnation answered is not known here; the oracle checks agreement
        chosen = self.oracle.chosen.get((hop.group, instance))
        client_id, seq = hop.id
        if chosen is None or not _holds_command(chosen, client_id, seq):
            self.oracle.violate("client %d seq %d got an answer from group %d instance %d, which does not hold "
                                "its command" % (client_id, seq, hop.group, instance))


    # ------------------------------------------------------------------ faults and workload
    def _plan(self):
        cfg = self.cfg
        r = self.rng
        fault_end = cfg.fault_ms * 1000
        for identity in self.clients:
            self.at(r.randint(0, 50_000), CLIENT_START, 0, identity)
        if "crash" in self.faults or "torn" in self.faults:
            for _ in range(r.randint(1, 2 * cfg.nodes)):
                t = r.randint(0, fault_end)
                node = self.nodes[r.choice(self.node_ids)]
                node.crash_times.append(t)
                self.at(t, CRASH, node.id)
                self.at(min(t + r.randint(20_000, 600_000), fault_end), RESTART, node.id)
        if "pause" in self.faults:
            for _ in range(r.randint(1, 2 * cfg.nodes)):
                t = r.randint(0, fault_end)
                length = r.randint(5_000, 3 * cfg.lease_ticks * cfg.tick_us)
                if r.random() < 0.5:
                    self.at(t, PAUSE, r.choice(self.node_ids), length)
                else:
                    # Stop whichever node is then a group's master (SIGSTOP of a master with clients on it).
                    self.at(t, PAUSE, 0, (length, r.choice(self.group_ids)))
        damage_kinds = [k for k in ("damage", "amnesia") if k in self.faults]
        if "regroup" in self.faults and (not damage_kinds or r.random() < 0.3):
            # A node whose storage is lost forgets the groups changed at run time (their registry lives with the
            # data): in half these seeds it does, and the operator puts them back on it (_restore_regrouped).
            if damage_kinds and r.random() < 0.5:
                damage_kinds = []
            self.regroup_after_loss = bool(damage_kinds)
            group = r.choice(self.group_ids)
            first = [n for n in self.node_ids if r.random() < 0.6] or [r.choice(self.node_ids)]
            rest = [n for n in self.node_ids if n not in first]
            t = r.randint(0, fault_end // 2)
            self.at(t, REGROUP, 0, ("remove", group, first))
            self.at(t + r.randint(5_000, 300_000), REGROUP, 0, ("add", group, first))
            t2 = t + r.randint(100_000, fault_end // 2)
            if rest:
                self.at(t2, REGROUP, 0, ("remove", group, rest))
                self.at(t2 + r.randint(5_000, 300_000), REGROUP, 0, ("add", group, rest))
        if damage_kinds:
            for _ in range(r.randint(1, cfg.nodes)):
                t = r.randint(100_000, fault_end - 50_000)
                kind = r.choice(damage_kinds)
                node = self.nodes[r.choice(self.node_ids)]
                node.crash_times.append(t)
                self.at(t, DAMAGE, node.id, kind)
                self.at(min(t + r.randint(20_000, 400_000), fault_end), RESTART, node.id)
        for node in self.nodes.values():
            node.crash_times.sort()
        if "partition" in self.faults:
            for _ in range(r.randint(1, 6)):
                t = r.randint(0, fault_end)
                node = r.choice(self.node_ids)
                mode = r.choice((None, "in", "out", "pair", "master"))
                other = r.choice([n for n in self.node_ids if n != node])
                end = min(t + r.randint(50_000, 800_000), fault_end)
                if mode == "master":
                    end = min(t + r.randint(500_000, 2_000_000), fault_end)     # long enough for a takeover
                    # Cut off whichever node is then the master of a group (decided when it happens).
                    self.at(t, PARTITION, 0, (mode, (r.choice(self.group_ids), end)))
                else:
                    self.at(t, PARTITION, node, (mode, other))
                    self.at(end, UNPARTITION, node, (mode, other))
        if self.member:
            rm = self.rm
            for _ in range(rm.randint(1, 2 + len(self.group_ids) // 4)):
                t = rm.randint(0, fault_end - 200_000)
                self.at(t, MEMBER, 0, (rm.choice(self.group_ids), rm.random(), rm.random()))
        self.at(fault_end, HEAL)
        self.at(fault_end + 1, PROBE)
        self.at((cfg.fault_ms + cfg.heal_ms) * 1000 - 500_000, MARKS)
        self.at(r.randint(0, 5000), LEASE_CHECK)

    def _member_change(self, time_us, group, how, when):
        """The membership driver: the group adopts other voters (one or two of its three replaced by nodes that
        do not vote), as the system group's driver will, by asking every node; again twice later (a node that
        led when asked may have lost the request in a crash), which changes nothing once it is adopted."""
        epoch, voters = self.member_epochs.get(group, (1, self.first_voters))
        others = [n for n in self.node_ids if n not in voters]
        out = 2 if how < 0.3 else 1
        keep = sorted(voters)
        for _ in range(out):
            keep.pop(int(when * len(keep)) % len(keep))
        new = tuple(sorted(keep + others[:out] if how < 0.5 else keep + others[-out:]))
        self.member_epochs[group] = (epoch + 1, new)
        self._trace(time_us, "member", group, epoch + 1, new)
        self.stats["member_changes"] = self.stats.get("member_changes", 0) + 1
        for delay in (0, 200_000, 600_000):
            self.at(time_us + delay, REGROUP, 0, ("adopt-all", group, (epoch + 1, new)))

    def _first_for_add(self, group):
        """The first configuration an add of `group` names (Client.add_group): the voters the newest table
        places it on; empty (the first voters) before there is a table or outside cluster mode."""
        table = self.newest_table()
        if self.member_mode != "cluster" or table["epoch"] < 1:
            return b""
        return config_state(table["epoch"], table.get("placements", {}).get(str(group), table["voters"]))

    def newest_table(self):
        """The system group's table as the node furthest ahead applied it."""
        tables = [n.loop.membership.table for n in self.nodes.values() if n.loop is not None]
        return max(tables, key=lambda t: t["epoch"]) if tables else {"epoch": 0}

    def client_nodes(self):
        """The nodes clients send to: every node, less those the membership table removed."""
        if self.member_mode != "cluster":
            return list(self.node_ids)
        removed = self.removed_nodes()
        return [n for n in self.node_ids if n not in removed]

    def holders(self, group):
        """The nodes the newest table places `group` on (its placement's voters, else the cluster's, and the
        cluster's learners): the others hand it over (Engine.handoff). Every node outside cluster mode."""
        if self.member_mode != "cluster" or group == SYSTEM_GROUP:
            return set(self.node_ids)
        table = self.newest_table()
        if table["epoch"] < 1:
            return set(self.node_ids)
        voters = table.get("placements", {}).get(str(group), table["voters"])
        return set(voters) | set(table["learners"])

    def removed_nodes(self):
        """Nodes the newest table removed (they leave the cluster: nothing is asked of them any more)."""
        return {n["id"] for n in self.newest_table().get("nodes", ()) if n["role"] == "removed"}

    def _cluster_change(self, time_us, group, how, when):
        """The operator changes the cluster's members through the system group: promotes a learner, swaps a
        voter for a learner, or removes a voter (never below 3), against the epoch it read (compare-and-set);
        the same command again 200 and 600 ms later through other nodes (idempotent: a no-op once done, an
        epoch conflict if another change came first)."""
        table = self.newest_table()
        if table["epoch"] < 1:
            return
        voters, learners = table["voters"], table["learners"]
        choices = []
        if learners:
            new = learners[int(when * len(learners)) % len(learners)]
            choices.append(("promote", {"id": new}))
            choices.append(("swap", {"old": voters[int(how * len(voters)) % len(voters)], "new": new}))
        if len(voters) > 3:
            choices.append(("remove", {"id": voters[int(when * len(voters)) % len(voters)]}))
        # A group placed on 3 of the cluster's nodes (or given back to the cluster's voters), as `group move` does.
        nodes = sorted(voters + learners)
        if len(nodes) >= 3:
            k = int(when * len(nodes))
            place = sorted(nodes[(k + d) % len(nodes)] for d in range(3))
            choices.append(("place", {"group": group, "voters": place if how < 0.8 else None}))
        if not choices:
            return
        op, fields = choices[int(how * 7919) % len(choices)]
        command = encode_change(op, expect=table["epoch"], **fields)
        self._trace(time_us, "cluster-change", command)
        self.stats["cluster_changes"] = self.stats.get("cluster_changes", 0) + 1
        for delay in (0, 200_000, 600_000):
            self.at(time_us + delay, SYSTEM_CHANGE, 0, command)

    def _may_lose_memory(self, node):
        """Storage damage may strike a node only while every other node that lost state has rebuilt, or a
        minority is in that state: a majority that lost its memory at once may have lost chosen values, and
        then the cluster must stop rather than go on (no liveness can be asked of it). In a seed that regroups
        too, a node that ever lost its state stays forgetful: a group added to it later in an incarnation
        others hold rebuilds there (it may have held it before), and a majority of such nodes cannot rebuild
        it (ReplicaLoop.add_group; simulator seed 7,000,746)."""
        forgetful = {n.id for n in self.nodes.values() if n.lost_state or self.regroup_after_loss and n.ever_lost}
        forgetful.add(node.id)
        if self.member:
            return len(forgetful) <= 1          # groups vote on 3 nodes: one of them at most
        return len(forgetful) <= (len(self.node_ids) - 1) // 2

    def _master_of(self, group):
        """The node most up nodes take for the group's master now (0: none)."""
        masters = [int(n.loop.masters.master[n.loop.slot_of(group)]) for n in self.nodes.values() if n.up]
        return max(sorted(set(masters)), key=masters.count) if masters else 0

    def _damage(self, node, kind):
        """Kill the node, then damage its storage (it restarts later)."""
        if node.left:
            return
        self._crashed(node, tear=False)
        disk = node.disk
        node.lost_state = node.ever_lost = True
        if kind == "amnesia":
            disk.wipe()
            node.snapfiles = MemorySnapshotFiles()
            self.stats["amnesia"] += 1
            self._trace("wipe", node.id)
            return
        choice = self.rng.random()
        if choice < 0.4 and disk.damage_wal(self.rng):
            what = "wal"
        elif choice < 0.8 and disk.damage_table(self.rng, accept=lambda k: k[:1] == b"G"):
            what = "table"
        elif choice < 0.9:
            disk.damage_block()
            what = "block"
        else:
            disk.lose_file()
            what = "file"
        self.stats["damage"] += 1
        self._trace("damage", node.id, what)

    def _heal(self):
        self.healed = True
        self.net.heal()
        self.net_faults.loss = 0.0
        self.net_faults.duplicate = 0.0
        self.net_faults.jitter_us = 0
        self.long_delay = 0.0
        for node in self.nodes.values():
            node.crash_times = []
            node.pause = None
            if not node.up:
                self.start_node(node, self.now)

    def _probe(self):
        for group in self.group_ids:
            client = ProbeClient(self, 10_000 + group, random.Random(self.rng.getrandbits(64)), group)
            self.clients[client.identity] = client
            self.at(self.now + self.rng.randint(0, 20_000), CLIENT_START, 0, client.identity)

    # ------------------------------------------------------------------ leases
    def _check_leases(self):
        """At most one node holds a group's master lease at any instant (by each node's own clock)."""
        self.lease_checks += 1
        count = None
        holding = {}
        for node in self.nodes.values():
            loop = node.loop
            if loop is None:
                continue
            ticks = int((node.clock_at(self.now) - loop.origin) / loop.settings.tick_s)
            masters = loop.masters
            n = len(self.group_ids) + 1         # slot 0: the system group; slot g + 1: group g
            held = ((masters.master[:n] == node.id) & (masters.lease_until[:n] > ticks))
            holding[node.id] = (held, loop.engine.inc_array[:n])
            count = held.astype(np.int32) if count is None else count + held
        if count is None or count.max(initial=0) <= 1:
            return
        for slot in np.nonzero(count > 1)[0]:
            by_incarnation = {}
            for node_id, (held, inc) in holding.items():
                if held[slot]:
                    by_incarnation.setdefault(int(inc[slot]), []).append(node_id)
            for incarnation, holders in by_incarnation.items():
                if len(holders) > 1:
                    group = SYSTEM_GROUP if slot == 0 else int(slot) - 1
                    self.oracle.violate("group %s: nodes %s hold the master lease at once"
                                        % (group_key(group, incarnation), holders))

    # ------------------------------------------------------------------ main loop
    def run(self):
        cfg = self.cfg
        for node in self.nodes.values():
            self.start_node(node, 0)
        self._plan()
        end = (cfg.fault_ms + cfg.heal_ms) * 1000
        while self.queue:
            time_us, _, kind, node_id, data = heapq.heappop(self.queue)
            if time_us > end:
                break
            self.now = self.oracle.now = time_us
            self.events += 1
            node = self.nodes.get(node_id)
            if kind == WAKE:
                if node.up and data == node.incarnation and node.next_wake == time_us:
                    self._turn(node)
            elif kind == DELIVER:
                self._trace(time_us, kind, node_id, len(data))
                if node.up:
                    node.inbox.append(data)
                    self._wake(node, time_us)
            elif kind == CLIENT_DELIVER:
                if node.up:
                    node.client_inbox.append(data)
                    self._wake(node, time_us)
            elif kind == CLIENT_REPLY:
                identity, frame = data
                self.clients[identity].on_reply(frame, time_us, node_id)
            elif kind == CLIENT_TIMER:
                identity, req_id = data
                self.clients[identity].on_timer(req_id, time_us)
            elif kind == CLIENT_RETRY:
                self.clients[data].retry_now(time_us, node_id or None)
            elif kind == CLIENT_START:
                client = self.clients[data]
                if client.op is None and not self.ending and time_us < self.quiet_at:
                    client.next_operation(time_us)
                    if client.op is not None:
                        self.history.extend(client.op.ops)
                        self.stats["ops"] += len(client.op.ops)
            elif kind == CRASH:
                self._trace(time_us, kind, node_id)
                if node.up and node.busy_until <= time_us:
                    node.local_now = time_us
                    self._crashed(node)
            elif kind == DAMAGE:
                self._trace(time_us, kind, node_id, data)
                if node.crash_times and node.crash_times[0] <= time_us:
                    node.crash_times.pop(0)
                if self._may_lose_memory(node):
                    self._damage(node, data)
                else:
                    self.stats["damage_skipped"] = self.stats.get("damage_skipped", 0) + 1
                    if node.up and node.busy_until <= time_us:
                        node.local_now = time_us
                        self._crashed(node)
            elif kind == RESTART:
                self._trace(time_us, kind, node_id)
                if not node.up and not self.healed:
                    self.start_node(node, time_us)
            elif kind == PAUSE:
                self._trace(time_us, kind, node_id, data)
                if not node_id:
                    length, group = data
                    node_id = self._master_of(group)
                    node, data = self.nodes.get(node_id), length
                if node is not None and node.up:
                    node.pause = (time_us, data)
            elif kind == PARTITION and data[0] == "master":
                group, until = data[1]
                master = self._master_of(group)
                self._trace(time_us, kind, master, data)
                if master:
                    self.net.isolate(master, self.node_ids)
                    self.at(max(until, time_us + 1), UNPARTITION, master, (None, 0))
                    if "pause" in self.faults and self.rng.random() < 0.5 and self.nodes[master].up:
                        # A frozen VM that also lost its network: it resumes late, still cut off, believing
                        # whatever it believed (its clients can still reach it).
                        span = until - time_us
                        self.nodes[master].pause = (time_us, self.rng.randint(span * 6 // 10, span * 95 // 100 + 1))
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
            elif kind == REGROUP and data[0] == "adopt-all":
                _, group, (epoch, voters) = data
                for target in self.nodes.values():
                    target.regroup_ops.append(("adopt", group, epoch, voters))
                    if target.up:
                        self._wake(target, time_us)
            elif kind == REGROUP:
                what, group, targets = data
                self._trace(time_us, kind, what, group, targets)
                self.regrouped.add(group)
                op = (what, group)
                if what == "add":
                    # The operator's add names the voters the group starts on, the same for every node of the
                    # incarnation, as Client.add_group does: the seed's two adds (each on some of the nodes) make
                    # one incarnation, so the second names the voters the first did.
                    if group not in self.regroup_first:
                        self.regroup_first[group] = self._first_for_add(group)
                    op = (what, group, self.regroup_first[group])
                for n in targets:
                    target = self.nodes[n]
                    target.regroup_ops.append(op)
                    if target.up:
                        self._wake(target, time_us)
            elif kind == MEMBER and self.member_mode == "cluster":
                self._cluster_change(time_us, *data)
            elif kind == MEMBER:
                self._member_change(time_us, *data)
            elif kind == SYSTEM_CHANGE:
                # An operator's command, through one node (a random up one: the one that drove it before may
                # have crashed); idempotent, so sent again later.
                up = [n for n in self.nodes.values() if n.up]
                if up:
                    target = self.rm.choice(up)
                    target.regroup_ops.append(("system", SYSTEM_GROUP, data))
                    self._wake(target, time_us)
            elif kind == MARKS:
                # What every node must have learned by the end: all that any node had 500 ms before it (the
                # replica layer's own renewals may still choose instances in the very last moments).
                self.convergence_marks = {g: max((n.loop.engine.learned(g)[0] for n in self.nodes.values()
                                                  if n.up and n.loop.engine.hosts(g)), default=0) for g in self.group_ids}
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
        self.ending = True
        if not self.oracle.violations:
            self._check_end()
        self.hash.update(b"end")
        return SimResult(cfg.seed, self.hash.hexdigest(), list(self.oracle.violations), self.events,
                         len(self.oracle.chosen), self.stats["acked"], self.stats["ops"], self.crashes,
                         dict(self.stats))

    # ------------------------------------------------------------------ end of run
    def _check_end(self):
        oracle = self.oracle
        removed = self.removed_nodes()       # they left the cluster: nothing is asked of them at the end
        live = [n for n in self.nodes.values() if n.up and n.id not in removed]
        for group in self.group_ids:
            probe = self.probe_ops.get(group)
            if probe is None or probe.outcome != "ok":
                states = {n.id: (n.loop.engine.group_view(group) if n.up and n.loop.engine.hosts(group) else "absent")
                          for n in self.nodes.values()}
                oracle.violate("liveness: group %d accepted no write within %d ms of the heal; nodes: %s"
                               % (group, self.cfg.heal_ms, _brief(states)))
                continue
            holders = self.holders(group)
            for n in live:
                if n.id not in holders and n.loop.engine.hosts(group):
                    oracle.violate("liveness: group %d is placed on nodes %s, yet node %d still holds it at the end"
                                   % (group, sorted(holders), n.id))
                elif n.id not in holders:
                    self.stats["handed_over"] = self.stats.get("handed_over", 0) + 1     # coverage
            marks = {n.id: (n.loop.engine.learned(group)[0], n.loop.engine.incarnation_of(group))
                     if n.loop.engine.hosts(group) else "absent" for n in live if n.id in holders}
            floor = self.convergence_marks.get(group, 0)
            if (len({m[1] if m != "absent" else 0 for m in marks.values()}) != 1
                    or any(m == "absent" or m[0] < floor for m in marks.values())):
                oracle.violate("liveness: group %d's nodes did not converge after the heal (each must reach %d): %r"
                               % (group, floor, marks))
            for n in self.nodes.values():
                if n.id in removed or n.id not in holders:
                    continue
                status = n.loop.engine.group_view(group)["status"] if n.up and n.loop.engine.hosts(group) else "down"
                if status != "ok":
                    oracle.violate("liveness: group %d is %s on node %d at the end" % (group, status, n.id))
        unseeded = sorted(n.id for n in live if n.loop.membership.seed and n.loop.sm.membership_table()["epoch"] < 1)
        if unseeded:
            oracle.violate("liveness: the system group's table is not seeded on node(s) %s at the end" % unseeded)
        if self.member_mode == "cluster":
            # Every group, the system group included, adopted the newest table's voters on every live node: its
            # ADOPT is chosen and known there (an idle group's last no-ops up to the activation may not be).
            table = self.newest_table()
            voters = tuple(table["voters"])
            for n in live:
                if n.loop.membership.epoch != table["epoch"]:
                    oracle.violate("liveness: node %d's driver knows epoch %d of the table at the end, not %d"
                                   % (n.id, n.loop.membership.epoch, table["epoch"]))
                    continue
                for group in self.group_ids + [SYSTEM_GROUP]:
                    engine = n.loop.engine
                    if not engine.hosts(group):
                        continue        # handed over (judged above)
                    latest = engine.latest_config(group)[1]
                    wanted = tuple(table.get("placements", {}).get(str(group), voters))
                    if latest != wanted:
                        oracle.violate("liveness: group %d adopted %s on node %d at the end, not epoch %d's %s"
                                       % (group, latest, n.id, table["epoch"], wanted))
        if oracle.violations:
            return
        self._check_bounded_logs()
        self._check_replica_states()
        if oracle.violations:
            return
        if self.sm_model is None:
            self._check_history()
        else:
            self._check_session_order({g: self.oracle.logs.get(g, []) for g in self.group_ids
                                       if g not in self.regrouped})

    def _watch_retention(self, node, loop):
        """Keep what the last retention run of `node` saw and left (a run that was not cut short by its per-turn
        cap and found every CHAIN record it needed), for _check_bounded_logs."""
        retention = loop.retention
        run = retention.run

        def watched():
            pins = dict(loop.snapshots.pins())
            skipped = retention.skipped
            done = run()
            if done >= retention.groups_per_turn or retention.skipped != skipped:
                node.retention_last = None
                return done
            engine, sm, learner = loop.engine, loop.sm, loop.engine.learner
            node.retention_last = (pins, {g: (sm.applied_next(g), int(learner.chosen_next_array[k]),
                                              int(learner.low_array[k]), int(learner.learned_bytes_array[k]),
                                              int(learner.low_bytes_array[k]), int(learner.peer_floor_array[k]))
                                          for g in engine.groups() if engine.group_status(g) == 0
                                          for k in (loop.slot_of(g),)})
            held = sum(1 for v in node.retention_last[1].values() if 0 < v[5] < v[0])
            if held:
                self.stats["floor_held"] = self.stats.get("floor_held", 0) + held     # coverage: the floor acted
            return done
        retention.run = watched

    def _check_bounded_logs(self):
        """With retention on, a log is bounded after every retention run that was not cut short, for each group
        whose log no snapshot file pinned: it holds fewer than retain_instances + 128 applied values (the cut
        is a multiple of 64 at or below applied - retain_instances, made once it moves the low mark by 64);
        with retain_bytes, where everything learned was applied, its values weigh at most retain_bytes unless
        fewer than 128 are left (the cut by weight is a multiple of 64 too). Checked on each node's last run.
        Where the peers' floor is below the applied mark, the log may also keep what lies between the floor and
        the applied mark, but never more than peer_lag_instances (and peer_lag_bytes) beyond those limits."""
        if self.retain_instances < 0:
            return
        for node in self.nodes.values():
            last = getattr(node, "retention_last", None)
            if not node.up or node.loop is None or not last:
                continue
            pins, groups = last
            for group, (applied, chosen, low, learned_bytes, low_bytes, floor) in groups.items():
                if group in pins:
                    continue
                pinned = self.peer_lag_instances and 0 < floor < applied
                keep = self.retain_instances
                if pinned:
                    keep += min(applied - floor, self.peer_lag_instances)
                ahead = applied - low
                if ahead >= keep + 128:
                    self.oracle.violate("node %d group %d: its log holds %d applied values after a retention run "
                                        "that keeps %d (peers' floor %d)" % (node.id, group, ahead, keep, floor))
                weight = learned_bytes - low_bytes
                keep_bytes = self.retain_bytes + (self.peer_lag_bytes if pinned else 0)
                if self.retain_bytes and applied == chosen and ahead >= 128 and weight > keep_bytes:
                    self.oracle.violate("node %d group %d: its log's %d values weigh %d bytes after a retention "
                                        "run that keeps %d (peers' floor %d)" % (node.id, group, ahead, weight,
                                                                                keep_bytes, floor))

    def _reference_machine(self):
        """A reference state machine as a node's worker has it (the cluster's, and the membership table for the
        system group), with an applier of its own: (state machine, applier)."""
        store = MemoryStore()
        reference = WithSystemGroup((self.sm_factory or kv.KVStateMachine)(store), MembershipStateMachine(store))
        masters = MasterTable(0xFFFF, self.cfg.groups + 1, self.cfg.lease_ticks, self.lease_margin)
        return reference, Applier(0xFFFF, reference, masters, store, lambda g: 0 if g == SYSTEM_GROUP else g + 1)

    def _reference_at(self, group, mark):
        """The state (snapshot bytes) that applying the chosen log of `group` up to `mark` gives, from a
        reference state machine kept per group (rebuilt when an earlier mark is asked for); None if the
        chosen log is shorter."""
        values = self.oracle.logs.get(group, [])
        if mark > len(values):
            return None
        ref = self._references.get(group)
        if ref is None or ref[0] > mark:
            reference, applier = self._reference_machine()
            ref = [0, reference, applier]
            self._references[group] = ref
        if mark > ref[0]:
            ref[2].apply([(group, i, values[i]) for i in range(ref[0], mark)], 0)
            ref[0] = mark
        return ref[1].snapshot(group)

    def _check_state_at_mark(self, node, group):
        """Right after a restart of a node whose log of `group` is truncated: its state machine holds exactly
        the state the chosen log gives at its applied mark (a truncation or a snapshot install that a crash
        cut in two would leave something else)."""
        if group in self.regrouped:
            return
        mark = node.loop.sm.applied_next(group)
        expected = self._reference_at(group, mark)
        if expected is not None and node.loop.sm.snapshot(group) != expected:
            self.oracle.violate("node %d group %d: after a restart its state machine state at instance %d is not "
                                "the state the chosen log gives there" % (node.id, group, mark))

    def _check_replica_states(self):
        """Every replica's state machine holds exactly the state that applying the chosen log up to its own
        applied mark gives (a reference state machine replays it through the real applier): compared as
        snapshots (data, sessions, applied mark). Catches a non-deterministic state machine, and any replica
        that applied something else, twice, or out of order."""
        for group in self.group_ids + [SYSTEM_GROUP]:
            if group in self.regrouped:
                continue              # its data restarted with a new incarnation: not this log's
            values = self.oracle.logs.get(group, [])
            by_mark = {}
            for n in self.nodes.values():
                if n.up and n.loop.engine.hosts(group):
                    by_mark.setdefault(n.loop.sm.applied_next(group), []).append(n)
            reference, applier = self._reference_machine()
            done = 0
            for mark in sorted(by_mark):
                if mark > len(values):
                    self.oracle.violate("group %d: node(s) %s applied %d instances, the chosen log holds %d"
                                        % (group, [n.id for n in by_mark[mark]], mark, len(values)))
                    break
                if mark > done:
                    applier.apply([(group, i, values[i]) for i in range(done, mark)], 0)
                    done = mark
                expected = reference.snapshot(group)
                for n in by_mark[mark]:
                    if n.loop.sm.snapshot(group) != expected:
                        self.oracle.violate("group %d: node %d's state machine state at instance %d differs from "
                                            "the state the chosen log gives (a non-deterministic state machine?)"
                                            % (group, n.id, mark))

    def _check_session_order(self, logs):
        """A session's commands first reach the log in the order of their seqs. A client sends a session's
        next request only after the previous one was applied, and a worker proposes a batch's entries one
        after another, so a command can only be chosen again (a duplicate, a retry) after its first time, never
        ahead of an earlier command. Out of order, exactly-once breaks: the later command is refused
        (SESSION_UNKNOWN, "nothing applied") and then applied by a copy of itself."""
        for group, values in logs.items():
            seen, latest = set(), {}        # a duplicate of an older command is allowed
            for instance, value in enumerate(values):
                for cid, seq in _session_commands(value):
                    if (cid, seq) in seen:
                        continue
                    seen.add((cid, seq))
                    last = latest.get(cid)
                    if last is not None and seq < last[0]:
                        self.oracle.violate("group %d: session %d's command %d first chosen at instance %d, after its "
                                            "command %d (instance %d): one session's commands out of order"
                                            % (group, cid, seq, instance, last[0], last[1]))
                        return
                    latest[cid] = (seq, instance)

    def _check_history(self):
        """Every operation against the log: linearizable reads and writes, exactly-once, no lost write."""
        from ..check.history import NOT_OBSERVED, Op
        from ..check.logorder import check_log_order

        logs = {g: self.oracle.logs.get(g, []) for g in self.group_ids if g not in self.regrouped}
        self._check_session_order(logs)
        applied = applied_changes(logs, self.cfg.groups, self.cfg.lease_ticks, self.lease_margin)
        ops = []
        for hop in self.history:
            if hop.outcome == "fail" and hop.kind == "read" or hop.group in self.regrouped:
                continue
            ops.append(Op(id=hop.id, key=(hop.group, hop.key), kind=hop.kind, value=hop.value, expected=hop.expected,
                          invoke=hop.invoke, complete=hop.complete if hop.outcome == "ok" else None,
                          outcome=hop.outcome, result=hop.result, stale=hop.mode == "stale",
                          observed=hop.observed if hop.observed is not _UNSEEN else NOT_OBSERVED,
                          client=hop.id[0]))
        result = check_log_order(ops, applied)
        for anomaly in result.anomalies[:5]:
            self.oracle.violate("history: %s" % anomaly)


def _session_commands(value):
    """[(client id, seq)] of the session commands in a chosen value, in log order (seq without the flag)."""
    out = []
    for _, _, payload in proposals_of(value):
        kind = envelope.kind(payload)
        if kind == envelope.CLIENT:
            _, cid, s, _ = envelope.decode_client(payload)
            if cid:
                out.append((cid, s & kv.SEQ_MASK))
        elif kind == envelope.CLIENT_BATCH:
            _, cid, first, ops = envelope.decode_client_batch(payload)
            if cid:
                first &= kv.SEQ_MASK
                out.extend((cid, first + k) for k in range(len(ops)))
    return out


def _brief(states):
    out = {}
    for node, view in states.items():
        if isinstance(view, str):
            out[node] = view
        else:
            out[node] = "%s %s chosen=%d known=%d promised=%x ballot=%x pref=%d%s" % (
                view["status"], view["role"], view["chosen_next"], view["known_mark"], view["promised"],
                view["ballot"], view["preferred"], " repair=%s" % view["repair"] if view["repair"] else "")
    return out


def _holds_command(value, client_id, seq):
    for _, _, payload in proposals_of(value):
        kind = envelope.kind(payload)
        if kind == envelope.CLIENT:
            _, cid, s, _ = envelope.decode_client(payload)
            if cid == client_id and s & kv.SEQ_MASK == seq:
                return True
        elif kind == envelope.CLIENT_BATCH:
            _, cid, first, ops = envelope.decode_client_batch(payload)
            first &= kv.SEQ_MASK
            if cid == client_id and first <= seq < first + len(ops):
                return True
    return False


class _RecordingKV(kv.KVStateMachine):
    """The KV state machine, noting every state change it applies (for the history check)."""

    def __init__(self, store):
        super().__init__(store)
        self.changes = {}        # (group, key) -> [(op id, new value)]
        self.retried = set()     # orders (instance << 32 | position) answered from a session, not applied

    def _retry(self, g, cid, session, order):
        self.retried.add(order)
        return super()._retry(g, cid, session, order)

    def apply_batch(self, group, batch):
        self.retried = set()
        results = super().apply_batch(group, batch)
        for (instance, commands), res in zip(batch, results):
            for position, ((client_id, seq, op), result) in enumerate(zip(commands, res)):
                status = kv.decode_result(result).status
                if status != kv.OK or not op or (instance << 32 | position) in self.retried:
                    continue
                kind = op[0]
                key = op[5:5 + int.from_bytes(op[1:5], "big")]
                if kind == kv.OP_PUT:
                    start = 9 + len(key)
                    new = op[start:]
                elif kind == kv.OP_CAS:
                    pos = 5 + len(key)
                    elen = int.from_bytes(op[pos:pos + 4], "big")
                    pos += 4 + (0 if elen == kv.ABSENT else elen)
                    nlen = int.from_bytes(op[pos:pos + 4], "big")
                    new = None if nlen == kv.ABSENT else op[pos + 4:pos + 4 + nlen]
                elif kind == kv.OP_DELETE:
                    new = None
                else:
                    continue
                self.changes.setdefault((group, key), []).append(((client_id, seq & kv.SEQ_MASK), new))
        return results


def applied_changes(logs, n_groups, lease_ticks, margin):
    """Replay the chosen log of every group through the real applier (fencing included) and a recording KV
    state machine: the state changes in the order every replica applies them."""
    store = MemoryStore()
    sm = _RecordingKV(store)
    masters = MasterTable(0xFFFF, n_groups, lease_ticks, margin)
    applier = Applier(0xFFFF, sm, masters, store, lambda g: g)
    for group in sorted(logs):
        values = logs[group]
        if values:
            applier.apply([(group, i, v) for i, v in enumerate(values)], 0)
    return sm.changes


def run_seed(cfg):
    import logging
    import traceback

    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)      # a run logs what a cluster would: thousands of lines per seed
    sim = Simulation(cfg)
    try:
        return sim.run()
    except Exception as exc:
        # A crash of the code under test is a failure of the seed, reported with where it happened.
        where = traceback.extract_tb(exc.__traceback__)[-3:]
        sim.oracle.violate("exception %s: %s at %s" % (type(exc).__name__, exc, " <- ".join(
            "%s:%d %s" % (f.filename.rsplit("/", 1)[-1], f.lineno, f.name) for f in reversed(where))))
        return SimResult(cfg.seed, sim.hash.hexdigest(), list(sim.oracle.violations), sim.events,
                         len(sim.oracle.chosen), sim.stats["acked"], sim.stats["ops"], sim.crashes, dict(sim.stats))
    finally:
        logging.disable(previous)

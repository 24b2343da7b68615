"""The replica loop: everything one worker does per turn, sans-I/O, driven by the worker process AND the simulator.

A worker hosts the groups ``g % workers == index`` of one node. Each turn, its driver hands the loop what
arrived during one poll (every peer message, every client request) and the loop:

  1. reads the clock and ticks the engine (timers, retransmissions) BEFORE it counts any reply; a turn that
     starts much later than the poll was meant to last (a pause, a stall) drops this node's own leases;
  2. steps the engine with every peer message of the poll, in one receive;
  3. handles the client requests: proposals and barriers go to the engine when this node is the group's
     master (a barrier from any node), others are redirected or held until a master is known; lease reads
     are only queued here;
  4. runs the replica layer's timers when the tick advanced (claims, catch-up);
  4a. truncates logs past what their state machines durably applied (replica/retention.py) and does the
     turn's snapshot work (replica/snapshots.py: build and send files, stage received chunks, swap a verified
     snapshot in); their records and state machine writes go into step 5's one write;
  5. runs ONE effect cycle (replica/cycle.py: send early, ONE synced write, send late, serve catch-up from
     the now durable log, persisted), then handles groups that stopped (before anything of theirs is
     applied), lets the state machine and master table re-read a group a snapshot was swapped into, applies the chosen values (master table and state machine, one store batch) and answers what
     they complete: a write is acknowledged only once chosen AND applied; only then are requests past their
     deadline told Timeout (one whose value this very cycle applied gets its result instead);
  6. answers the queued lease reads: the clock is read again at this decision, and the master answers only
     while it holds its lease, leads the group's Paxos (so no other node can get a value chosen behind its
     back) and has applied every instance it knows chosen, i.e. every one it may have announced;
  7. the driver then takes the replies (``take_replies``): lease replies are checked against a fresh clock
     read once more just before they leave.

The loop touches no socket, file, thread or global randomness. Its constructor takes the ports: ``clock()``
(monotonic seconds), ``log`` (``write`` durable on return, ``read_chosen``, ``read_chain``, ``recover``,
``delete_group``), ``store`` (the state machine's Store, written unsynced: the next synced log write makes it
durable) and ``send(list of (dest, Message))``. ``runtime/worker.py`` brings ZeroMQ, RocksDB and the real
clock; ``sim/simulation.py`` brings its network, disk and clock, so it tests the production order of
operations, not a model of it.
"""
import json
import logging
import os
import random
from dataclasses import dataclass

import numpy as np

from ..core.config import SYSTEM_GROUP, shard_of
from ..core.engine import GROUP_OK, GROUP_REPAIRING, GROUP_STOPPED, Engine
from ..core.voters import ADOPT_TAG, first_config
from ..errors import GroupStopped, ValueTooLarge
from ..wire import rpc
from ..histogram import BATCH_BUCKETS, LATENCY_BUCKETS, Histogram
from ..statemachine.kv import KVStateMachine
from ..statemachine.membership import MembershipStateMachine
from ..statemachine.system import WithSystemGroup
from ..storage.records import group_record, repair_record
from . import envelope
from .applier import APPLIED, BARRIER, CLAIMED, FENCED, Applier, master_key
from .cycle import run_cycle
from .master import MasterTable
from .membership_driver import INTERNAL, MembershipDriver
from .retention import Retention
from .snapshots import Snapshots
from .staged import StagedStore

log = logging.getLogger("paxos_core.worker")

SLOW_WRITE_SECONDS = 0.1              # a synced write this long is counted and reported
# Operations that change which groups exist: only a connection with the cluster's credentials may run them.
ADMIN_OPS = {rpc.ADD_GROUP: "ADD_GROUP", rpc.REMOVE_GROUP: "REMOVE_GROUP"}
# Connections that asked for master-change events (SUBSCRIBE) are kept up to this many, the most recent ones: a
# client that connects and subscribes over and over (no credentials needed) costs bounded memory and bounded
# work per event. Subscribing again refreshes a connection's place; the oldest is forgotten beyond the bound.
MAX_SUBSCRIBERS = 1024
ADMIN_REFUSED = ("%s refused: administrative operations need the cluster's credentials (a CURVE key of a "
                 "member, as Client.from_cluster_dir and the CLI use); nothing was changed")


@dataclass
class LoopSettings:
    """What the loop needs to know besides the protocol core's CoreConfig (times in ticks)."""
    node_id: int
    index: int = 0                   # this worker's index: it hosts groups g % workers == index
    workers: int = 1
    tick_s: float = 0.01             # one tick of the clock, in seconds
    lease_ticks: int = 300           # the master lease as other nodes count it
    lease_margin: float = 0.3        # the part of the lease the master gives up for clock-rate differences
    max_pending: int = 20000         # requests waiting per worker before new ones get Overloaded
    max_value_bytes: int = 1 << 20   # also the largest query a read may carry
    # The highest group id a request may add. Per-group state is arrays indexed by slot, so hosting group g
    # costs memory for every slot up to g's: without a bound, 13 bytes (ADD_GROUP 2**32-1) asked for 16 GiB.
    max_group_id: int = (1 << 20) - 1
    request_timeout_ticks: int = 500     # a request's deadline when the client gives none
    max_request_timeout_ms: int = 60000  # a timeout a client gives is capped at this (limits.max_request_timeout_ms)
    max_stale_lag: int = 1000        # a stale read is refused (NotMaster) further behind than this (instances)
    batch_envelope: bool = True      # a PROPOSE_BATCH is ONE proposal (CLIENT_BATCH) when it fits
    renew_on_write: bool = False     # also claim to renew leases of written groups (old behaviour, to compare)
    coalesce_replies: bool = True    # replies of one turn to one client go out as one frame
    unload_after_s: float = 1.0      # the state machine drops its cached groups after this long without input
                                     # (0: at every idle poll, the old way: a follower reloaded every group it
                                     # applied to, with all its sessions, at almost every turn)
    max_reply_bytes: int = 16 << 20  # a catch-up reply's values, in bytes (the peer asks again for the rest)
    snapshots: object = None         # replica/snapshots.py SnapshotSettings (None: the defaults)
    retain_instances: int = -1       # chosen values kept below the applied mark (-1: the log is never truncated)
    retain_bytes: int = 0            # ... but no more of them than weigh this many value bytes (0: no limit)
    peer_lag_instances: int = 0      # the peers' floor may keep this many more instances (the engine's setting)
    peer_lag_bytes: int = 0          # ... and this many more value bytes (with retain_bytes)
    truncate_groups_per_turn: int = 32
    truncate_step_instances: int = 65536
    membership_seed: bytes = b""     # the system group's seed command (replica/membership_driver.py), proposed
                                     # by the worker hosting it until its table is seeded (b"": none)
    membership_max_adopting: int = 128  # groups a worker has adopting a new epoch at once (the rest wait)
    plant: str = ""                  # planted bug (tests of the tests only)


class Request:
    __slots__ = (
        "identity",       # the client's socket identity (where the reply goes)
        "req_id",         # the client's request id, echoed in the reply
        "op",             # rpc.PROPOSE / PROPOSE_BATCH / READ
        "group",
        "deadline",       # tick after which the client is told Timeout
        "started",        # clock() when it arrived (latency histogram)
        "client_id",      # the client session (exactly-once) ...
        "request_seq",    # ... and the request's sequence number in it
        "payload",        # the state machine op (PROPOSE) or query (READ)
        "mode",           # READ: rpc.READ_LEASE / READ_LINEARIZABLE
        "seq",            # the engine's proposal sequence number, once proposed
        "min_epoch",      # the newest master epoch the client was told of
        "batch",          # the Batch this request is one operation of (PROPOSE_BATCH proposed one by one)
        "index",          # its position in that batch
        "ops",            # PROPOSE_BATCH proposed as ONE CLIENT_BATCH entry: its operations
        "proposed_tick",  # when we proposed it (a master's applied command renews its lease from here)
        "lease_ballot",   # the Paxos ballot we led with when we proposed it (0: none; no lease credit)
    )

    def __init__(self, identity, req_id, op, group, deadline, started):
        self.identity = identity
        self.req_id = req_id
        self.op = op
        self.group = group
        self.deadline = deadline
        self.started = started
        self.client_id = 0
        self.request_seq = 0
        self.payload = b""
        self.mode = 0
        self.seq = None
        self.min_epoch = 0
        self.batch = None
        self.index = 0
        self.ops = None
        self.proposed_tick = 0
        self.lease_ballot = 0


class Batch:
    """A PROPOSE_BATCH request too big for one entry (or with batch envelopes off), proposed as several
    entries, answered together.

    The entries are proposed ONE AFTER ANOTHER: chunk k+1 only once chunk k is applied here. Entries proposed
    together can be chosen out of order (a pipelined window across a leader change), and entries of one
    session chosen out of order break exactly-once: the session's later commands would be refused
    SESSION_UNKNOWN ("nothing applied") ahead of its first command, and then applied after all by a duplicate
    of themselves (a proposer re-proposes what it did not see chosen). Proposed in order, every copy of chunk
    k+1 lands after chunk k's first application."""

    __slots__ = ("identity", "req_id", "results", "chunks", "next_chunk", "done", "template")

    def __init__(self, identity, req_id, count, chunks, template):
        self.identity = identity
        self.req_id = req_id
        self.results = [None] * count
        self.chunks = chunks            # [(index of its first operation, [ops])]
        self.next_chunk = 0
        self.done = False
        self.template = template        # the first chunk's Request: client id, first seq, deadline, start

    def applied_any(self):
        return self.next_chunk > 1


# In the store beside the master table's keys (b"\xffM..."): present once this worker's synced state was lost
# (wiped, or damaged and set aside); it is never cleared (ReplicaLoop.add_group).
LOST_STATE_KEY = b"\xffW" + b"lost-state"


class ReplicaLoop:
    """One worker's replica logic. See the module docstring for the turn and the ports."""

    def __init__(self, settings, core_config, *, clock, log, store, send, hosted, recovery, rng,
                 state_machine_factory=None, amnesia="", snapfiles=None):
        """`hosted`: the groups configured for this worker; `recovery`: ``log.recover()``; `rng`: a seeded
        random.Random; `amnesia`: non-empty when this worker's storage lost synced state as a whole (wiped, or
        damaged and set aside): every group then rebuilds from its peers before it votes again; `snapfiles`:
        where this worker keeps snapshot files for peers (storage/snapfiles.py; None: it sends none, but
        still installs what peers send)."""
        self.settings = s = settings
        self.node_id = s.node_id
        self.index = s.index
        self.workers = s.workers
        self.plant = s.plant
        self.clock = clock
        self.log = log
        self.send = send
        self.rng = rng
        self.stats = {"proposals": 0, "timeouts": 0, "overloaded": 0, "requests": 0, "late_resumes": 0,
                      "incarnations_joined": 0,
                      "leases_dropped": 0, "lease_replies_withdrawn": 0, "master_changes": 0,
                      "admin_refused": 0, "stale_reads_refused": 0}
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.write_seconds = Histogram(LATENCY_BUCKETS)
        self.slow_writes = 0
        self.slow_write_warned = -1e9
        self.serve_misses = 0
        self.snapfiles = snapfiles
        self._compact_if_due = getattr(log, "compact_if_due", None)
        self.store = StagedStore(store)
        self.sm = (state_machine_factory or KVStateMachine)(self.store)
        if core_config.system_group:
            # This worker also hosts the system group: its membership table lives beside the data groups'
            # state, in the same store (statemachine/system.py).
            self.sm = WithSystemGroup(self.sm, MembershipStateMachine(self.store))
        self.outbox = {}
        self.lease_outbox = []            # [(Request, frame, slot)]: lease replies, re-checked as they leave
        self.waiting = {}                 # (group, engine seq) -> Request
        self.parked = {}                  # group -> [Request] waiting for a master (or to catch up)
        self.lease_reads = []             # lease reads to answer in step 6
        self.subscribers = {}             # identity -> None, oldest first (at most MAX_SUBSCRIBERS)
        # Periodic work runs once its tick has come (ticks may advance by several in one turn: a long turn, a
        # pause; `ticks % k == 0` would skip it for as long as they do).
        self.next_expiry_scan = 0
        self.next_behind_poke = 0         # parked requests behind the epoch a client named: ask a peer
        self.next_repair_nudge = 0        # rebuilding groups' barriers, lapsed preferences
        self.recent_reads = {}            # slot -> tick of the last lease read (renewal claims for read groups)
        self.superseded = []              # (group, incarnation, first): newer incarnations to join (join_newer)
        self.effects_hook = None          # observers (the simulator's oracle) see each cycle's Effects
        # Clock: ticks are whole tick_s periods since the loop started.
        self.origin = clock()
        self.ticks = 0
        self.turn_ticks = 0               # ticks at the start of this turn (before the poll: plant only)
        self.ticked = False
        self.turn_ended = None            # clock() at the end of the last turn
        self.turn_started = self.last_input = clock()   # the last turn's start; the last turn that had input
        self.expected_sleep = 0.0         # how long the driver was asked to poll after it
        # A turn starting this much later than its poll should have ended means the process was paused (or
        # its disk stalled): half the lease margin, in seconds.
        self.resume_slack = s.lease_ticks * s.lease_margin * s.tick_s / 2
        self.resumed_late_ms = 0.0        # set by a late resume, reported (and cleared) by the same turn
        self.leases_dropped_now = 0
        self._open(core_config, hosted, recovery, amnesia)
        self.membership = MembershipDriver(s.membership_seed if core_config.system_group else b"", plant=s.plant,
                                           max_adopting=s.membership_max_adopting)

    # ------------------------------------------------------------------ start-up
    def slot_of(self, group):
        """The slot of `group` in the engine's per-group arrays, and in this loop's beside them."""
        return self.engine.slot_index(group)

    def _open(self, core_config, configured, recovery, amnesia):
        s = self.settings
        # Hosted: the configured groups and those added at run time (they have a GROUP record), less those
        # removed here (a tombstone: re-adding one makes a newer incarnation). From here on the engine is the
        # one record of which groups this worker hosts, in which incarnation.
        incarnations = {group: 1 for group in configured}
        if core_config.system_group:
            incarnations[SYSTEM_GROUP] = 1      # always hosted here (never added or removed at run time)
        for group, state in recovery.groups.items():
            incarnations[group] = state.incarnation
        self.tombstones = dict(recovery.removed)
        for group in self.tombstones:
            incarnations.pop(group, None)
        # A leftover copy removed to take a newer incarnation, and a crash before the add: the join goes on at
        # the first turn (join_newer), or the node would hold the group nowhere and hear of it never again.
        self.unfinished_joins = [(group, incarnation, first)
                                 for group, (incarnation, first) in sorted(recovery.joining.items())]
        # Handed over to the nodes it is placed on (vacate_groups): not held here, until placed here again.
        self.vacated = {g: inc for g, (inc, _) in recovery.vacated.items() if g not in self.tombstones}
        self.vacated_marks = {g: mark for g, (_, mark) in recovery.vacated.items() if g in self.vacated}
        self.vacated_first = {g: first for g, first in recovery.vacated_first.items() if g in self.vacated}
        for group in self.vacated:
            incarnations.pop(group, None)
        hosted = set(incarnations)
        # A group added at run time may start in another configuration than the table's first (its GROUP record).
        firsts = {g: state.first for g, state in recovery.groups.items() if state.first}
        self.engine = engine = Engine(core_config, random.Random(self.rng.getrandbits(64)))
        for group in engine.groups():
            if group not in hosted or incarnations[group] != 1 or group in firsts:
                engine.remove_group(group)
        for group in sorted(hosted):
            engine.add_group(group, incarnations[group], firsts.get(group, b""))
        if recovery.corrupt_records:
            log.error("node %d worker %d: %d damaged records found at start: %s", self.node_id, self.index,
                      recovery.corrupt_records, recovery.problems()[:10])
        for group, state in recovery.groups.items():
            if group in hosted:
                engine.restore_group(group, state)
        # A worker that lost its synced state may have voted, before, in groups it has no record of now (added
        # at run time, then forgotten): a group added to it later in an incarnation other nodes hold rebuilds
        # before it votes (add_group).
        self.lost_state = bool(amnesia) or self.store.get(LOST_STATE_KEY) is not None
        if amnesia:
            log.error("node %d worker %d: %s; its %d groups rebuild from their peers before they vote again",
                      self.node_id, self.index, amnesia, len(hosted))
            for group in sorted(hosted):
                engine.begin_repair(group, amnesia)
            # Put the rebuild on record now (one synced write of every group's REPAIR record, and the mark that
            # this worker lost its state): from here on a restart finds it in the log itself, and the caller may
            # put its markers back.
            self.store.write([(LOST_STATE_KEY, amnesia.encode("utf-8", "replace")[:200])], [])
            self.store.commit()                  # unsynced: the synced write below covers it
            fx = engine.take_effects()
            self.log.write(fx.records)
            engine.persisted(fx.token)
        self.preferred = np.zeros(engine.n_slots, np.uint16)     # what we told engine.prefer, per slot
        self.masters = MasterTable(self.node_id, engine.n_slots, s.lease_ticks, s.lease_margin, plant=s.plant,
                                   nonce_base=self.rng.getrandbits(48) << 16)
        self.applier = Applier(self.node_id, self.sm, self.masters, self.store, self.slot_of, plant=s.plant,
                               leading_ballot=self._leading_ballot,
                               votes_at=self._votes_at)
        # After a restart this node may be behind on groups nobody writes to any more: ask peers for what we
        # miss, a few groups per tick, in a few passes (the first may leave before the peers are connected).
        self.catchup_passes = [50, 300, 1500] if recovery.groups else []
        self.catchup_queue = []
        replayed = 0
        for group in sorted(hosted):
            self.applier.restore(group, 0)
            start = self.sm.applied_next(group)
            end = engine.learned(group)[0]
            if start < end:
                entries = self.log.read_chosen(group, start, end)
                self.applier.apply([(group, i, v) for i, _, v in entries], 0)
                replayed += len(entries)
        self._stop_unreadable()
        self.sm.flush()
        self.store.commit()
        self.snapshots = Snapshots(self.node_id, engine, self.sm, self.store.inner, self.log, self.snapfiles,
                                   self.send, random.Random(self.rng.getrandbits(64)), s.snapshots, self.clock,
                                   self.applier, s.plant)
        self.retention = Retention(engine, self.sm, self.log, self.engine.group_at,
                                   s.retain_instances, s.truncate_groups_per_turn, s.truncate_step_instances,
                                   self.snapshots.pins, s.plant, s.retain_bytes,
                                   s.peer_lag_instances, s.peer_lag_bytes)
        records, ops = self.snapshots.resume(recovery)
        if records or ops:
            self.log.write(records, None, ops)
        if replayed:
            log.info("node %d worker %d replayed %d chosen instances into the state machine", self.node_id,
                     self.index, replayed)

    def _leading_ballot(self, group):
        if not self.engine.hosts(group):
            return 0                      # being removed: its last values are applied, nobody leads it here
        ballot, active = self.engine.ballot_of(group)
        return ballot if active and self.engine.is_leading(group) else 0

    # ------------------------------------------------------------------ the turn
    def turn(self, messages=(), client_frames=()):
        """One turn: see the module docstring. `messages`: decoded peer Messages of one poll; `client_frames`:
        [(identity, request frame)] or [(identity, request frame, admin)] of the same poll, `admin` false when
        the connection lacks the cluster's credentials (administrative operations are then refused)."""
        self._start_turn()                                   # 1
        if self.resumed_late_ms:
            self._report_late_resume(len(messages), len(client_frames))
        if messages or client_frames:
            self.last_input = self.turn_started
        if messages:
            self.engine.receive(messages)                    # 2
        for item in client_frames:                           # 3
            self._on_frame(item[0], item[1], item[2] if len(item) > 2 else True)
        if self.ticked:
            self._on_tick()                                  # 4
        if self.ticked:
            self.retention.run()                             # 4a
        records, ops = self.snapshots.before_cycle()
        self._cycle(records, ops)                            # 5
        if self.superseded or self.unfinished_joins:
            self.join_newer()                                # 5a
        if self.ticked:
            self._expire()
        if self.lease_reads:
            self._answer_lease_reads()                       # 6
        self.turn_ended = self.clock()

    def _start_turn(self):
        now = self.turn_started = self.clock()
        if self.turn_ended is not None:
            late = now - self.turn_ended - self.expected_sleep
            if late > self.resume_slack:
                self._resumed_late(late)
        self.turn_ticks = self.ticks
        ticks = int((now - self.origin) / self.settings.tick_s)
        self.ticked = ticks > self.ticks
        if self.ticked:
            self.ticks = ticks
            self.engine.tick(ticks)

    def _resumed_late(self, late):
        """The process stood still (a pause, a VM freeze, a stall) for longer than the poll: whatever it
        believed about its leases may be stale, so it holds none until it renews them."""
        self.stats["late_resumes"] += 1
        self.resumed_late_ms = late * 1e3
        self.membership.catch_up_all(self.engine)     # what was chosen meanwhile in idle groups
        self.leases_dropped_now = 0
        if self.plant == "stale-lease-clock":
            return
        dropped = self.leases_dropped_now = self.masters.drop_own_leases()
        self.stats["leases_dropped"] += dropped

    def _report_late_resume(self, messages, requests):
        """Say what a late resume did, with what the turn after it took in (the nemesis's stall fault reads
        this: its probe reads must be in that turn)."""
        late, dropped = self.resumed_late_ms, self.leases_dropped_now
        self.resumed_late_ms = 0.0
        if dropped or self.plant == "stale-lease-clock":
            log.warning("node %d worker %d resumed %.0f ms late; %s; its first turn took %d peer messages and %d "
                        "client requests", self.node_id, self.index, late,
                        "kept its leases (planted bug stale-lease-clock)" if self.plant == "stale-lease-clock"
                        else "dropped %d leases until they are renewed" % dropped, messages, requests)

    def now_ticks(self):
        """The current tick, from a fresh clock read (for decisions that depend on time: leases)."""
        if self.plant == "stale-lease-clock":
            return self.turn_ticks       # planted bug: the tick read before the poll and the last fsync
        return int((self.clock() - self.origin) / self.settings.tick_s)

    def poll_timeout(self):
        """How long the driver may wait for input before the next turn, in seconds (0: turn again at once)."""
        if self.engine.has_effects() or self.snapshots.pending():
            timeout = 0.0
        elif self._idle():
            timeout = 1.0
            if self.clock() - self.last_input >= self.settings.unload_after_s:
                self.sm.unload_all()      # idle groups keep no Python objects of the state machine
        else:
            elapsed = self.clock() - self.origin
            tick_s = self.settings.tick_s
            if int(elapsed / tick_s) > self.ticks:
                timeout = 0.0                # a tick is due now
            else:
                # Until the next tick; never 0 while the tick computed from the clock has not advanced (float
                # rounding at the boundary would otherwise turn the loop without time passing).
                timeout = max((self.ticks + 1) * tick_s - elapsed, tick_s / 100)
        self.expected_sleep = timeout
        return timeout

    def _idle(self):
        return (not self.engine.active_groups() and not self.waiting and not self.parked and not self.recent_reads
                and not self.lease_reads and not self.catchup_queue and not self.catchup_passes)

    # ------------------------------------------------------------------ step 5: the cycle, then apply
    def _cycle(self, records=None, store_ops=None):
        fx, short = run_cycle(self.engine, self.log, self.send, serve_before_write=self.plant == "serve-before-write",
                              observe=self.effects_hook, max_reply_bytes=self.settings.max_reply_bytes,
                              store_ops=store_ops, extra_records=records)
        self.serve_misses += short
        if fx.records:
            self._observe_write(getattr(self.log, "last_write_seconds", 0.0))
        if fx.deletes and self._compact_if_due is not None:
            self._compact_if_due()            # RocksLog: compacts truncated ranges in a thread of its own
        for group, reason in fx.stopped:
            # Before anything is applied: the engine already withheld this batch's values of the group.
            log.error("node %d worker %d: group %d stopped: %s", self.node_id, self.index, group, reason)
            for req in self.parked.pop(group, []):
                self._reply_error(req, rpc.GROUP_STOPPED, reason)
            stuck = [r for r in self.lease_reads if r.group == group]
            if stuck:
                self.lease_reads = [r for r in self.lease_reads if r.group != group]
                for req in stuck:
                    self._reply_error(req, rpc.GROUP_STOPPED, reason)
        # A snapshot swapped in by this write: the state machine and the master table read it back before
        # anything above it is applied.
        self.snapshots.after_write(fx, self.ticks)
        if fx.chosen:
            outcomes, changes = self.applier.apply(fx.chosen, self.ticks)
            self._stop_unreadable()
            self.sm.flush()
            self.store.commit()
            observe = self.batch_sizes.observe
            membership = self.membership
            for group, _, value in fx.chosen:
                observe(int.from_bytes(value[1:5], "little") if len(value) >= 5 else 0)
                if value and value[0] == ADOPT_TAG:
                    membership.adopt_chosen(self, group)
            for change in changes:
                self._master_changed(*change)
            for group, seq, kind, data, instance in outcomes:
                self._outcome(group, seq, kind, data, instance)
        for tag, group, reason in fx.expired:
            if isinstance(tag, Request) and self.waiting.pop((group, tag.seq), None) is tag:
                self._reply_error(tag, rpc.TIMEOUT, "not chosen in time (%s): the outcome is unknown" % reason)
        self.superseded.extend(fx.superseded)

    def _stop_unreadable(self):
        """Stop the groups with a chosen value the applier could not decode (nothing of theirs from there on was
        applied); the stop's effects come with the next cycle."""
        for group, instance, reason in self.applier.unreadable:
            log.error("node %d worker %d: group %d: %s", self.node_id, self.index, group, reason)
            self.engine.stop_group(group, reason)
        self.applier.unreadable = []

    def _observe_write(self, seconds):
        """A synced write that takes long holds up every reply of the worker: count it, and say so (at most
        once a minute), since the cause is the disk, not paxos-core."""
        self.write_seconds.observe(seconds)
        if seconds >= SLOW_WRITE_SECONDS:
            self.slow_writes += 1
            now = self.clock()
            if now - self.slow_write_warned >= 60.0:
                self.slow_write_warned = now
                log.warning("node %d worker %d: a synced write of the log took %.0f ms (%d such writes so far); "
                            "every reply of this worker waited for it. The disk's fsync latency bounds the "
                            "latency of paxos-core (see `paxos-core bench fsync`).",
                            self.node_id, self.index, seconds * 1e3, self.slow_writes)

    # ------------------------------------------------------------------ step 3: client requests
    def _on_frame(self, identity, frame, admin=True):
        self.stats["requests"] += 1
        try:
            request = rpc.decode_request(frame)
        except rpc.BadRequest as exc:
            self._send(identity, rpc.error_reply(rpc.BAD_REQUEST, 0, str(exc)))
            return
        op, req_id = request[0], request[1]
        if op in ADMIN_OPS and not admin:
            self.stats["admin_refused"] += 1
            self._send(identity, rpc.error_reply(rpc.BAD_REQUEST, req_id, ADMIN_REFUSED % ADMIN_OPS[op]))
            return
        if op in (rpc.PROPOSE, rpc.PROPOSE_BATCH) and request[2] == SYSTEM_GROUP and not admin:
            # Membership changes are administrative: reading the table is for anyone, changing it is not.
            self.stats["admin_refused"] += 1
            self._send(identity, rpc.error_reply(rpc.BAD_REQUEST, req_id, ADMIN_REFUSED % "a membership change"))
            return
        if op == rpc.PROPOSE:
            self._on_propose(identity, req_id, *request[2:])
        elif op == rpc.PROPOSE_BATCH:
            self._on_propose_batch(identity, req_id, *request[2:])
        elif op == rpc.READ:
            self._on_read(identity, req_id, *request[2:])
        elif op == rpc.STATUS:
            self._send(identity, rpc.reply(rpc.OK, req_id, json.dumps(self.status_hook()).encode()))
        elif op == rpc.ADD_GROUP:
            self._on_add_group(identity, req_id, *request[2:])
        elif op == rpc.REMOVE_GROUP:
            self._on_remove_group(identity, req_id, request[2])
        elif op == rpc.GROUP_INFO:
            self._send(identity, rpc.reply(rpc.OK, req_id, json.dumps(self.group_info(request[2])).encode()))
        elif op == rpc.SUBSCRIBE:
            self._subscribe(identity)
            self._send(identity, rpc.reply(rpc.OK, req_id))

    def _subscribe(self, identity):
        """Keep `identity` as the newest subscriber; forget the oldest beyond MAX_SUBSCRIBERS."""
        subscribers = self.subscribers
        subscribers.pop(identity, None)
        subscribers[identity] = None
        while len(subscribers) > MAX_SUBSCRIBERS:
            del subscribers[next(iter(subscribers))]

    def status_hook(self):
        """The STATUS reply; the worker replaces it with one that adds its process and transport facts."""
        return self.status()

    def propose_internal(self, group, op, timeout_ticks):
        """Propose `op` to `group`'s state machine as a client would, without a session and without a client
        to answer (the membership driver's commands): it waits for a master like any proposal."""
        req = Request(INTERNAL, 0, rpc.PROPOSE, group, self.ticks + timeout_ticks, self.clock())
        req.payload = op
        self._route(req)

    def _new_request(self, identity, req_id, op, group, timeout_ms):
        """A request with its deadline: the client's timeout (0: none given, the default), at most
        max_request_timeout_ms. Whatever it waits for (a master, an epoch the client named, a decision, a
        lease), it is answered by then."""
        s = self.settings
        tick_ms = s.tick_s * 1000.0
        if timeout_ms:
            timeout_ms = min(int(timeout_ms), s.max_request_timeout_ms)
            ticks = max(1, int(-(-timeout_ms // tick_ms)))
        else:
            ticks = s.request_timeout_ticks
        return Request(identity, req_id, op, group, self.ticks + ticks, self.clock())

    def _check_group(self, identity, req_id, group):
        if not self.engine.hosts(group):
            worker = shard_of(group, self.workers)
            where = "" if worker == self.index else " (group %d lives on worker %d)" % (group, worker)
            if group in self.vacated:
                where = " (it is placed on other nodes)"
            self._send(identity, rpc.error_reply(rpc.UNKNOWN_GROUP, req_id, "no group %d here%s" % (group, where)))
            return False
        if self.engine.group_status(group) == GROUP_STOPPED:
            self._send(identity, rpc.error_reply(rpc.GROUP_STOPPED, req_id, "group %d is stopped here: %s"
                                                 % (group, self.engine.stop_reasons.get(group))))
            return False
        return True

    def pending_count(self):
        return len(self.waiting) + sum(len(v) for v in self.parked.values()) + len(self.lease_reads)

    def _too_large(self, identity, req_id, size, what="value"):
        """True (and the client told ValueTooLarge) when `size` bytes exceed max_value_bytes."""
        limit = self.settings.max_value_bytes
        if size <= limit:
            return False
        self._send(identity, rpc.error_reply(rpc.VALUE_TOO_LARGE, req_id, "%s of %d bytes exceeds max_value_bytes=%d"
                                             % (what, size, limit)))
        return True

    def _overloaded(self, identity, req_id, count=1):
        """True (and the client told Overloaded) when `count` more requests would exceed max_pending."""
        pending = self.pending_count()
        if pending + count <= self.settings.max_pending:
            return False
        self.stats["overloaded"] += count
        self._send(identity, rpc.error_reply(rpc.OVERLOADED, req_id, "worker has %d requests pending" % pending))
        return True

    def _on_propose(self, identity, req_id, group, timeout_ms, client_id, request_seq, min_epoch, op):
        if not self._check_group(identity, req_id, group):
            return
        if self._too_large(identity, req_id, len(op)):
            return
        if self._overloaded(identity, req_id):
            return
        req = self._new_request(identity, req_id, rpc.PROPOSE, group, timeout_ms)
        req.client_id, req.request_seq, req.payload, req.min_epoch = client_id, request_seq, op, min_epoch
        self._route(req)

    def _on_propose_batch(self, identity, req_id, group, timeout_ms, client_id, first_seq, min_epoch, ops):
        if not self._check_group(identity, req_id, group):
            return
        limit = self.settings.max_value_bytes
        if self._too_large(identity, req_id, next((len(op) for op in ops if len(op) > limit), 0)):
            return
        if not ops:
            self._send(identity, rpc.propose_batch_ok(req_id, []))
            return
        if self._overloaded(identity, req_id, len(ops)):
            return
        if self.settings.batch_envelope and sum(len(op) + 4 for op in ops) + 64 <= limit:
            req = self._new_request(identity, req_id, rpc.PROPOSE_BATCH, group, timeout_ms)
            req.client_id, req.request_seq, req.ops, req.min_epoch = client_id, first_seq, ops, min_epoch
            self._route(req)
            return
        template = self._new_request(identity, req_id, rpc.PROPOSE_BATCH, group, timeout_ms)
        template.client_id, template.request_seq, template.min_epoch = client_id, first_seq, min_epoch
        batch = Batch(identity, req_id, len(ops), self._chunks(ops, limit), template)
        self._next_chunk(batch)
        while self.plant == "batch-together" and batch.next_chunk < len(batch.chunks):
            self._next_chunk(batch)         # planted bug: every chunk proposed at once (they may be chosen
                                            # out of order)

    def _chunks(self, ops, limit):
        """[(index of the first op, ops)]: envelopes of at most `limit` bytes (one op each with envelopes
        off)."""
        if not self.settings.batch_envelope:
            return [(k, [op]) for k, op in enumerate(ops)]
        chunks, start, size = [], 0, 64
        for k, op in enumerate(ops):
            if k > start and size + len(op) + 4 > limit:
                chunks.append((start, ops[start:k]))
                start, size = k, 64
            size += len(op) + 4
        chunks.append((start, ops[start:]))
        return chunks

    def _next_chunk(self, batch):
        """Propose the batch's next chunk (its first one, or the one after a chunk just applied)."""
        first, ops = batch.chunks[batch.next_chunk]
        batch.next_chunk += 1
        t = batch.template
        if batch.next_chunk == 1:
            req = t
        else:
            req = Request(t.identity, t.req_id, rpc.PROPOSE_BATCH, t.group, t.deadline, t.started)
            req.client_id, req.min_epoch = t.client_id, t.min_epoch
        req.request_seq = t.request_seq + first
        req.batch, req.index = batch, first
        if len(ops) == 1 and not self.settings.batch_envelope:
            req.op, req.payload = rpc.PROPOSE, ops[0]
        else:
            req.ops = ops
        self._route(req)

    def _on_read(self, identity, req_id, group, mode, timeout_ms, min_epoch, query):
        if not self._check_group(identity, req_id, group):
            return
        if self._too_large(identity, req_id, len(query), "query"):
            return
        if mode == rpc.READ_STALE:
            # The stated bound of a stale read: this node's log is at most max_stale_lag instances behind the
            # highest chosen mark it has heard of, and the group is not rebuilding here (a learner that just
            # joined, a node catching up after a restart). Otherwise NotMaster: the client asks the master.
            lag = self.engine.behind(group)
            if lag < 0 or lag > self.settings.max_stale_lag:
                self.stats["stale_reads_refused"] += 1
                slot = self.slot_of(group)
                master = self.masters.known_master(slot, self.ticks)
                self._send(identity, rpc.not_master(req_id, 0 if master == self.node_id else master,
                                                    int(self.masters.epoch[slot])))
                return
            self._send(identity, rpc.reply(rpc.OK, req_id, self.sm.read(group, query)))
            return
        # A lease or linearizable read waits (for the lease, a master, the epoch the client named, its
        # barrier): it counts against max_pending like a proposal.
        if self._overloaded(identity, req_id):
            return
        req = self._new_request(identity, req_id, rpc.READ, group, timeout_ms)
        req.mode, req.payload, req.min_epoch = mode, query, min_epoch
        if mode == rpc.READ_LINEARIZABLE:
            self._sync_preference(group, self.slot_of(group))
            self._propose_entry(req, envelope.barrier())
        else:
            self._route(req)

    def _sync_preference(self, group, slot):
        """Leadership follows mastership: tell the engine who should lead (the live master, or nobody)."""
        if not self.engine.hosts(group):
            return                  # being removed: its last cycle may still report a master change
        want = self.masters.known_master(slot, self.ticks)
        if want and not self.engine.votes_in(group, want):
            want = 0                # a master that does not vote (removed, or a learner) cannot lead
        elif (want == self.node_id and self.engine.group_status(group) != GROUP_OK
              and self.plant != "claim-while-rebuilding"):
            want = 0                # nor can we while the group rebuilds here: whoever leads may drive it
        if self.preferred[slot] != want:
            self.preferred[slot] = want
            self.engine.prefer(group, want)

    def _route(self, req):
        """Send a proposal or lease read where it can be served: here, to the master, or wait for one."""
        group = req.group
        slot = self.slot_of(group)
        renews = req.op == rpc.READ or self.settings.renew_on_write
        if renews:
            self.recent_reads[slot] = self.ticks
        masters = self.masters
        if req.min_epoch > masters.epoch[slot]:
            # The client was told of a newer master than we know: we are behind. Catch up first.
            self.parked.setdefault(group, []).append(req)
            self.engine.poke(group)
            return
        self._sync_preference(group, slot)
        if masters.is_master(slot) and not self._may_master(group):
            # Master by the table, but it votes no more (removed, or the group moved) or not yet (the group
            # rebuilds here): it serves nothing, so its lease runs out (its commands, forwarded to the leader,
            # would renew it on every node: simulator seed 1,183) and a voter takes over. The client goes to a
            # voter meanwhile.
            self._redirect_to_voter(req, slot)
            return
        if masters.is_master(slot):
            if req.op == rpc.READ:
                self.lease_reads.append(req)        # answered in step 6, after this turn's applies
            else:
                self._serve(req, slot)
            if renews and masters.claim_due(slot, self.ticks):
                self._claim(group)                  # keep the lease of a group being read
            return
        master = masters.known_master(slot, self.ticks)
        if master and master != self.node_id:
            self._reply_frame(req, rpc.not_master(req.req_id, master, int(masters.epoch[slot])))
            return
        if not self._may_master(group):
            # Not a voter of the group (a learner, or removed), or rebuilding it: it does not become master.
            # Send the client to a voter.
            if self._redirect_to_voter(req, slot):
                return
        self.parked.setdefault(group, []).append(req)
        if masters.claim_due(slot, self.ticks):
            self._claim(group)

    def _serve(self, req, slot):
        epoch = int(self.masters.epoch[slot])
        if req.op == rpc.PROPOSE_BATCH:
            self.stats["proposals"] += len(req.ops)
            self._propose_entry(req, envelope.client_batch(epoch, req.client_id, req.request_seq, req.ops))
        else:
            self.stats["proposals"] += 1
            self._propose_entry(req, envelope.client(epoch, req.client_id, req.request_seq, req.payload))

    def _propose_entry(self, req, payload):
        req.proposed_tick = self.ticks
        req.lease_ballot = self._proposal_ballot(req.group)
        try:
            req.seq = self.engine.propose(req.group, payload, req)
        except GroupStopped as exc:
            self._reply_error(req, rpc.GROUP_STOPPED, str(exc))
            return
        except ValueTooLarge as exc:
            self._reply_error(req, rpc.VALUE_TOO_LARGE, str(exc))
            return
        self.waiting[(req.group, req.seq)] = req

    def _votes_at(self, group, instance, node):
        """The applier's question: does `node` vote in the group's configuration of `instance`? remove_group
        applies a group's last chosen values before the engine drops it; should any be applied after, the
        answer is yes (nothing is decided for the group any more) rather than an UnknownGroup that kills the
        worker (tests/test_simulator.py::test_finding_a_group_removed_in_the_turn_that_learned_its_last_values)."""
        if not self.engine.hosts(group):
            return True
        return self.engine.config_of(group, instance).position(node) >= 0

    def _proposal_ballot(self, group):
        """The ballot our own Accept will carry this proposal under (0 if we do not lead: it is forwarded)."""
        ballot, active = self.engine.ballot_of(group)
        return ballot if active else 0

    def _redirect_to_voter(self, req, slot):
        """Send the client to a voter of the group (False if we know none). We may be behind in the group: a
        node cut off while a configuration made it a voter takes itself for a learner, and nobody sends to it in
        a group with no leader; the voter we name may take us for one, and name us back (simulator seed
        4,100,027: a deposed master, no longer a voter, and a voter 19 instances behind sent one client to each
        other until the run ended). So we also ask a peer for what we miss (at most once per catch-up
        interval)."""
        group = req.group
        voter = self.engine.some_voter(group)
        if self.plant != "redirect-without-catchup":   # planted bug: a redirecting node never asks what it misses
            self.engine.poke(group)
        if not voter:
            return False
        self._reply_frame(req, rpc.not_master(req.req_id, voter, int(self.masters.epoch[slot])))
        return True

    def _may_master(self, group):
        """May this node be the group's master? Only a node that can lead it: a voter where the group's next
        instance is decided, not rebuilding the group (a rebuilding node votes nowhere, so it cannot lead), and
        not removed from the cluster (it may still take itself for a voter of a group it is behind in: its
        peers stopped sending to it). A claim from any other would be chosen by the group's leader, and every
        node would then wait for a master that cannot lead (simulator seed 1,183: a removed master kept every
        node redirecting clients to it; seed 4,100,239: a master whose group was rebuilding held up its own
        rebuild and every write until its lease ran out)."""
        if self.plant == "claim-while-rebuilding":     # planted bug: a node rebuilding the group may be master
            return self.engine.votes_in(group, self.node_id) and self.membership.removed_epoch is None
        return (self.engine.votes_in(group, self.node_id) and self.engine.group_status(group) == GROUP_OK
                and self.membership.removed_epoch is None)

    def _claim(self, group):
        if not self._may_master(group):
            return
        slot = self.slot_of(group)
        self._sync_preference(group, slot)
        payload = self.masters.make_claim(slot, self.ticks, self._proposal_ballot(group))
        try:
            self.engine.propose(group, payload, ("claim", group))
        except GroupStopped:
            pass

    # ------------------------------------------------------------------ step 5: outcomes
    def _outcome(self, group, seq, kind, data, instance):
        req = self.waiting.pop((group, seq), None)
        if kind == CLAIMED:
            self._release_parked(group)
            return
        if req is None:
            return                         # answered already (timeout), or a duplicate
        if kind == APPLIED:
            slot = self.slot_of(group)
            if (req.lease_ballot and req.lease_ballot == self._leading_ballot(group)
                    and (self._votes_at(group, instance, self.node_id) or self.plant == "renew-own-non-voter")):
                # Our command renews our lease as it renews it in the others' views, so not where we vote no
                # more (replica/applier.py, the same answer on every node): there our lease would outlive the
                # others' views of it, and another node may claim while we serve lease reads (simulator seed
                # 1,686, where the answer also differed from node to node: Engine.config_of).
                self.masters.extend_own(slot, req.proposed_tick)
            batch = req.batch
            if batch is not None:
                if not batch.done:
                    results = data if req.ops is not None else [data]
                    batch.results[req.index:req.index + len(results)] = [(instance, r) for r in results]
                    if batch.next_chunk < len(batch.chunks):
                        self._next_chunk(batch)
                    elif None not in batch.results:
                        batch.done = True
                        self._send(batch.identity, rpc.propose_batch_ok(batch.req_id, batch.results))
                        self.latency.observe(self.clock() - req.started)
            elif req.ops is not None:
                self._send(req.identity, rpc.propose_batch_ok(req.req_id, [(instance, r) for r in data]))
                self.latency.observe(self.clock() - req.started)
            else:
                self._send(req.identity, rpc.propose_ok(req.req_id, instance, data))
                self.latency.observe(self.clock() - req.started)
        elif kind == FENCED:
            self._reply_frame(req, rpc.not_master(req.req_id, data, int(self.masters.epoch[self.slot_of(group)])))
        elif kind == BARRIER:
            # Every entry before the barrier is applied: a local read now is linearizable.
            self._send(req.identity, rpc.reply(rpc.OK, req.req_id, self.sm.read(group, req.payload)))
            self.latency.observe(self.clock() - req.started)

    def _release_parked(self, group):
        """The group's mastership was decided: serve, redirect or keep waiting the parked requests."""
        parked = self.parked.pop(group, None)
        if not parked:
            return
        for req in parked:
            if not self.engine.hosts(group):
                # Being removed (remove_group runs a last cycle, whose outcomes land here): nothing of it is
                # served any more. Routing it would ask the engine about a group it no longer has.
                self._reply_error(req, rpc.UNKNOWN_GROUP, "group %d was removed" % group)
            elif req.deadline >= self.ticks:
                self._route(req)
            else:
                self._reply_error(req, rpc.TIMEOUT, "no master for group %d within the timeout" % group)

    def _master_changed(self, group, master, epoch):
        self.stats["master_changes"] += 1
        log.info("node %d worker %d: group %d master is now node %d (epoch %d)", self.node_id, self.index, group,
                 master, epoch)
        event = rpc.master_event(group, master, epoch)
        for identity in list(self.subscribers):
            self._send(identity, event)
        self._sync_preference(group, self.slot_of(group))
        self._release_parked(group)

    # ------------------------------------------------------------------ step 6: lease reads
    def _answer_lease_reads(self):
        """Answer lease reads at the master, now that this turn's chosen values are applied.

        The clock is read at this decision. A read is answered only if this node is the master, holds its
        lease, leads the group's Paxos (no other node can then get a value chosen) and has applied every
        instance it knows chosen (so everything it may have announced, or acknowledged, is in the answer).
        Otherwise it waits (leadership and applies come within a few turns) or is routed again.
        """
        reads, self.lease_reads = self.lease_reads, []
        now = self.now_ticks()
        masters = self.masters
        engine = self.engine
        for req in reads:
            group = req.group
            slot = self.slot_of(group)
            if req.deadline < self.ticks:
                self._reply_error(req, rpc.TIMEOUT, "no lease read within the timeout")
                continue
            if not masters.is_master(slot) or not self._may_master(group):
                self._route(req)
                continue
            if (masters.has_lease(slot, now) and engine.is_leading(group)
                    and self.sm.applied_next(group) >= engine.learned(group)[0]):
                frame = rpc.reply(rpc.OK, req.req_id, self.sm.read(group, req.payload))
                self.lease_outbox.append((req, frame, slot))
                self.latency.observe(self.clock() - req.started)
                continue
            self._sync_preference(group, slot)          # the master leads: it prepares if it does not yet
            if masters.claim_due(slot, self.ticks):
                self._claim(group)                      # renew the lease under the ballot we lead with
            self.lease_reads.append(req)

    # ------------------------------------------------------------------ step 4: timers
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
        # Groups waiting for a master: claim again when the last claim is overdue.
        poke_behind = now >= self.next_behind_poke
        if poke_behind:
            self.next_behind_poke = now + 8
        for group in list(self.parked):
            slot = self.slot_of(group)
            if any(req.min_epoch > self.masters.epoch[slot] for req in self.parked[group]):
                if poke_behind:
                    self.engine.poke(group)          # still behind the epoch a client told us of
            elif self.masters.claim_due(slot, now):
                self._claim(group)
            elif self.masters.has_lease(slot, now) or self.masters.known_master(slot, now) not in (0, self.node_id):
                self._release_parked(group)
        # Masters renew their lease while their group is being read (writes renew it by themselves); idle
        # groups let it lapse (no traffic).
        lease = self.settings.lease_ticks
        for group in self._read_mastered_groups(now - lease // 2):
            slot = self.slot_of(group)
            if self.masters.claim_due(slot, now):
                self._claim(group)
        self.membership.on_tick(self, now)
        # A rebuilding group waits for instances nobody may be driving: nudge its master with a barrier.
        if now >= self.next_repair_nudge:
            self.next_repair_nudge = now + 16
            for group in self.engine.repair_waiting():
                self.nudge(group)
            if self.plant != "stale-preference":    # planted bug: a preference outlives the master's lease
                self._expire_preferences(now)

    def _expire_preferences(self, now):
        """Forget the preferred leader of each group whose master's lease ran out here (or whose master changed
        since): client requests and master changes set the preference, but a node that gets neither (one the
        table removed, which clients no longer use) kept a lapsed master's, and the engine dropped every
        FORWARD of the group meant for whoever leads (soak seed 4,704,713: node 3, rebuilding with its peers'
        unfinished instances to learn, forwarded its barrier to node 4 for a second; node 4 still preferred
        node 3, the master before node 3 lost its disk, and nobody led until the group's ADOPT came up)."""
        n = len(self.preferred)
        masters = self.masters
        other = (self.preferred != 0) & (self.preferred != self.node_id)
        stale = other & ((masters.lease_until[:n] <= now) | (masters.master[:n] != self.preferred))
        for slot in np.flatnonzero(stale):
            self._sync_preference(self.engine.group_at(int(slot)), int(slot))

    def nudge(self, group):
        """Propose a barrier to `group`: it gets the group a leader (ours or the master's) and an instance. The
        engine is told who should lead first: in a group nobody writes to, a master that no longer votes there
        (a configuration left it out) would otherwise still be waited for."""
        if self.engine.hosts(group):
            self._sync_preference(group, self.slot_of(group))
        try:
            self.engine.propose(group, envelope.barrier(), ("nudge", group))
        except GroupStopped:
            pass

    def _expire(self):
        """Requests past their deadline: the outcome is unknown (a proposal may still be chosen later). Only
        requests still waiting are looked at (answered ones are not kept anywhere), every few ticks."""
        now = self.ticks
        if now < self.next_expiry_scan:
            return
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

    def _read_mastered_groups(self, since):
        """Groups we are master of that had lease reads since tick `since` (forgets older ones)."""
        out = []
        for slot, last in list(self.recent_reads.items()):
            if last < since:
                del self.recent_reads[slot]
            elif self.masters.master[slot] == self.node_id:
                out.append(self.engine.group_at(slot))
        return out

    # ------------------------------------------------------------------ groups at run time
    def _on_add_group(self, identity, req_id, group, incarnation, first=b"", join=False):
        if group >= SYSTEM_GROUP:
            self._send(identity, rpc.error_reply(rpc.BAD_REQUEST, req_id, "group ids %d and above are reserved "
                                                 "(the system group)" % SYSTEM_GROUP))
            return
        if shard_of(group, self.workers) != self.index:
            self._send(identity, rpc.error_reply(rpc.BAD_REQUEST, req_id, "group %d belongs to worker %d"
                                                 % (group, shard_of(group, self.workers))))
            return
        try:
            self.add_group(group, incarnation, first, join)
        except ValueError as exc:
            self._send(identity, rpc.error_reply(rpc.BAD_REQUEST, req_id, str(exc)))
            return
        self._send(identity, rpc.reply(rpc.OK, req_id))

    def group_info(self, group):
        """What this node holds of `group`: hosted (and its incarnation, status, first configuration) or
        removed (which one); and the configuration a new incarnation would start in by this node's membership
        table (`table`: epoch and voters; epoch 0 before the table is known)."""
        driver = self.membership
        table = {"epoch": driver.epoch, "voters": list(driver.voters_for(group)) if driver.epoch >= 1 else []}
        if self.engine.hosts(group):
            return {"group": group, "hosted": True, "incarnation": self.engine.incarnation_of(group),
                    "removed": 0, "status": self.engine.group_view(group)["status"],
                    "first": _first_json(self.engine.first_state(group)), "table": table}
        return {"group": group, "hosted": False, "incarnation": self.vacated.get(group, 0),
                "removed": self.tombstones.get(group, 0), "status": "vacated" if group in self.vacated else "absent",
                "first": _first_json(self.vacated_first.get(group, b"")) if group in self.vacated else None,
                "table": table}

    def add_group(self, group, incarnation=0, first=b"", join=False):
        """Host `group` in `incarnation` (0: one newer than any this node removed), starting in the first
        configuration `first` (core/voters.pyx config_state(); empty: the table's first one; every
        node of an incarnation must be given the same: the client reads it from the membership table once and
        sends it to all); its GROUP record is durable before the group takes part in anything. A group id is
        never added back at an incarnation this node removed or holds (ValueError), nor in another first
        configuration than the one it holds the incarnation in, nor above `max_group_id` (ValueError, before
        anything is allocated). Returns the incarnation.

        `join`: other nodes hold this incarnation already (Client.add_group found it there; ADD_GROUP's flag).
        On a worker that lost its synced state before (wiped, or damaged and set aside: ``lost_state``), such a
        group is added REPAIRING: this node may have held that very incarnation then and voted in it (a group
        added at run time leaves no trace in a wiped log, and an operator's ``group add`` brings it back in the
        incarnation the other nodes hold), so it rebuilds from its peers before it votes, as after the loss
        itself; its REPAIR record goes in the same write as its GROUP record. An incarnation no node holds yet
        is new: nobody voted in it, and it starts voting at once everywhere (were it to rebuild on two nodes of
        three that once lost their state, neither could rebuild: simulator seed 7,000,746)."""
        if group > self.settings.max_group_id and not self.engine.hosts(group):
            raise ValueError("group %d is above limits.max_group_id = %d (a worker keeps state for every group id "
                             "up to the highest it hosts)" % (group, self.settings.max_group_id))
        first = self.engine.normal_first(first)     # BadAdopt (a ValueError) before anything changes
        if self.plant == "add-first-voters":
            first = b""             # planted bug: a group added at run time starts on the table's first voters
        if self.engine.hosts(group):
            current = self.engine.incarnation_of(group)
            if incarnation and incarnation != current:
                raise ValueError("group %d is hosted here in incarnation %d, not %d: remove it first"
                                 % (group, current, incarnation))
            self._check_first(group, current, self.engine.first_state(group), first)
            return current
        handed = self.vacated.get(group)
        if handed is not None:
            if not incarnation or incarnation == handed:
                self._check_first(group, handed, self.vacated_first.get(group, b""), first)
                return handed           # it exists, placed on other nodes: not held here
            if incarnation < handed:
                raise ValueError("group %d exists in incarnation %d, not %d" % (group, handed, incarnation))
            # A newer incarnation: the one handed over was removed meanwhile.
            del self.vacated[group]
            self.vacated_marks.pop(group, None)
            self.vacated_first.pop(group, None)
            self.tombstones[group] = handed
        removed = self.tombstones.get(group, 0)
        if not incarnation:
            incarnation = removed + 1
        if incarnation <= removed or incarnation > 0xFFFF:
            raise ValueError("group %d: incarnation %d was removed here already (last removed: %d)"
                             % (group, incarnation, removed))
        if group in self.tombstones:
            # A removal that crashed after its tombstone may have left the old incarnation's records and state
            # machine data: they go before the new GROUP record, so the new incarnation can never find them as
            # its own (soak seed 2,214,954: a state machine still at the old incarnation's applied mark skipped
            # every value the new one chose below it).
            self._drop_group_data(group)
        self.tombstones.pop(group, None)
        self.engine.add_group(group, incarnation, first)
        self._resize()
        rebuild = join and self.lost_state and self.plant != "add-after-amnesia-votes"    # the plant: votes at once
        records = [group_record(group, self.engine.incarnation_of(group), first=self.engine.first_state(group))]
        self.log.write(records + ([repair_record(group, True)] if rebuild else []))
        if rebuild:
            self.engine.begin_repair(group, "added to a worker that lost its synced state before (it may have "
                                            "voted in this incarnation then)")
        self.membership.group_added(group)      # it adopts the table's voters if they are not those it starts on
        log.info("node %d worker %d: group %d added (incarnation %d)", self.node_id, self.index, group, incarnation)
        return incarnation

    def join_newer(self):
        """Replace leftover copies by the newer incarnation a peer holds (Engine._on_other_incarnation says why
        a copy may be replaced, and when): remove it here, as `group remove` does, and add the newer one as a
        join, so a worker that lost its state rebuilds it before it votes (add_group). Re-checked here: the
        turn may have changed the copy since the engine reported it."""
        todo, self.superseded = self.superseded, []
        engine = self.engine
        for group, incarnation, first in todo:
            if (not engine.hosts(group) or engine.incarnation_of(group) >= incarnation
                    or not engine.replaceable(group)):
                continue
            held = engine.incarnation_of(group)
            first = engine.normal_first(first)      # checked by the engine already: the tombstone keeps it as added
            log.warning("node %d worker %d: group %d: its peers hold incarnation %d, this node a leftover of %d "
                        "(%s): it takes the newer one%s", self.node_id, self.index, group, incarnation, held,
                        engine.group_view(group)["status"],
                        ", rebuilding it first (this worker lost its state)" if self.lost_state else "")
            # The tombstone names the incarnation taken (planted bug: it does not), so a crash before the add
            # finishes the join at the next start (soak seed 7,305,234: the node held the group nowhere).
            self.remove_group(group, joining=None if self.plant == "join-intent-lost" else (incarnation, first))
            self._take_newer(group, incarnation, first)
        unfinished, self.unfinished_joins = self.unfinished_joins, []
        for group, incarnation, first in unfinished:
            if engine.hosts(group) or self.tombstones.get(group, 0) >= incarnation:
                continue                    # an operator's add or removal came first (the simulator's, at start)
            log.warning("node %d worker %d: group %d: taking incarnation %d, which a crash interrupted",
                        self.node_id, self.index, group, incarnation)
            self._take_newer(group, incarnation, first)

    def _take_newer(self, group, incarnation, first):
        """Add the newer incarnation of a leftover copy removed here, as a join (its peers hold it)."""
        self.add_group(group, incarnation, first, join=self.plant != "join-newer-votes")
        self.stats["incarnations_joined"] += 1

    @staticmethod
    def _check_first(group, incarnation, held, asked):
        """An add of an incarnation held here (or handed over) in another first configuration is refused: two
        nodes of one incarnation that count different voters at its first instances could choose two values."""
        if asked and asked != held:
            raise ValueError("group %d is held here in incarnation %d starting on %s, not on %s: every node of an "
                             "incarnation starts on the same voters" % (group, incarnation, _first_text(held),
                                                                        _first_text(asked)))

    def _resize(self):
        n = self.engine.n_slots
        self.masters.resize(n)
        if len(self.preferred) < n:
            self.preferred = np.concatenate([self.preferred, np.zeros(n - len(self.preferred), np.uint16)])

    def _on_remove_group(self, identity, req_id, group):
        if group == SYSTEM_GROUP:
            self._send(identity, rpc.error_reply(rpc.BAD_REQUEST, req_id, "the system group cannot be removed"))
            return
        self.remove_group(group)
        self._send(identity, rpc.reply(rpc.OK, req_id))

    def remove_group(self, group, joining=None):
        """Stop hosting `group` and delete its data. Its tombstone (the incarnation removed) is durable first,
        so a crash half-way never brings the group back as an acceptor that forgot its votes. `joining`: the
        (incarnation, first configuration) the removal makes way for (join_newer), kept in the tombstone."""
        if group == SYSTEM_GROUP:
            raise ValueError("the system group cannot be removed")
        if group in self.vacated:
            # Handed over before, and now removed: its tombstone, so a later add makes a newer incarnation.
            incarnation = self.vacated.pop(group)
            self.vacated_marks.pop(group, None)
            self.vacated_first.pop(group, None)
            self.log.write([group_record(group, incarnation, True)])
            self.tombstones[group] = incarnation
            return
        if not self.engine.hosts(group):
            return
        incarnation = self.engine.incarnation_of(group)
        # The engine may already hold effects of this group (records to write, votes to send, chosen values to
        # apply: a REMOVE_GROUP comes in the turn after the poll's peer messages): carry them out first, while
        # the group is hosted and its data exists, as vacate_groups does. Then the removal, and a cycle for
        # what it gives (its queued proposals expired).
        if self.plant != "remove-before-cycle":     # planted bug: the engine drops the group, then the cycle
            self._cycle()
        self.engine.remove_group(group)
        self._cycle()
        target, first = joining or (0, b"")
        self.log.write([group_record(group, incarnation, True, mark=target, first=first)])
        self.tombstones[group] = incarnation
        self._drop_group_data(group)
        self._release(group, "group %d was removed" % group)
        log.info("node %d worker %d: group %d removed (incarnation %d)", self.node_id, self.index, group,
                 incarnation)

    def _release(self, group, why):
        """The group is no longer held here: its master table slot is cleared and the requests waiting for it
        are told (UNKNOWN_GROUP: a client asks another node)."""
        slot = self.slot_of(group)
        self.masters.restore(slot, 0, 0, 0, 0, self.ticks)
        self.preferred[slot] = 0
        for req in self.parked.pop(group, []):
            self._reply_error(req, rpc.UNKNOWN_GROUP, why)
        for req in [r for r in self.lease_reads if r.group == group]:
            self.lease_reads.remove(req)
            self._reply_error(req, rpc.UNKNOWN_GROUP, why)

    def vacate_groups(self, groups):
        """Stop holding these groups, placed on other nodes (the membership driver calls this once
        Engine.handoff said so for each): their GROUP records say so (durable first: a crash half-way never
        finds a group held with part of its data deleted), then their data goes. Placed here again, a group
        comes back through reenter_group."""
        groups = [g for g in groups if g != SYSTEM_GROUP and self.engine.hosts(g)]
        if not groups:
            return
        # Effects of these groups the engine still holds (records, chosen values, catch-up to serve) are
        # carried out first, while they are held (simulator seed 6, 5 nodes: a serve effect met a group gone).
        self._cycle()
        incarnations = {g: self.engine.incarnation_of(g) for g in groups}
        marks = {g: self.engine.learned(g)[0] for g in groups}
        firsts = {g: self.engine.first_state(g) for g in groups}
        for group in groups:
            self.engine.remove_group(group)
        self.log.write([group_record(g, incarnations[g], vacated=True, mark=marks[g], first=firsts[g]) for g in groups])
        for group in groups:
            self.vacated[group] = incarnations[group]
            self.vacated_marks[group] = marks[group]
            if firsts[group]:
                self.vacated_first[group] = firsts[group]
            self._drop_group_data(group)
            self._release(group, "group %d is not held by node %d (placed on other nodes)" % (group, self.node_id))
        log.info("node %d worker %d: handed over %d group(s) placed elsewhere: %s", self.node_id, self.index,
                 len(groups), ", ".join(map(str, groups[:16])) + (" ..." if len(groups) > 16 else ""))

    def reenter_group(self, group):
        """Hold a group handed over before, placed on this node again: in the same incarnation, learning every
        instance below the chosen mark at which it handed the group over before it votes (Engine.begin_reentry
        says why that is enough). Its GROUP record (with that mark) and a pending REPAIR record (flagged as a
        re-entry) go in one write, so a crash after it still finds what is left to learn."""
        incarnation = self.vacated.pop(group)
        mark = self.vacated_marks.pop(group, 0)
        first = self.vacated_first.pop(group, b"")
        self._drop_group_data(group)             # what a crash during the handover may have left
        self.engine.add_group(group, incarnation, first)
        self._resize()
        self.log.write([group_record(group, incarnation, mark=mark, first=first), repair_record(group, True, True)])
        self.engine.begin_reentry(group, mark)
        log.info("node %d worker %d: group %d placed here again (incarnation %d): learning up to %d before it "
                 "votes", self.node_id, self.index, group, incarnation, mark)

    def _drop_group_data(self, group):
        """Delete a removed group's state machine data, master table state and log records (idempotent: a
        removal that crashed half-way is finished by the next add of the group)."""
        if self.plant != "remove-keeps-state":      # planted bug: the state machine's data outlives the group
            self.sm.drop_group(group)
            self.sm.flush()
            self.store.write([], [master_key(group)])    # the master table's state of the group goes with it
            self.store.commit()
        self.log.delete_group(group)

    # ------------------------------------------------------------------ status and replies
    def group_count(self):
        """Data groups hosted (the system group is not one)."""
        return self.engine.group_count() - self.engine.hosts(SYSTEM_GROUP)

    def masters_held(self):
        return int(np.count_nonzero(self.masters.master == self.node_id))

    def status(self, max_groups=64):
        """The worker's status. Its cost does not grow with idle groups (a node with a million groups answers
        at once): the details cover the first `max_groups` groups and every group that is not OK; `max_lag`
        is the largest of the log's lag behind what is known chosen (every group, from the engine's arrays)
        and the state machine's lag behind that (the groups it has loaded and those detailed: a group the
        state machine unloaded applied everything its log learned, since each cycle applies what it learns)."""
        first, unwell, repairing, max_lag = self.engine.status_summary(max_groups)
        detail = dict.fromkeys(first + unwell)
        detail.pop(SYSTEM_GROUP, None)          # shown under "membership"
        loaded = getattr(self.sm, "loaded_groups", None)
        for group in (loaded() if loaded is not None else ()):
            if group not in detail and self.engine.hosts(group):
                max_lag = max(max_lag, self.engine.learned(group)[0] - self.sm.applied_next(group))
        groups = []
        for group in detail:
            view = self.engine.group_view(group)
            applied = self.sm.applied_next(group)
            lag = max(0, view["known_mark"] - applied)
            max_lag = max(max_lag, lag)
            slot = self.slot_of(group)
            groups.append({"group": group, "master": int(self.masters.master[slot]),
                           "epoch": int(self.masters.epoch[slot]), "chosen": view["chosen_next"],
                           "chain": view["chain"],
                           "applied": applied, "lag": lag, "role": view["role"], "status": view["status"],
                           "reason": view["stop_reason"], "repair": view["repair"], "low": view["low"],
                           "config": self._config_view(group)})
        return {
            "node": self.node_id, "worker": self.index, "ticks": self.ticks, "groups": self.group_count(),
            "repairing": repairing, "masters": self.masters_held(), "max_lag": max_lag, "group_detail": groups,
            "counters": self.engine.counters_dict(), "requests": dict(self.stats), "pending": self.pending_count(),
            "fenced": self.applier.fenced, "latency": self.latency.snapshot(),
            "batch_size": self.batch_sizes.snapshot(), "write_seconds": self.write_seconds.snapshot(),
            "slow_writes": self.slow_writes, "serve_misses": self.serve_misses,
            "snapshots": self.snapshots.status(), "membership": self._membership_status(),
        }

    def _config_view(self, group):
        """The group's voters where its next instance is decided, and its newest (maybe pending) ones."""
        engine = self.engine
        current = engine.config_of(group, engine.learned(group)[0])
        epoch, voters = engine.latest_config(group)
        return {"epoch": current.epoch, "voters": list(current.voters), "latest_epoch": epoch,
                "latest_voters": list(voters)}

    def _membership_status(self):
        """The system group as this worker hosts it ({} on the other workers)."""
        out = self.membership.status(self)
        if self.engine.hosts(SYSTEM_GROUP):
            view = self.engine.group_view(SYSTEM_GROUP)
            slot = self.slot_of(SYSTEM_GROUP)
            out.update(master=int(self.masters.master[slot]), chosen=view["chosen_next"],
                       applied=self.sm.applied_next(SYSTEM_GROUP), status=view["status"],
                       config=self._config_view(SYSTEM_GROUP))
        return out

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
            if batch.applied_any() and rpc.decode_reply(frame)[0] != rpc.TIMEOUT:
                # Part of the batch is applied: a redirect or refusal ("nothing was proposed") would be
                # untrue for the request as a whole. Its outcome is partly known: the client retries it
                # (flagged), and the sessions answer what was applied.
                frame = rpc.error_reply(rpc.TIMEOUT, batch.req_id, "%d of the batch's %d operations were applied, "
                                        "then the rest was refused (status %d): retry the request"
                                        % (req.index, len(batch.results), rpc.decode_reply(frame)[0]))
            self._send(batch.identity, frame)

    def _send(self, identity, frame):
        frames = self.outbox.get(identity)
        if frames is None:
            self.outbox[identity] = [frame]
        else:
            frames.append(frame)

    def take_replies(self):
        """[(identity, frame)] to send now: one frame per client (several replies coalesced) unless
        coalescing is off. Lease replies are checked once more against the clock as they leave: one whose lease
        ran out meanwhile is withdrawn (the client asks again)."""
        if self.lease_outbox:
            pending, self.lease_outbox = self.lease_outbox, []
            now = self.now_ticks()
            for req, frame, slot in pending:
                if self.masters.has_lease(slot, now):
                    self._send(req.identity, frame)
                else:
                    self.stats["lease_replies_withdrawn"] += 1
                    self._send(req.identity, rpc.not_master(req.req_id, 0, int(self.masters.epoch[slot])))
        if not self.outbox:
            return []
        outbox, self.outbox = self.outbox, {}
        outbox.pop(INTERNAL, None)        # replies to the loop's own requests go nowhere
        if not outbox:
            return []
        if not self.settings.coalesce_replies:
            return [(identity, frame) for identity, frames in outbox.items() for frame in frames]
        return [(identity, frames[0] if len(frames) == 1 else rpc.reply_batch(frames))
                for identity, frames in outbox.items()]

    def close(self):
        self.sm.flush()
        self.store.commit()


def _first_json(state):
    """A group's first configuration for GROUP_INFO: None for the table's, else its epoch and voters."""
    if not state:
        return None
    epoch, voters = first_config(state)
    return {"epoch": epoch, "voters": list(voters)}


def _first_text(state):
    first = _first_json(state)
    return "the table's first voters" if first is None else "epoch %d's voters %s" % (first["epoch"], first["voters"])


def default_rng():
    """A random.Random seeded from the OS (the worker's; the simulator passes its own seeded one)."""
    return random.Random(int.from_bytes(os.urandom(8), "little"))

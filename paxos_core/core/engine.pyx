# cython: language_level=3
"""The sans-I/O Multi-Paxos engine of one node: proposer, acceptor and learner for many groups.

Inputs:  ``receive(messages)``, ``propose(group, payload, tag)``, ``tick(now)``, ``persisted(token)``; from the
         replica layer, ``prefer(group, node)`` (who should lead: the live master) and
         ``begin_repair(group, reason)`` (the node's storage lost synced state: rebuild before voting).
Output:  ``take_effects()`` returns one :class:`Effects` batch for everything since the previous call.

The engine never touches a socket, a disk, a clock, a thread or global randomness: the caller passes
logical time in ``tick`` and a seeded ``random.Random``. Whoever drives it (the worker runtime, or the
simulator) must honour the effect contract:

1. send ``send_now`` messages whenever it likes (they depend on nothing unsynced);
2. persist ``records`` (in order, atomically per batch) and make them durable;
3. only then send ``send_after`` messages, and call ``persisted(token)``;
4. ``serve`` asks the caller to read chosen values from its storage, AFTER this batch's records are
   durable, and send them as CATCHUP_REPLY with the chain given (the engine keeps no chosen values in
   memory). ``deletes`` go in the same batch as ``records``, after them.

Checkpoints (docs/design/checkpoints.md): ``truncate(group, below, ...)`` drops a learned prefix of the log
(the caller has applied it durably); a peer that asks for values below the truncation mark gets an entry in
``offers`` instead of ``serve`` (the replica layer offers it a snapshot), and ``install(group, A, ...)`` makes
a snapshot of the state at A this node's learned prefix. Message kinds the engine does not own (snapshot
transfer) come back in ``foreign``.

Steady state (a leader whose ballot nobody has beaten): one ACCEPT to each peer and one ACCEPTED back per
instance, one record per acceptor per instance, no Prepare. Accepts leave before the leader's own record is
durable; the leader counts its own vote only after ``persisted``. Followers learn a chosen value from their
own accepted record when the leader's mark says it is chosen and the ballots match, with no second write.
"""
import logging

import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from paxos_core.core.acceptor cimport AcceptorState, REJECTED, PROMISED, PROMISED_AGAIN, ACCEPTED
from paxos_core.core.ballot cimport ballot_node, ballot_round, make_ballot
from paxos_core.core.learner cimport LearnerState, chain_step
from paxos_core.core.proposer cimport FOLLOWER, LEADING, PREPARING, InFlight, ProposerGroup, ProposerState
from paxos_core.core.voters cimport Config, VoterTable
from paxos_core.core.voters import BadAdopt, encode_adopt, first_config, state_configs
from paxos_core.wire.message cimport (ACCEPT, ACCEPTED as MSG_ACCEPTED, CATCHUP_REPLY, CATCHUP_REQ, CHOSEN,
                                      FLAG_RESIGN, FLAG_STICKY, FORWARD, Message, PREPARE, PROMISE, REJECT,
                                      STATE_REPLY, STATE_REQ, INC_NOTICE, make_message)

from paxos_core.core.config import SYSTEM_GROUP as _SYSTEM_GROUP
from paxos_core.errors import ConfigError, FrameError, GroupStopped, PaxosError, ValueTooLarge
from paxos_core.storage.records cimport (CHAIN_EVERY, CHAIN_RECORD, INSTANCE_RECORD, PROMISE_RECORD, RECORD_CHOSEN,
                                         REPAIR_PENDING, REPAIR_RECORD)
from paxos_core.wire.message cimport SNAP_OFFER
from paxos_core.storage.records import BYTES_UNKNOWN, low_record
from paxos_core.wire.codec import decode_batch, decode_entries, encode_batch, encode_entries, proposals_of

log = logging.getLogger("paxos_core.core")

cdef extern from *:
    int __builtin_popcountll(unsigned long long) nogil

cdef bytes NOOP = b""
cdef uint32_t SYSTEM_GROUP = _SYSTEM_GROUP     # the system group's id (core/config.py)


cdef list _entries_of(bytes value):
    """proposals_of(value), or [] when it does not decode: no proposal of ours is in a value that no node built
    (a buggy or hostile member's, a newer format); the replica layer stops the group if it is chosen."""
    try:
        return proposals_of(value)
    except FrameError:
        return []

COUNTER_NAMES = (
    "msg_in", "msg_out", "records", "proposals", "instances_proposed", "chosen", "acks", "expired",
    "prepares", "elections_won", "step_downs", "rejects_sent", "retransmits", "catchup_requests",
    "catchup_learned", "forwards", "divergences", "dropped_unknown_group", "promises_sent", "accepts_sent",
    "accepted_sent", "chosen_sent", "batched_proposals", "catchup_rejected", "sticky_rejects", "resigns",
    "repairs_started", "repairs_done", "stale_votes", "wrong_incarnation", "truncations", "truncated_instances",
    "installs", "snapshot_offers", "strangers_refused", "configs_adopted", "configs_activated",
    "malformed_refused", "forged_ballots_refused", "incarnation_notices",
)

# Phases of a group's rebuild (see Engine.begin_repair).
REPAIR_WAIT, REPAIR_QUERY, REPAIR_LEARN = 0, 1, 2


cdef class Repair:
    """A group rebuilding after its node lost (or may have lost) synced promises or votes."""
    cdef public int phase
    cdef public int64_t wait_until      # REPAIR_WAIT: ask the peers from this tick on
    cdef public int64_t asked_at        # REPAIR_QUERY: when STATE_REQ last went out
    cdef public dict replies            # node -> (promised, top, chosen_next), from nodes not rebuilding
    cdef public uint64_t target         # REPAIR_LEARN: learn every instance below this before voting
    cdef public str reason
    cdef public set configs             # voter tuples the replies named (their current and pending ones)
    cdef public dict reply_configs      # node -> the voter tuples its latest reply named
    cdef public bint reentry            # held again after a handover: learn up to the target, no rebuild rule

    def __init__(self, str reason, int64_t wait_until, uint64_t target):
        self.phase = REPAIR_WAIT
        self.wait_until = wait_until
        self.asked_at = -(1 << 62)
        self.replies = {}
        self.target = target
        self.reason = reason
        self.configs = set()
        self.reply_configs = {}
        self.reentry = False


class UnknownGroup(PaxosError, KeyError):
    """The group is not hosted by this engine."""


cdef class Effects:
    def __init__(self):
        self.records = []
        self.send_now = []
        self.send_after = []
        self.chosen = []
        self.acks = []
        self.expired = []
        self.serve = []
        self.serve_at = {}
        self.offers = []
        self.offer_at = set()
        self.deletes = []
        self.foreign = []
        self.stopped = []
        self.self_votes = []
        self.superseded = []
        self.token = 0

    def __bool__(self):
        return bool(self.records or self.send_now or self.send_after or self.chosen or self.acks
                    or self.expired or self.serve or self.stopped or self.offers or self.deletes or self.foreign
                    or self.superseded)

    def __repr__(self):
        return ("Effects(token=%d records=%d now=%d after=%d chosen=%d acks=%d expired=%d serve=%d stopped=%d)"
                % (self.token, len(self.records), len(self.send_now), len(self.send_after), len(self.chosen),
                   len(self.acks), len(self.expired), len(self.serve), len(self.stopped)))


cdef class Engine:
    """One node's Paxos state for every group it hosts. See the module docstring for the contract."""

    def __init__(self, config, rng, recovered=None, int64_t now=0):
        self.config = config
        self.node_id = config.node_id
        self.members = tuple(config.members)
        self.peers = tuple(m for m in self.members if m != self.node_id)
        self.member_index = {m: k for k, m in enumerate(self.members)}
        self.rng = rng
        self.slot_base = 1 if config.system_group else 0
        self.n_slots = config.n_groups + self.slot_base
        self.alpha = config.alpha
        self.voters = VoterTable(self.n_slots, self.alpha, 1, config.voters)
        self.lead_config_array = np.zeros(self.n_slots, np.uint16)
        self.lead_config = self.lead_config_array
        self.adopt_due = {}
        self.group_offset = config.group_offset
        self.group_stride = config.group_stride
        plant = config.plant
        self.acceptor = AcceptorState(self.n_slots, plant == "ignore-promise")
        self.learner = LearnerState(self.n_slots)
        self.proposer = ProposerState(self.n_slots)
        self.status_array = np.zeros(self.n_slots, np.uint8)
        self.status = self.status_array
        self.inc_array = np.ones(self.n_slots, np.uint16)
        self.inc = self.inc_array
        self.stop_reasons = {}
        self.counters_array = np.zeros(C_COUNT, np.int64)
        self.counters = self.counters_array
        self.now = now          # logical time; the caller's tick counter, which survives restarts
        self.active = {}
        self.self_queue = []
        self.self_after = []
        self.fill_at_take = config.fill_at_take
        self.fill_due = {}
        self.fx = Effects()
        self.token = 1
        # Proposal sequence numbers must not repeat across restarts (they identify our own proposals in
        # chosen batches), so they start at a random point drawn from the caller's seeded generator.
        self.seq = (<uint64_t>rng.getrandbits(40)) << 20
        self.window = config.window
        self.max_batch_count = config.max_batch_count
        self.max_batch_bytes = config.max_batch_bytes
        self.max_value_bytes = config.max_value_bytes
        self.retransmit_ticks = config.retransmit_ticks
        self.max_retransmits = config.max_retransmits
        self.retransmit_backoff = config.retransmit_backoff
        self.backoff_lo, self.backoff_hi = config.election_backoff_ticks
        self.leader_timeout = config.leader_timeout_ticks
        self.forward_timeout = config.forward_timeout_ticks
        self.catchup_interval = config.catchup_interval_ticks
        self.catchup_max = config.catchup_max_instances
        self.idle_chosen = config.idle_chosen_ticks
        self.proposal_timeout = config.proposal_timeout_ticks
        self.sticky = config.sticky_ticks
        self.vote_ttl = config.vote_ttl_ticks
        self.repair_wait = config.repair_wait_ticks
        self.peer_lag = config.peer_lag_instances
        self.peer_live = config.peer_live_ticks
        self.repairs = {}
        self.handoffs = {}
        self.notice_at = {}
        self.catchup_asked = {}
        self.peer_heard = {}
        self.plant_requeue_reverse = plant == "requeue-reverse"
        self.plant_config_forgets_history = plant == "config-forgets-history"
        self.plant_catchup_any_peer = plant == "catchup-any-peer"
        self.plant_catchup_source_only = plant == "catchup-source-only"
        self.plant_amnesia_votes = plant == "amnesia-votes"
        self.plant_readd_amnesia = plant == "readd-amnesia"
        self.plant_reply_before_sync = plant == "reply-before-sync"
        self.plant_promise_not_persisted = plant == "promise-not-persisted"
        self.plant_learn_without_quorum = plant == "learn-without-quorum"
        self.plant_forward_twice = plant == "forward-twice"
        self.plant_relay_appends = plant == "relay-appends"
        self.plant_prepare_unpromised = plant == "prepare-unpromised"
        self.plant_fill_reverse = plant == "fill-reverse"
        self.plant_reprepare_uncapped = plant == "reprepare-uncapped"
        self.window_override = 0
        self.plant_config_at_i = plant == "config-at-i"
        self.plant_count_any_vote = plant == "count-any-vote"
        self.plant_no_reprepare_at_activation = plant == "no-reprepare-at-activation"
        self.plant_snapshot_drops_config = plant == "snapshot-drops-config"
        self.plant_handoff_early = plant == "handoff-early"
        self.plant_reenter_without_learning = plant == "reenter-without-learning"
        if recovered:
            for group, state in recovered.items():
                self.restore_group(group, state)

    # ------------------------------------------------------------------ groups and slots

    cdef Py_ssize_t slot_of(self, uint32_t group) except -2:
        """The slot of a hosted group, or -1."""
        cdef Py_ssize_t slot = self.slot_for(group)
        if slot < 0 or slot >= self.n_slots or self.status[slot] == GROUP_ABSENT:
            return -1
        return slot

    cdef inline Py_ssize_t slot_for(self, uint32_t group):
        """The slot `group` has in this engine, hosted or not; -1 if it is not one of this engine's groups."""
        if group == SYSTEM_GROUP:
            return 0 if self.slot_base else -1
        if group < self.group_offset:
            return -1
        cdef uint32_t d = group - self.group_offset
        if d % self.group_stride:
            return -1
        return <Py_ssize_t>(d // self.group_stride) + self.slot_base

    cdef inline uint32_t group_of(self, Py_ssize_t slot):
        if slot < self.slot_base:
            return SYSTEM_GROUP
        return <uint32_t>(self.group_offset + (slot - self.slot_base) * self.group_stride)

    def slot_index(self, uint32_t group):
        """The slot `group` has (or would have) in this engine's per-group arrays, or -1 if it can never be
        this engine's: callers that keep arrays beside the engine's use this one mapping."""
        return self.slot_for(group)

    def group_at(self, Py_ssize_t slot):
        """The group of a slot (the inverse of slot_index)."""
        return self.group_of(slot)

    def hosts(self, uint32_t group):
        return self.slot_of(group) >= 0

    def group_count(self):
        """How many groups are hosted."""
        return int(np.count_nonzero(self.status_array != GROUP_ABSENT))

    def groups(self):
        """Every hosted group id."""
        return [self.group_of(s) for s in range(self.n_slots) if self.status[s] != GROUP_ABSENT]

    def status_summary(self, Py_ssize_t first=64):
        """For status pages, in array operations (cheap with a million groups): (the first `first` hosted
        groups, every hosted group not OK, how many are repairing, the largest known_mark - chosen_next of
        any hosted group: how far this node's log is behind what it heard is chosen)."""
        status = self.status_array
        hosted = np.flatnonzero(status != GROUP_ABSENT)
        unwell = np.flatnonzero((status != GROUP_ABSENT) & (status != GROUP_OK))
        known = self.learner.known_mark_array[hosted].astype(np.int64)
        chosen = self.learner.chosen_next_array[hosted].astype(np.int64)
        behind = int((known - chosen).max()) if len(hosted) else 0
        return ([self.group_of(s) for s in hosted[:first]], [self.group_of(s) for s in unwell],
                int(np.count_nonzero(status == GROUP_REPAIRING)), max(0, behind))

    def add_group(self, uint32_t group, int incarnation=1, bytes first=b""):
        """Start hosting `group` (its state starts empty, as for a new group) in `incarnation`, in the first
        configuration `first` (VoterTable.set_first: empty, the table's; a group added at run time starts in
        the one its ADD_GROUP names, the same on every node). ConfigError, and nothing changed, if `first` is
        not a configuration.

        A group id removed and added again is a new incarnation: its messages carry it, and a node drops every
        message of another incarnation, so a re-added acceptor (which remembers nothing) never meets the votes
        and promises of the earlier one."""
        if self.plant_readd_amnesia:
            incarnation = 1          # planted bug: a re-added group is the same incarnation as before
        if first:
            try:
                first_config(first)
            except BadAdopt as exc:
                raise ConfigError("group %d: its first configuration is not well formed: %s" % (group, exc))
        cdef Py_ssize_t slot = self.slot_for(group)
        if slot < 0:
            if group == SYSTEM_GROUP:
                raise ConfigError("the system group is hosted by worker 0's engine only")
            raise ConfigError("group %d does not belong to this engine (offset %d, stride %d)"
                              % (group, self.group_offset, self.group_stride))
        if slot >= self.n_slots:
            n = max(slot + 1, self.n_slots * 2)
            self.acceptor.resize(n)
            self.learner.resize(n)
            self.proposer.resize(n)
            extra = np.full(n - self.n_slots, GROUP_ABSENT, np.uint8)
            self.status_array = np.concatenate([self.status_array, extra])
            self.status = self.status_array
            self.inc_array = np.concatenate([self.inc_array, np.ones(n - self.n_slots, np.uint16)])
            self.inc = self.inc_array
            self.voters.grow(n - self.n_slots)
            self.lead_config_array = np.concatenate([self.lead_config_array, np.zeros(n - self.n_slots, np.uint16)])
            self.lead_config = self.lead_config_array
            self.n_slots = n
        if self.status[slot] == GROUP_ABSENT:
            self.voters.set_first(slot, first)
            self._reset_slot(slot)
            self.status[slot] = GROUP_OK
            self.inc[slot] = incarnation
        return slot

    def incarnation_of(self, uint32_t group):
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        return self.inc[slot]

    def replaceable(self, uint32_t group):
        """Whether the copy here holds nothing that removing it could lose (rebuilding, or empty): a leftover
        that a newer incarnation held by the peers may replace (_on_other_incarnation)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        return self._replaceable(slot)

    def first_state(self, uint32_t group):
        """The group's first configuration as add_group takes it (empty: the table's first configuration)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        return self.voters.first_state(slot)

    def normal_first(self, bytes state):
        """A first configuration as first_state() would give it back (empty for the table's first one), so two
        can be compared as bytes; BadAdopt (a ValueError) if `state` is not one."""
        return self.voters.normal_first(state)

    def _reset_slot(self, Py_ssize_t slot):
        """Empty state for a slot that (re)starts hosting a group."""
        self.acceptor.promised[slot] = 0
        self.acceptor.top[slot] = 0
        self.acceptor.accepted.pop(slot, None)
        self.learner.chosen_next[slot] = 0
        self.learner.chain[slot] = 0
        self.learner.known_mark[slot] = 0
        self.learner.repair_upto[slot] = 0
        self.learner.catchup_at[slot] = -(1 << 62)
        self.learner.catchup_src[slot] = 0
        self.catchup_asked.pop(slot, None)
        self.learner.low[slot] = 0
        self.learner.learned_bytes[slot] = 0
        self.learner.low_bytes[slot] = 0
        self.learner.peer_floor[slot] = 0
        self.learner.decided.pop(slot, None)
        self.learner.outstanding.pop(slot, None)
        self.proposer.ballot[slot] = 0
        self.proposer.role[slot] = FOLLOWER
        self.proposer.next_instance[slot] = 0
        self.proposer.seen_round[slot] = 0
        self.proposer.timer[slot] = 0
        self.proposer.mark_sent[slot] = 0
        self.proposer.mark_notices[slot] = 0
        self.proposer.leader_heard[slot] = -(1 << 62)
        self.proposer.last_accept[slot] = 0
        self.proposer.accept_heard[slot] = -(1 << 62)
        self.proposer.preferred[slot] = 0
        self.proposer.groups.pop(slot, None)
        self.voters.reset(slot)
        self.lead_config[slot] = self.voters.first[slot]
        self.adopt_due.pop(slot, None)
        self.active.pop(slot, None)
        self.repairs.pop(slot, None)
        self.handoffs.pop(slot, None)
        self.stop_reasons.pop(self.group_of(slot), None)

    def remove_group(self, uint32_t group):
        """Stop hosting `group`: its in-memory state is dropped; queued proposals expire."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        self._forget_slot(slot, "group removed")
        self.status[slot] = GROUP_ABSENT

    def _forget_slot(self, Py_ssize_t slot, str reason):
        cdef uint32_t group = self.group_of(slot)
        out = self.learner.outstanding.pop(slot, None)
        if out:
            for seq, entry in out.items():
                self.fx.expired.append((entry[0], group, reason))
                self.counters[C_EXPIRED] += 1
        self.proposer.groups.pop(slot, None)
        self.acceptor.accepted.pop(slot, None)
        self.learner.decided.pop(slot, None)
        self.active.pop(slot, None)
        self.repairs.pop(slot, None)
        self.handoffs.pop(slot, None)
        self.proposer.role[slot] = FOLLOWER

    def restore_group(self, uint32_t group, state):
        """Load one group's recovered state (see paxos_core.storage.recovery.RecoveredGroup)."""
        cdef Py_ssize_t slot = self.add_group(group, state.incarnation, getattr(state, "first", b""))
        self.acceptor.restore(slot, state.promised, state.top, state.accepted)
        self.learner.restore(slot, state.chosen_next, state.chain, state.known_mark, state.repair_upto,
                             state.low, state.learned_bytes, state.low_bytes)
        self.proposer.seen_round[slot] = ballot_round(state.promised)
        damaged = self._restore_config(slot, getattr(state, "config", b""), getattr(state, "adopts", ()),
                                       state.chosen_next)
        if damaged and not state.stop_reason:
            state.stop_reason = damaged
        if state.stop_reason:
            self.status[slot] = GROUP_STOPPED
            self.stop_reasons[group] = state.stop_reason
        elif state.repair:
            self._begin_repair(slot, state.repair_reason, state.repair_upto)
        elif getattr(state, "reenter_upto", 0) > state.chosen_next:
            self._begin_reentry(slot, state.reenter_upto)
        if state.known_mark > state.chosen_next:
            self.active[slot] = True

    def _restore_config(self, Py_ssize_t slot, bytes base, adopts, uint64_t chosen_next):
        """The configuration state at `chosen_next` from the one at the log's base and the ADOPT values learned
        since, as _learned_config made it: a function of the log. A reason when the base is not well formed."""
        try:
            self.voters.replay(slot, base, adopts, chosen_next, 1 if self.plant_config_at_i else self.alpha)
        except BadAdopt as exc:
            # Checksummed, yet not a configuration: who votes here is unknown, so the group cannot serve.
            self.voters.reset(slot)
            return "the membership configuration at the log's base is not well formed: %s" % exc
        return ""

    def config_state_after(self, uint32_t group, bytes base, adopts, uint64_t end):
        """The group's configuration state at `end` (VoterTable.compact_state() bytes) from the one at a base
        record and the ADOPT values [(instance, value)] between it and `end` (replica/cycle.py chain_at
        with_config). For a snapshot at `end`."""
        cdef VoterTable scratch = VoterTable(1, self.alpha, 1, self.config.voters)
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot >= 0:
            scratch.set_first(0, self.voters.first_state(slot))
        scratch.replay(0, base, adopts, end, 1 if self.plant_config_at_i else self.alpha)
        return scratch.compact_state(0)

    def begin_repair(self, uint32_t group, str reason):
        """The group's node lost (or may have lost) synced promises or votes: rebuild before voting again.

        Used for a worker whose storage was wiped or found damaged as a whole; recovery starts the rebuild of a
        group by itself when its own records show damage."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        if self.status[slot] != GROUP_STOPPED:
            self._begin_repair(slot, reason, self.learner.repair_upto[slot])
            self._drain()

    def begin_reentry(self, uint32_t group, uint64_t target):
        """The group is held here again after this node handed it over at chosen mark `target` (Engine.handoff;
        ReplicaLoop.reenter_group writes the records that keep this across a restart): it learns every instance
        below `target` before it answers anything, then votes with an empty promise.

        Why no rebuild rule is needed: when it handed the group over it voted in no configuration it knew at or
        past `target` (its chosen mark then), so a promise or vote of its own could only have counted for an
        instance below `target` (R3, R4: a proposer counts a promise only where the promiser votes, and runs
        phase 1 again where other voters take over). Every such instance is chosen. Once it learned them, it
        answers a Prepare or Accept for one with the chosen value, as any node past its chosen mark does; for
        the instances of a configuration that counts it again, it promises and votes afresh."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        if self.plant_reenter_without_learning:
            return          # planted bug: it votes at once, knowing nothing of what it voted before
        if self.status[slot] == GROUP_OK:
            self._begin_reentry(slot, target)
            self._drain()

    def _begin_reentry(self, Py_ssize_t slot, uint64_t target):
        cdef uint32_t group = self.group_of(slot)
        reason = "held again after a handover: learning up to %d before it votes" % target
        self.status[slot] = GROUP_REPAIRING
        self.stop_reasons[group] = "repairing: " + reason
        if self.proposer.role[slot] != FOLLOWER:
            self._step_down(slot, False, None)
        cdef Repair rep = Repair(reason, self.now, target)
        rep.phase = REPAIR_LEARN
        rep.reentry = True
        self.repairs[slot] = rep
        if target > self.learner.repair_upto[slot]:
            self.learner.repair_upto[slot] = target
        if target > self.learner.known_mark[slot]:
            self.learner.known_mark[slot] = target
        self.counters[C_REPAIRS_STARTED] += 1
        self.active[slot] = True
        self._repair_progress(slot)

    def _begin_repair(self, Py_ssize_t slot, str reason, uint64_t target):
        """The rebuild rule (safety argument in docs/architecture.md, "Damaged storage"):

        1. REPAIRING: the acceptor answers no Prepare and no Accept and this node does not lead; the learner
           goes on learning (from marks that match its own records, and by catch-up).
        2. Wait repair_wait ticks (> vote_ttl under bounded clock drift): every promise or vote this node gave
           before it lost its memory has by then either been counted by its proposer (proposers count them
           only within vote_ttl of sending), or never will be.
        3. Ask every peer (STATE_REQ) until nodes that are not rebuilding themselves, forming a majority of
           the whole membership without this node, have answered with their promise, top instance and
           chosen mark. A ballot any counted promise of ours helped was promised by one of them, and an
           instance any counted vote of ours helped choose was accepted by one of them.
        4. Promise the highest ballot they report (durably), and learn every instance below the highest top
           they report. Then vote again.
        A REPAIR record keeps the rebuild pending across restarts until it completes."""
        cdef uint32_t group = self.group_of(slot)
        if self.plant_amnesia_votes:
            return          # planted bug: a node that lost its memory votes at once
        self.status[slot] = GROUP_REPAIRING
        self.stop_reasons[group] = "repairing: " + reason
        if target > self.learner.repair_upto[slot]:
            self.learner.repair_upto[slot] = target
        if self.proposer.role[slot] != FOLLOWER:
            self._step_down(slot, False, None)
        self.repairs[slot] = Repair(reason, self.now + self.repair_wait, self.learner.repair_upto[slot])
        self._record((REPAIR_RECORD, group, 0, REPAIR_PENDING, 0, 0, 0, 0, NOOP))
        self.counters[C_REPAIRS_STARTED] += 1
        self.active[slot] = True

    def prefer(self, uint32_t group, int node):
        """Who should lead the group: its live master (leadership follows mastership), or 0 for nobody known.

        A leader told that another node should lead resigns (its acceptors then stop holding their promise to
        it); a node told that it should lead prepares at once (lease reads need it to lead)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        self.proposer.preferred[slot] = node
        cdef int role = self.proposer.role[slot]
        cdef uint64_t mark
        if node != 0 and node != self.node_id and role != FOLLOWER:
            mark = self.learner.chosen_next[slot] if role == LEADING else 0
            m = make_message(CHOSEN, group, 0, self.proposer.ballot[slot], mark, 0,
                             self.learner.chain[slot] if mark else 0, NOOP)
            m.flags = FLAG_RESIGN
            if mark > self.proposer.mark_sent[slot]:
                self.proposer.mark_sent[slot] = mark
            self.counters[C_RESIGNS] += 1
            self._broadcast(m, False)
            if self.acceptor.promised[slot] == self.proposer.ballot[slot]:
                # Our own acceptor stops holding the promise to us too, as the peers' do on the notice:
                # otherwise it alone would go on refusing the new master's Prepare for sticky_ticks.
                self.proposer.leader_heard[slot] = -(1 << 62)
                self.proposer.accept_heard[slot] = -(1 << 62)
            self._step_down(slot, False, None)
        elif (node == self.node_id and role == FOLLOWER and self.status[slot] == GROUP_OK
              and self.now >= self.proposer.timer[slot]):
            self._start_prepare(slot)
        self._drain()

    def repair_waiting(self):
        """Rebuilding groups that wait to learn instances up to their target (someone must drive them)."""
        cdef Repair rep
        out = []
        for slot, rep in self.repairs.items():
            if rep.phase == REPAIR_LEARN and self.learner.chosen_next[slot] < rep.target:
                out.append(self.group_of(slot))
        return out

    def ballot_of(self, uint32_t group):
        """(our proposer's ballot, True if it leads or is preparing with it). A master dates its lease only by
        its own proposals made under the ballot it still leads with."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        return self.proposer.ballot[slot], self.proposer.role[slot] != FOLLOWER

    def adopt(self, uint32_t group, uint64_t epoch, voters):
        """Propose that `voters` vote in the group as configuration `epoch` (membership; docs/design/membership.md):
        an ADOPT value, alone in an instance, proposed once this node leads and no activation is pending. Chosen
        at instance i, it governs every instance from i + alpha on, on every node alike. Idempotent: an epoch
        not newer than the group's latest (current or pending) changes nothing (rule R5), so a driver may call
        it on every node and again after a failure. Returns the ADOPT value."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        value = encode_adopt(epoch, voters)
        if epoch <= self.voters.latest_epoch(slot):
            return value
        self.adopt_due[slot] = value
        self.active[slot] = True
        if self.proposer.role[slot] == LEADING:
            self.proposer.group(slot)
            self._fill(slot)
        self._drain()
        return value

    def withdraw_adopt(self, uint32_t group):
        """Forget the group's ADOPT not yet proposed (Engine.adopt), if any: a membership driver whose newer
        table wants the voters the group has already must not see an older epoch's change proposed later. One
        already in flight is not withdrawn (the driver asks again if it gets chosen)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot >= 0:
            self.adopt_due.pop(slot, None)

    def set_members(self, members):
        """The nodes of the cluster changed (membership: a node added or removed by the system group): messages
        go to these peers from now on. Who votes in a group is its configuration's business (per instance), not
        this list's: a node in it that votes nowhere is a learner, and a voter missing from it gets no message
        from us. This node must be one of them."""
        members = tuple(int(m) for m in members)
        if self.node_id not in members or len(set(members)) != len(members):
            raise ConfigError("members %r: distinct node ids, node %d among them" % (members, self.node_id))
        if any(not 1 <= m <= 0xFFFE for m in members):
            raise ConfigError("members %r: node ids are 1 to 65534" % (members,))
        self.members = members
        self.peers = tuple(m for m in members if m != self.node_id)
        self.member_index = {m: k for k, m in enumerate(members)}

    def latest_config(self, uint32_t group):
        """(epoch, voters) of the group's newest configuration, pending or current: what a membership driver
        compares with the epoch it wants the group to adopt."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        config = self.voters.latest(slot)
        return config.epoch, config.voters

    def config_of(self, uint32_t group, uint64_t instance):
        """The configuration (core/voters.pyx Config) that governs `instance` of the group, as this node knows
        it: defined from the truncation mark to the chosen mark + alpha, the same on every node for a chosen
        instance however far each learned since (simulator seed 1,686: nodes that had learned past an
        activation answered for an instance before it with the configuration after it, and the applier's
        lease renewal, replica/applier.py, differed from node to node)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        if self.plant_config_forgets_history:       # planted bug: the configuration at our chosen mark
            return self.voters.config_at(slot, instance)
        return self.voters.config_of_chosen(slot, instance)

    def votes_in(self, uint32_t group, int node):
        """True when `node` is a voter where the group's next instance is decided (at our chosen mark): only
        a voter may lead, so only a voter should be the group's master (replica/loop.py)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            return False
        return self.voters.config_at(slot, self.learner.chosen_next[slot]).position(node) >= 0

    def votes_anywhere(self, uint32_t group, int node):
        """True when `node` is a voter of the group's current configuration or of a pending one: some instance
        not yet chosen here may still count its vote (a configuration that leaves it out governs only from its
        activation on, alpha instances after its ADOPT)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        return self.voters.votes_anywhere(slot, node)

    def some_voter(self, uint32_t group):
        """A voter of the group other than this node, to send a client to: the one we believe leads if it
        votes, else the first voter (0 when there is none)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            return 0
        cdef Config config = self.voters.config_at(slot, self.learner.chosen_next[slot])
        cdef int leader = ballot_node(self.acceptor.promised[slot])
        if leader != self.node_id and config.position(leader) >= 0:
            return leader
        for node in config.voters:
            if node != self.node_id:
                return node
        return 0

    cdef bint _voter_at(self, Py_ssize_t slot, uint64_t instance):
        """True when this node votes at `instance` of the slot's group (else it is a learner there)."""
        return self.voters.config_at(slot, instance).position(self.node_id) >= 0

    # ------------------------------------------------------------------ inputs

    def propose(self, uint32_t group, bytes payload, tag=None):
        """Queue a proposal. Its tag comes back in Effects.acks once it is chosen (or in expired)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup("group %d is not hosted on node %d" % (group, self.node_id))
        if len(payload) > self.max_value_bytes:
            raise ValueTooLarge("proposal of %d bytes exceeds max_value_bytes=%d"
                                % (len(payload), self.max_value_bytes))
        if self.status[slot] == GROUP_STOPPED:
            raise GroupStopped("group %d is stopped: %s" % (group, self.stop_reasons.get(group)))
        self.seq += 1
        cdef uint64_t seq = self.seq
        out = self.learner.outstanding.get(slot)
        if out is None:
            out = {}
            self.learner.outstanding[slot] = out
        out[seq] = (tag, self.now + self.proposal_timeout)
        cdef ProposerGroup pg = self.proposer.group(slot)
        pg.pending.append((self.node_id, seq, payload))
        pg.pending_bytes += len(payload)
        self.counters[C_PROPOSALS] += 1
        self.active[slot] = True
        cdef int role = self.proposer.role[slot]
        if role == LEADING:
            if not self.fill_at_take:
                self._fill(slot)
            else:
                self.fill_due[slot] = True      # filled in take_effects, with every proposal of this input
        elif role == FOLLOWER:
            self._route_follower(slot)
        self._drain()
        return seq

    def handoff(self, uint32_t group, placement=None, uint64_t min_epoch=0):
        """May this node stop holding `group` (it is placed on other nodes)? True once it may; until then each
        call (the membership driver polls) keeps asking.

        The handoff rule: this node is a voter of no configuration it knows of the group, current or pending
        (so nothing at or past its chosen mark counts a promise or vote of its own), it neither leads nor
        rebuilds, and a majority of the current configuration's voters, none of them rebuilding, told it
        (STATE_REPLY) that they have learned at least every instance it had learned when it asked. Every value
        it holds is then held by a majority of the voters that carry the group on, so dropping its copy loses
        nothing, and a node that holds a group again only after rebuilding it from its peers (ReplicaLoop.
        reenter_group) never answers with a memory it lost. A configuration chosen later that counts it again
        finds it absent, as if down, until it is placed here again and rebuilt.

        `placement` (the voters the membership table places the group on): its voters are the ones asked, a
        reply counts only once the replier's current configuration is that one and no configuration it knows
        names us, and a new placement starts the count over. Until the group has adopted
        the placement, an ADOPT of an older epoch still in flight (accepted, not chosen, so re-proposed by the
        next leader) may be chosen after we dropped our copy and count us again; its voters were then one short
        for good (simulator seed 4,200,513: four voters, one of them wiped, never chose again). Once the
        placement is current, an older epoch's ADOPT changes nothing (rule R5).

        `min_epoch` (a node leaving the cluster: the last epoch of the table it voted in, MembershipDriver.
        voter_until): a reply counts only once the replier's current configuration is of that epoch or newer.
        Voters alone do not tell: a table that comes back to an earlier epoch's voters (A, B, A) finds the group
        still in A's configuration while B's ADOPT, counting us, may yet be chosen (simulator seed 8,002,243:
        the removed node left, B's ADOPT was chosen after, and the group had a voter gone for good)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        if (self.status[slot] != GROUP_OK or self.proposer.role[slot] != FOLLOWER
                or self.voters.votes_anywhere(slot, self.node_id)):
            self.handoffs.pop(slot, None)
            return False
        if self.plant_handoff_early:
            return True         # planted bug: no voter carrying the group on is asked what it has learned
        placed = tuple(placement) if placement is not None else None
        h = self.handoffs.get(slot)
        if h is None or h[4] != placed or h[5] != min_epoch:
            # With a placement, its voters are the ones asked (the group's current configuration may still be an
            # older one), and a new placement starts the count over: replies counted for the last one would
            # never match it again (simulator seed 1,666: placed on 1,2,3 then on 1,3,5, a node waited for
            # ever for voters of 1,2,3 whose current configuration was 1,2,3).
            voters = placed if placed is not None else self.voters.config_at(slot, self.learner.chosen_next[slot]).voters
            h = [self.learner.chosen_next[slot], voters, set(), -(1 << 62), placed, min_epoch]
            self.handoffs[slot] = h
        if len(<set>h[2]) >= len(<tuple>h[1]) // 2 + 1:
            return True
        if self.now - <int64_t>h[3] >= self.retransmit_ticks:
            h[3] = self.now
            for node in <tuple>h[1]:
                if node != self.node_id and node in self.member_index:
                    self._send(node, make_message(STATE_REQ, group, 0, 0, 0, 0, 0, NOOP), False)
            self._drain()
        return False

    def poke(self, uint32_t group):
        """Ask a peer for chosen values beyond ours (a caller has seen evidence that we are behind)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        cdef int leader = ballot_node(self.acceptor.promised[slot])
        if leader != self.node_id:
            self.learner.catchup_src[slot] = leader
        self._request_catchup(slot)

    def receive(self, messages):
        """Handle messages from peers (any groups, any order).

        A message whose value does not decode (an entry list or batch in a format this build does not read, a
        damaged one that passed its frame's checksum: a newer peer, a buggy or hostile one) is refused whole
        and counted: every handler decodes its value before it changes anything."""
        cdef Message m
        for m in messages:
            self.counters[C_MSG_IN] += 1
            if m.src in self.member_index:
                self.peer_heard[m.src] = self.now      # for catch-up: ask a peer that is there (_catchup_peer)
            try:
                self._dispatch(m)
            except FrameError as exc:
                self.counters[C_MALFORMED] += 1
                log.warning("group %d: refused a message (kind %d) from node %d: %s", m.group, m.kind, m.src, exc)
        self._drain()

    def tick(self, int64_t now):
        """Advance logical time; only groups with pending work are visited."""
        if now > self.now:
            self.now = now
        cdef Py_ssize_t slot
        for slot in list(self.active):
            if not self._tick_group(slot):
                self.active.pop(slot, None)
        self._drain()
        if now % 256 == 0:
            self._compact()

    def _compact(self):
        """Re-pack the per-group dicts: a Python dict keeps its peak size after deletions, so after a burst
        over many groups the empty tables would go on costing memory (and iteration time for `active`)."""
        self.active = dict(self.active)
        self.proposer.groups = dict(self.proposer.groups)
        self.acceptor.accepted = dict(self.acceptor.accepted)
        self.learner.decided = dict(self.learner.decided)
        self.learner.outstanding = dict(self.learner.outstanding)

    def persisted(self, long token):
        """Every record of effect batches up to `token` is durable."""
        cdef list ready = []
        cdef list keep = []
        for item in self.self_after:
            if item[0] <= token:
                ready.append(item[1])
            else:
                keep.append(item)
        self.self_after = keep
        self.self_queue.extend(ready)
        self._drain()

    def has_effects(self):
        """True when effects are waiting for take_effects() (e.g. produced by persisted())."""
        return bool(self.fx) or bool(self.fill_due)

    def take_effects(self):
        """Everything the engine wants done since the last call, as one batch.

        With fill_at_take (the default), a leader's proposals queued since the last call go into instances
        here, packed together (adaptive batching over one batch of input: a worker's turn), not one instance
        per propose() while the window has room. Their Accepts are in this batch's send_now, so no latency is
        added."""
        cdef Py_ssize_t slot
        if self.fill_due:
            due = self.fill_due
            self.fill_due = {}
            for slot in due:
                if self.status[slot] == GROUP_OK:
                    if self.plant_fill_reverse:
                        pg = self.proposer.groups.get(slot)
                        if pg is not None:
                            pg.pending.reverse()      # planted bug: one input's proposals packed backwards
                    self._fill(slot)
            self._drain()
        cdef Effects fx = self.fx
        fx.token = self.token
        self.token += 1
        self.fx = Effects()
        return fx

    # ------------------------------------------------------------------ plumbing

    cdef void _send(self, int dest, Message m, bint after):
        cdef Py_ssize_t slot = self.slot_of(m.group)
        if slot >= 0:
            m.inc = self.inc[slot]
        if dest == self.node_id:
            local = make_message(m.kind, m.group, m.instance, m.ballot, m.mark, m.aux, m.chain, m.value)
            local.src = self.node_id
            local.flags = m.flags
            if after:
                self.self_after.append((self.token, local))
            else:
                self.self_queue.append(local)
            return
        self.counters[C_MSG_OUT] += 1
        if after:
            self.fx.send_after.append((dest, m))
        else:
            self.fx.send_now.append((dest, m))

    cdef void _broadcast(self, Message m, bint after):
        cdef int p
        for p in self.peers:
            self._send(p, m, after)

    cdef void _reply(self, int dest, Message m):
        """A reply that vouches for persisted state: it waits for the records (unless the plant says not)."""
        self._send(dest, m, not self.plant_reply_before_sync)

    cdef void _record(self, tuple record):
        self.counters[C_RECORDS] += 1
        self.fx.records.append(record)

    cdef void _drain(self):
        cdef Message m
        while self.self_queue:
            batch = self.self_queue
            self.self_queue = []
            for m in batch:
                self._dispatch(m)

    cdef void _on_other_incarnation(self, Py_ssize_t slot, Message m):
        """A message of another incarnation of a group id we host: a different group, never handled as ours.
        But a copy that cannot go on may be a leftover: a node that lost its data holds its node file's groups
        again in their first incarnation, rebuilding, while the cluster removed and added one of them again (the
        others drop that incarnation's messages, so it would never rebuild); a node that joins holds them in
        their first incarnation too, empty. The two holders tell each other their incarnations (INC_NOTICE):
        the newer one sends its first configuration, and a copy here that is REPLACEABLE (_replaceable: it
        votes in nothing, or never took part in anything) reports the newer incarnation (Effects.superseded);
        the replica layer then removes it here and joins the newer one, rebuilding first if this worker lost
        its state (ReplicaLoop.join_newer). Safe because an intact node that holds incarnation k never held a
        later one (its records would say so), and a node that lost its state rebuilds before it votes. A copy
        that votes and holds data is never replaced: only an operator removes an incarnation."""
        cdef uint16_t ours = self.inc[slot]
        if m.inc < ours:
            self._notice(slot, m.src, self.voters.first_state(slot))     # it holds an older one: ours, with
            return                                                        # the voters it starts on
        if not self._replaceable(slot):
            return
        if m.kind != INC_NOTICE:
            self._notice(slot, m.src, NOOP)           # a newer one: ask its holder for its first voters
            return
        if m.value:
            try:
                first_config(m.value)
            except BadAdopt:
                self.counters[C_MALFORMED] += 1
                return
        self.fx.superseded.append((m.group, m.inc, m.value))

    cdef bint _replaceable(self, Py_ssize_t slot):
        """Does the copy here hold nothing that removing it could lose: rebuilding (it votes in nothing and
        serves nothing), or empty (it never promised, accepted or learned anything)?"""
        if self.status[slot] == GROUP_REPAIRING:
            return True
        return (self.status[slot] == GROUP_OK and self.acceptor.promised[slot] == 0 and self.acceptor.top[slot] == 0
                and self.learner.chosen_next[slot] == 0 and self.learner.low[slot] == 0)

    cdef void _notice(self, Py_ssize_t slot, int dest, bytes first):
        """INC_NOTICE to `dest` (our incarnation, `first`), at most once per retransmit interval per peer."""
        key = (slot, dest)
        cdef int64_t last = self.notice_at.get(key, -(1 << 62))
        if self.now - last < self.retransmit_ticks:
            return
        self.notice_at[key] = self.now
        self.counters[C_INC_NOTICES] += 1
        self._send(dest, make_message(INC_NOTICE, self.group_of(slot), 0, 0, 0, 0, 0, first), False)

    cdef void _dispatch(self, Message m):
        cdef Py_ssize_t slot = self.slot_of(m.group)
        if slot < 0:
            self.counters[C_DROPPED_UNKNOWN_GROUP] += 1
            return
        if self.status[slot] == GROUP_STOPPED:
            return
        if m.inc != self.inc[slot] and m.src != self.node_id:
            self.counters[C_WRONG_INCARNATION] += 1
            self._on_other_incarnation(slot, m)
            return              # another incarnation of the group id: a different group
        cdef int src = m.src
        cdef int kind = m.kind
        if kind == ACCEPT:
            self._on_accept(slot, m, src)
        elif kind == MSG_ACCEPTED:
            self._on_accepted(slot, m, src)
        elif kind == CHOSEN:
            self._on_chosen(slot, m, src)
        elif kind == PREPARE:
            self._on_prepare(slot, m, src)
        elif kind == PROMISE:
            self._on_promise(slot, m, src)
        elif kind == REJECT:
            self._on_reject(slot, m, src)
        elif kind == CATCHUP_REQ:
            self._on_catchup_req(slot, m, src)
        elif kind == CATCHUP_REPLY:
            self._on_catchup_reply(slot, m, src)
        elif kind == FORWARD:
            self._on_forward(slot, m, src)
        elif kind == STATE_REQ:
            self._on_state_req(slot, m, src)
        elif kind == STATE_REPLY:
            self._on_state_reply(slot, m, src)
        elif kind == INC_NOTICE:
            pass                # of our own incarnation: the sender caught up with it meanwhile
        elif kind >= SNAP_OFFER:
            self.fx.foreign.append(m)

    cdef void _see_ballot(self, Py_ssize_t slot, uint64_t ballot):
        cdef uint64_t r = ballot_round(ballot)
        if r > self.proposer.seen_round[slot]:
            self.proposer.seen_round[slot] = r

    # ------------------------------------------------------------------ acceptor side

    cdef void _on_prepare(self, Py_ssize_t slot, Message m, int src):
        if self.status[slot] != GROUP_OK:
            return   # a repairing acceptor does not vouch for anything
        if <int>ballot_node(m.ballot) != src:
            # Only a ballot's own node runs phase 1 under it (and leads with it): a Prepare under another's
            # would promise its rounds away (with the transport's check of the sender, a member cannot).
            self.counters[C_FORGED_BALLOTS] += 1
            return
        self._see_ballot(slot, m.ballot)
        cdef uint64_t promised = self.acceptor.promised[slot]
        cdef uint32_t group = m.group
        if src != self.node_id and m.mark > self.learner.known_mark[slot] and (
                not self.voters.votes_anywhere(slot, self.node_id) or not self.voters.votes_anywhere(slot, src)):
            # The proposer has learned further than we have, and by what we know one of us does not vote: we
            # may be behind an ADOPT that changed that (a new voter that does not know it yet would otherwise
            # refuse every Prepare, and learn nothing while no leader sends Accepts).
            self._learn_from(slot, src, m.mark)
        if not self.voters.votes_anywhere(slot, self.node_id) and not self.plant_count_any_vote:
            # A learner here (in no configuration we know of): it promises nothing. It still serves what a
            # proposer behind it lacks.
            if m.instance < self.learner.chosen_next[slot] and src != self.node_id:
                self._serve(src, slot, m.instance)
            return
        if src != self.node_id and not self.voters.votes_anywhere(slot, src):
            # R6: a proposer that votes in no configuration we know (removed, or not added yet as we see it)
            # gets no promise: it would only disturb the voters' leader. Our refusal carries our mark, so a
            # removed node learns the change that removed it.
            self.counters[C_STRANGERS] += 1
            self._send(src, make_message(REJECT, group, m.instance, promised, self.learner.chosen_next[slot],
                                         m.ballot, self.learner.chain[slot], NOOP), False)
            return
        if (self.sticky > 0 and m.ballot > promised and promised != 0
                and ballot_node(m.ballot) != ballot_node(promised)
                and self.now - self.proposer.accept_heard[slot] < self.sticky):
            # Our leader is active: nobody else may take over (and get a value chosen behind the back of a
            # master that serves lease reads) until it has been quiet for sticky_ticks or resigns.
            self.counters[C_STICKY_REJECTS] += 1
            r = make_message(REJECT, group, m.instance, promised, self.learner.chosen_next[slot], m.ballot,
                             self.learner.chain[slot], NOOP)
            r.flags = FLAG_STICKY
            self._send(src, r, False)
            return
        cdef int verdict = self.acceptor.on_prepare(slot, m.ballot)
        promised = self.acceptor.promised[slot]
        if verdict == REJECTED:
            self.counters[C_REJECTS_SENT] += 1
            self._send(src, make_message(REJECT, group, m.instance, promised, self.learner.chosen_next[slot],
                                         m.ballot, self.learner.chain[slot], NOOP), False)
            return
        if verdict == PROMISED:
            if not self.plant_promise_not_persisted:
                self._record((PROMISE_RECORD, group, 0, 0, promised, 0, 0, 0, NOOP))
            if src != self.node_id:
                self._promise_raised(slot)
        self.proposer.leader_heard[slot] = self.now
        cdef uint64_t chosen_next = self.learner.chosen_next[slot]
        cdef uint64_t first = m.instance if m.instance > chosen_next else chosen_next
        entries = self.acceptor.entries_from(slot, first)
        self.counters[C_PROMISES_SENT] += 1
        self._reply(src, make_message(PROMISE, group, m.instance, m.ballot, chosen_next, 0,
                                      self.learner.chain[slot], encode_entries(entries) if entries else NOOP))
        if m.instance < chosen_next and src != self.node_id:
            self._serve(src, slot, m.instance)

    cdef void _on_accept(self, Py_ssize_t slot, Message m, int src):
        if <int>ballot_node(m.ballot) != src:
            self.counters[C_FORGED_BALLOTS] += 1     # see _on_prepare
            return
        if self.status[slot] != GROUP_OK:
            # Still learn what the leader says is chosen: that is how a repairing node catches up.
            if self.status[slot] == GROUP_REPAIRING:
                self._learn_by_mark(slot, m.ballot, m.mark, src)
            return
        self._see_ballot(slot, m.ballot)
        cdef uint64_t instance = m.instance
        cdef uint32_t group = m.group
        if instance < self.learner.chosen_next[slot]:
            # Already learned here; the sender is behind or retransmitting. Send it the chosen value.
            if src != self.node_id:
                self._serve(src, slot, instance)
            return
        if src != self.node_id and not self.voters.votes_anywhere(slot, src):
            # R6 (see _on_prepare): no vote for a proposer in no configuration we know; what it says is chosen
            # is still true (learned only from our own records under its ballot).
            self.counters[C_STRANGERS] += 1
            self._send(src, make_message(REJECT, group, instance, self.acceptor.promised[slot],
                                         self.learner.chosen_next[slot], m.ballot, self.learner.chain[slot], NOOP),
                       False)
            self._learn_by_mark(slot, m.ballot, m.mark, src)
            return
        cdef uint64_t old_promise = self.acceptor.promised[slot]
        cdef int verdict = self.acceptor.on_accept(slot, instance, m.ballot, m.value)
        cdef uint64_t promised = self.acceptor.promised[slot]
        if verdict == REJECTED:
            self.counters[C_REJECTS_SENT] += 1
            self._send(src, make_message(REJECT, group, instance, promised, self.learner.chosen_next[slot],
                                         m.ballot, self.learner.chain[slot], NOOP), False)
            # A beaten leader's mark is still true: learn what it says is chosen.
            self._learn_by_mark(slot, m.ballot, m.mark, src)
            return
        if m.ballot == promised:
            self.proposer.accept_heard[slot] = self.now
            if m.aux:
                self.learner.peer_floor[slot] = m.aux      # the leader's peers' floor
        if src != self.node_id:
            if promised > old_promise:
                self._promise_raised(slot)
            if m.ballot == promised:
                self.proposer.leader_heard[slot] = self.now
            self._learn_by_mark(slot, m.ballot, m.mark, src)
            if self.status[slot] == GROUP_STOPPED:
                return
        cdef uint64_t chosen_next = self.learner.chosen_next[slot]
        cdef uint32_t chain = self.learner.chain[slot]
        self._record((INSTANCE_RECORD, group, instance, 0, promised, m.ballot, chosen_next, chain, m.value))
        if not self._voter_at(slot, instance) and not self.plant_count_any_vote:
            # A learner at this instance keeps the value (to learn it by the leader's mark, with no catch-up)
            # but never votes: nothing is sent back, and no proposer would count it.
            if src != self.node_id:
                self._check_chain(slot, m.mark, m.chain, src)
            return
        self.counters[C_ACCEPTED_SENT] += 1
        self._reply(src, make_message(MSG_ACCEPTED, group, instance, m.ballot, chosen_next, 0, chain, NOOP))
        if src != self.node_id:
            self._check_chain(slot, m.mark, m.chain, src)

    cdef void _promise_raised(self, Py_ssize_t slot):
        """Our acceptor promised someone else's higher ballot: our own proposer can no longer lead."""
        cdef uint64_t promised = self.acceptor.promised[slot]
        self.proposer.leader_heard[slot] = self.now
        if self.proposer.role[slot] != FOLLOWER and promised > self.proposer.ballot[slot]:
            self._step_down(slot, True, None)

    # ------------------------------------------------------------------ proposer side

    cdef void _start_prepare(self, Py_ssize_t slot):
        if self.status[slot] != GROUP_OK:
            return
        if not self._voter_at(slot, self.learner.chosen_next[slot]):
            # Not a voter where the group's next instance is decided (a learner, or removed): never leads.
            if self.proposer.role[slot] != FOLLOWER:
                self._step_down(slot, True, None)
            return
        cdef uint64_t r = ballot_round(self.acceptor.promised[slot])
        if ballot_round(self.proposer.ballot[slot]) > r:
            r = ballot_round(self.proposer.ballot[slot])
        if self.proposer.seen_round[slot] > r:
            r = self.proposer.seen_round[slot]
        r += 1
        cdef uint64_t ballot = make_ballot(r, self.node_id)
        self.proposer.ballot[slot] = ballot
        self.proposer.seen_round[slot] = r
        self.proposer.role[slot] = PREPARING
        self.proposer.timer[slot] = self.now + self.retransmit_ticks
        cdef ProposerGroup pg = self.proposer.group(slot)
        if pg.inflight:
            # Our proposals in flight under the old ballot go back to the queue (in proposal order): the new
            # phase 1 re-proposes those some acceptor took, the rest would otherwise wait for their timeout.
            back = []
            for instance in sorted(pg.inflight):
                back.extend(self._own_unanswered(slot, (<InFlight>pg.inflight[instance]).value))
            self._take_back(slot, pg, back)
        pg.inflight.clear()
        pg.reproposals = None            # a new phase 1 finds them again (they belong to the old ballot)
        pg.repropose_top = 0
        pg.promises = {}
        pg.sticky_refusals = 0
        pg.retries = 0
        pg.prepare_started = self.now
        cdef uint64_t chosen_next = self.learner.chosen_next[slot]
        pg.prepare_from = chosen_next
        # Promises count from the voters in force at chosen_next only (R3); we will lead only where those
        # voters govern, and run phase 1 again where another configuration takes over (R4).
        self.lead_config[slot] = self.voters.index_at(slot, chosen_next)
        self.counters[C_PREPARES] += 1
        self.active[slot] = True
        m = make_message(PREPARE, self.group_of(slot), chosen_next, ballot, chosen_next, 0,
                         self.learner.chain[slot], NOOP)
        # Our own promise first: its record joins this batch, and the Prepare leaves only once it is
        # durable, so a restarted node can never reuse a ballot that peers have seen.
        self._on_prepare(slot, m, self.node_id)
        if self.acceptor.promised[slot] != ballot and not self.plant_prepare_unpromised:
            # Our own acceptor refused (the sticky rule: it still hears an active leader). Campaigning on the
            # peers' promises alone would leave no durable trace of this ballot here: after a crash this node
            # would pick the same ballot again and could propose a second value under it (soak seed
            # 2,227,351). Back off as a sticky reject from a peer makes us do.
            self._back_off_sticky(slot)
            return
        self._broadcast(m, True)

    cdef void _on_promise(self, Py_ssize_t slot, Message m, int src):
        if self.proposer.role[slot] != PREPARING or m.ballot != self.proposer.ballot[slot]:
            return
        cdef ProposerGroup pg = self.proposer.groups.get(slot)
        if pg is None or pg.promises is None:
            return
        if self.now - pg.prepare_started > self.vote_ttl:
            # Too late to count (a pause, a stall): a promise given before its giver lost its memory must never
            # count once that node may have rebuilt (see _begin_repair). Start over with a new ballot.
            self.counters[C_STALE_VOTES] += 1
            self._start_prepare(slot)
            return
        cdef Config lead = self.voters.by_index(self.lead_config[slot])
        if lead.position(src) < 0 and not self.plant_count_any_vote:
            return              # not a voter of the configuration our phase 1 runs under (R3)
        pg.promises[src] = (m.mark, decode_entries(m.value) if m.value else [])
        if len(pg.promises) >= lead.quorum:
            self._finish_prepare(slot)

    cdef void _finish_prepare(self, Py_ssize_t slot):
        cdef ProposerGroup pg = self.proposer.groups.get(slot)
        cdef uint64_t highest = 0
        cdef int ahead = 0
        for node, promise in pg.promises.items():
            if promise[0] > highest:
                highest = promise[0]
                ahead = node
        cdef uint64_t chosen_next = self.learner.chosen_next[slot]
        if chosen_next < highest:
            # Some acceptor has learned further than we have: learn those instances first, then lead.
            self._learn_from(slot, ahead, highest)
            return
        if (self.voters.config_at(slot, chosen_next).voters != self.voters.by_index(self.lead_config[slot]).voters
                and not self.plant_no_reprepare_at_activation):
            # Learning what the promisers had learned crossed an activation: the promises were counted under
            # the voters before it, which do not govern our next instance. Phase 1 again, under the new ones.
            self._start_prepare(slot)
            return
        cdef dict merged = {}
        cdef uint64_t top = chosen_next
        for node, promise in pg.promises.items():
            for instance, ballot, value in promise[1]:
                if instance < chosen_next:
                    continue
                prev = merged.get(instance)
                if prev is None or ballot > prev[0]:
                    merged[instance] = (ballot, value)
                if instance + 1 > top:
                    top = instance + 1
        pg.promises = None
        pg.retries = 0
        self.proposer.role[slot] = LEADING
        self.proposer.leader_heard[slot] = self.now
        self.counters[C_ELECTIONS_WON] += 1
        # Re-propose whatever a quorum may have accepted, and no-ops in the gaps, from chosen_next up to top:
        # now within the window (chosen_next + window), the rest as the window moves on, before any new
        # proposal (_fill). A leader never acts on an instance at or past chosen_next + window, where the
        # values below it that it has not learned yet could decide who votes there (membership: the voters of
        # instance j follow from the values chosen up to j - window).
        pg.reproposals = {i: entry[1] for i, entry in merged.items()} if merged else None
        pg.repropose_top = top if top > chosen_next else 0
        if self.plant_reprepare_uncapped:
            self.window_override = 1     # planted bug: the whole range at once, as before the cap
        self.proposer.next_instance[slot] = chosen_next
        self._fill(slot)
        self.window_override = 0

    cdef void _send_accept(self, Py_ssize_t slot, uint64_t instance, bytes value):
        cdef ProposerGroup pg = self.proposer.group(slot)
        pg.inflight[instance] = InFlight(value, self.now)
        cdef uint64_t chosen_next = self.learner.chosen_next[slot]
        m = make_message(ACCEPT, self.group_of(slot), instance, self.proposer.ballot[slot], chosen_next,
                         self._leader_floor(slot, pg), self.learner.chain[slot], value)
        self.counters[C_ACCEPTS_SENT] += 1
        self.counters[C_INSTANCES_PROPOSED] += 1
        self.proposer.last_accept[slot] = self.now
        # Peers first, before our own record is even written (it overlaps their work with our fsync).
        self._broadcast(m, False)
        if chosen_next > self.proposer.mark_sent[slot]:
            self.proposer.mark_sent[slot] = chosen_next
        self._on_accept(slot, m, self.node_id)

    cdef uint64_t _leader_floor(self, Py_ssize_t slot, ProposerGroup pg, bint unheard=True):
        """The peers' floor (0 when off): the lowest chosen mark among the peers heard within peer_live ticks
        that lag us by at most peer_lag and are not below our low mark, or our own chosen mark if none lags.
        Every node keeps its log above the floor the leader last sent it (ACCEPT and CHOSEN carry it in aux),
        so a live peer that fell behind catches up from the log instead of by snapshot. A peer not heard since
        this ProposerGroup began counts at the floor said before, for peer_live ticks (`unheard`; the object
        is dropped while the group idles, but only once no live peer lags: then the floor said before is our
        chosen mark). Liveness only: safety never depends on what a log keeps (docs/design/checkpoints.md)."""
        if self.peer_lag == 0:
            return 0
        cdef uint64_t chosen_next = self.learner.chosen_next[slot]
        cdef uint64_t low = self.learner.low[slot]
        cdef uint64_t before = self.learner.peer_floor[slot]
        cdef uint64_t floor = chosen_next
        cdef uint64_t mark
        if pg.floor_since < 0:
            pg.floor_since = self.now
        cdef bint young = self.now - pg.floor_since < self.peer_live
        cdef dict marks = pg.peer_marks
        for p in self.peers:
            seen = marks.get(p) if marks is not None else None
            if seen is None:
                if not unheard or not young or before == 0:
                    continue
                mark = before
            else:
                if self.now - <int64_t>seen[1] > self.peer_live:
                    continue
                mark = seen[0]
            if mark < low or mark + self.peer_lag < chosen_next:
                continue
            if mark < floor:
                floor = mark
        self.learner.peer_floor[slot] = floor
        return floor

    cdef void _heard_mark(self, Py_ssize_t slot, int src, uint64_t mark):
        """A peer told us its chosen mark (in an ACCEPTED, or as the start of a catch-up request) while we
        lead: keep it for the peers' floor."""
        if self.peer_lag == 0 or src == self.node_id or src not in self.member_index:
            return
        cdef ProposerGroup pg = self.proposer.groups.get(slot)
        if pg is None:
            return
        if pg.peer_marks is None:
            pg.peer_marks = {}
        pg.peer_marks[src] = (mark, self.now)

    cdef void _fill(self, Py_ssize_t slot):
        """Put queued proposals into new instances while the window has room (adaptive batching), after what
        the last election left to re-propose."""
        if self.proposer.role[slot] != LEADING:
            return
        cdef ProposerGroup pg = self.proposer.groups.get(slot)
        if pg is None:
            return
        cdef uint64_t i
        cdef dict decided
        if self.proposer.next_instance[slot] < self.learner.chosen_next[slot]:
            # We learned (by catch-up) values at instances our election left to re-propose: nothing to
            # propose there any more.
            self.proposer.next_instance[slot] = self.learner.chosen_next[slot]
        # R4: our phase 1 was answered by a quorum of the voters in force at its start; we act only where those
        # voters govern, below the first activation of other voters (`cap`). Once every instance below it is
        # learned, phase 1 runs again under the new voters.
        cdef uint64_t cap = <uint64_t>0xFFFFFFFFFFFFFFFF
        cdef uint64_t chosen_next = self.learner.chosen_next[slot]
        cdef Config lead
        if self.voters.pending or self.voters.current[slot] != self.lead_config[slot]:
            lead = self.voters.by_index(self.lead_config[slot])
            cap = self.voters.span_end(slot, chosen_next, lead.voters)
            if self.plant_no_reprepare_at_activation:
                cap = <uint64_t>0xFFFFFFFFFFFFFFFF     # planted bug: the old voters' promises are used past it
            elif cap <= chosen_next:
                self._start_prepare(slot)
                return
        if pg.repropose_top:
            decided = self.learner.decided.get(slot)
            while pg.repropose_top > self.proposer.next_instance[slot] and self.proposer.next_instance[slot] < cap and (
                    self.window_override or
                    self.proposer.next_instance[slot] - self.learner.chosen_next[slot] < self.window):
                i = self.proposer.next_instance[slot]
                self.proposer.next_instance[slot] = i + 1
                if decided is not None and i in decided:
                    value = decided[i]
                elif pg.reproposals is not None and i in pg.reproposals:
                    value = pg.reproposals[i]
                else:
                    value = NOOP
                if pg.reproposals is not None:
                    pg.reproposals.pop(i, None)
                self._send_accept(slot, i, value)
                if self.proposer.role[slot] != LEADING:
                    return
            if pg.repropose_top <= self.proposer.next_instance[slot]:
                pg.repropose_top = 0
                pg.reproposals = None
            else:
                return                   # new proposals wait until every re-proposal is out
        if self.adopt_due:
            self._fill_adopt(slot, pg, cap)
        if not pg.pending:
            if slot in self.voters.pending:
                # An adopted configuration takes effect only once the chosen mark reaches its activation: an
                # idle group gets there by no-ops, so a change never waits for traffic (and a removed node is
                # released from every group that has a leader).
                activation = (<tuple>(<list>self.voters.pending[slot])[0])[0]
                while (self.proposer.next_instance[slot] < activation and self.proposer.next_instance[slot] < cap
                       and self.proposer.next_instance[slot] - self.learner.chosen_next[slot] < self.window):
                    i = self.proposer.next_instance[slot]
                    self.proposer.next_instance[slot] = i + 1
                    self._send_accept(slot, i, NOOP)
                    if self.proposer.role[slot] != LEADING:
                        return
            return
        cdef dict out = self.learner.outstanding.get(slot)
        cdef Py_ssize_t count, nbytes, k, n
        cdef list batch
        cdef uint64_t instance
        while (pg.pending and self.proposer.next_instance[slot] - self.learner.chosen_next[slot] < self.window
               and self.proposer.next_instance[slot] < cap):
            batch = []
            nbytes = 0
            k = 0
            n = len(pg.pending)
            removed = 0
            while k < n and len(batch) < self.max_batch_count:
                entry = pg.pending[k]
                size = len(<bytes>entry[2])
                if batch and nbytes + size > self.max_batch_bytes:
                    break
                k += 1
                removed += size
                if entry[0] == self.node_id and (out is None or entry[1] not in out):
                    continue   # our own proposal that is already chosen or given up
                batch.append(entry)
                nbytes += size
            del pg.pending[:k]
            pg.pending_bytes -= removed
            if not batch:
                continue
            self.counters[C_BATCHED_PROPOSALS] += len(batch)
            instance = self.proposer.next_instance[slot]
            self.proposer.next_instance[slot] = instance + 1
            self._send_accept(slot, instance, encode_batch(batch))
        if not pg.pending:
            pg.pending_bytes = 0

    cdef void _fill_adopt(self, Py_ssize_t slot, ProposerGroup pg, uint64_t cap):
        """Propose the group's due ADOPT (Engine.adopt), alone in an instance, if no activation is pending and
        the window has room; drop it once its epoch (or a newer one) is adopted."""
        value = self.adopt_due.get(slot)
        if value is None:
            return
        if int.from_bytes((<bytes>value)[1:9], "little") <= self.voters.latest_epoch(slot):
            del self.adopt_due[slot]
            return
        if slot in self.voters.pending:
            return              # one change at a time: the next waits for this one to take effect
        cdef uint64_t instance = self.proposer.next_instance[slot]
        if instance - self.learner.chosen_next[slot] >= self.window or instance >= cap:
            return
        for inf in pg.inflight.values():
            if (<InFlight>inf).value == value:
                return          # in flight under our ballot already
        self.proposer.next_instance[slot] = instance + 1
        self._send_accept(slot, instance, value)

    cdef void _on_accepted(self, Py_ssize_t slot, Message m, int src):
        if src == self.node_id:
            self.fx.self_votes.append((m.group, m.instance, m.ballot))
        if self.proposer.role[slot] != LEADING or m.ballot != self.proposer.ballot[slot]:
            return
        cdef ProposerGroup pg = self.proposer.groups.get(slot)
        if pg is None:
            return
        self._heard_mark(slot, src, m.mark)
        cdef InFlight inf = pg.inflight.get(m.instance)
        if inf is None:
            return
        # R3: a vote counts only from a voter of the instance's own configuration, by its position there.
        cdef Config config = self.voters.config_at(slot, m.instance)
        cdef int idx = config.position(src)
        if idx < 0:
            if not self.plant_count_any_vote:
                return
            idx = self.member_index.get(src, 0)
        if self.now - inf.first_sent > self.vote_ttl:
            # Votes count only within vote_ttl of the first Accept (the rebuild rule relies on it).
            self.counters[C_STALE_VOTES] += 1
            self._start_prepare(slot)
            return
        inf.votes |= (<uint64_t>1) << idx
        cdef int need = 1 if self.plant_learn_without_quorum else config.quorum
        if __builtin_popcountll(inf.votes) >= need:
            del pg.inflight[m.instance]
            self._decide(slot, m.instance, inf.value)
        if src != self.node_id:
            self._check_chain(slot, m.mark, m.chain, src)

    cdef void _on_reject(self, Py_ssize_t slot, Message m, int src):
        self._see_ballot(slot, m.ballot)
        if self.proposer.role[slot] != FOLLOWER and m.aux == self.proposer.ballot[slot]:
            if m.ballot > self.proposer.ballot[slot]:
                self._step_down(slot, True, None)
            elif m.flags & FLAG_STICKY and self.proposer.role[slot] == PREPARING:
                self._on_sticky_refusal(slot, src)
        if m.mark > self.learner.known_mark[slot]:
            # The rejecting acceptor has learned further than we have.
            self._learn_from(slot, src, m.mark)

    cdef void _on_sticky_refusal(self, Py_ssize_t slot, int src):
        """A peer's acceptor refused our Prepare because it still hears its leader. Back off only once so many
        have refused that no quorum can promise: the refusal needs no write and comes back before the others'
        promises (which wait for an fsync), so backing off at the first one lost every election in which one
        acceptor still heard a leader that had already resigned, until its sticky window ran out (3 s at start-up
        in tools/leader_churn.py: the first operations of a group timed out)."""
        cdef ProposerGroup pg = self.proposer.groups.get(slot)
        cdef Config lead = self.voters.by_index(self.lead_config[slot])
        cdef int idx = lead.position(src)
        if pg is None or idx < 0:
            if pg is None:
                self._back_off_sticky(slot)
            return              # a refusal from a node that is not a voter of our phase 1 decides nothing
        pg.sticky_refusals |= (<uint64_t>1) << idx
        if __builtin_popcountll(pg.sticky_refusals) > len(lead.voters) - lead.quorum:
            self._back_off_sticky(slot)

    cdef void _back_off_sticky(self, Py_ssize_t slot):
        """An acceptor's leader is active (the sticky rule): stop preparing, and wait longer than an election
        race would before trying again."""
        self._step_down(slot, False, None)
        self.proposer.timer[slot] = self.now + self.sticky // 4 + self.rng.randint(0, self.backoff_hi)

    cdef list _own_unanswered(self, Py_ssize_t slot, bytes value):
        """Our own still-unanswered proposals in a value that may never be chosen (to be re-queued).

        If that value is chosen after all (a later leader may re-propose it), a proposal appears twice in the
        log; the first occurrence is the one acknowledged. The core is at-least-once; request ids in the state
        machine make client requests exactly-once, which is why re-queued proposals keep their order.
        """
        cdef dict out = self.learner.outstanding.get(slot)
        if not out or not value:
            return []
        return [e for e in _entries_of(value) if e[0] == self.node_id and e[1] in out]

    cdef void _requeue_front(self, ProposerGroup pg, list back):
        """Put entries back at the head of the queue, in the order given (they were proposed before it)."""
        if back:
            pg.pending[:0] = back
            for e in back:
                pg.pending_bytes += len(<bytes>e[2])

    cdef void _take_back(self, Py_ssize_t slot, ProposerGroup pg, list back):
        """Queue again our unanswered proposals `back` (from instances we led, or forwarded ones), with what
        we had forwarded and what is queued: our own in the order we proposed them (seq order), once each,
        then other nodes' (forwarded to us) in their order. A proposal can reach here by two ways (forwarded
        by us, then re-proposed by a new leader from the votes it found, and given up by it), and putting
        the copies in whatever order they came would reorder one session's operations."""
        cdef dict out = self.learner.outstanding.get(slot)
        cdef dict own = {}
        cdef list others = []
        cdef set seen = set()
        for e in back + pg.forwarded + pg.pending:
            if e[0] == self.node_id:
                if out is not None and e[1] in out and e[1] not in own:
                    own[e[1]] = e
            elif (e[0], e[1]) not in seen or self.plant_forward_twice:
                # Once each: a proposal relayed between nodes while mastership moves can come back to us while
                # we still hold it; kept twice, every relay would double it (seen as 100 MB forwards).
                seen.add((e[0], e[1]))
                others.append(e)
        pg.pending = [own[seq] for seq in sorted(own)] + others
        pg.forwarded = []
        pg.pending_bytes = 0
        for e in pg.pending:
            pg.pending_bytes += len(<bytes>e[2])

    cdef void _step_down(self, Py_ssize_t slot, bint vouch, list first_back):
        """Stop proposing. With `vouch`, a leader first tells the learners its chosen mark (under its ballot
        every value it learned is the one it proposed, so the mark is safe to send); without it (our ballot
        lost an instance to another value) the mark is not sent. Our unanswered proposals go back to the
        queue in instance order (`first_back`, from an instance already taken out, ahead of the rest), so the
        operations of one client session stay in the order they were proposed."""
        cdef uint64_t chosen_next = self.learner.chosen_next[slot]
        if vouch and self.proposer.role[slot] == LEADING and self.proposer.mark_sent[slot] < chosen_next:
            self.proposer.mark_sent[slot] = chosen_next
            self.counters[C_CHOSEN_SENT] += 1
            self._broadcast(make_message(CHOSEN, self.group_of(slot), 0, self.proposer.ballot[slot], chosen_next,
                                         self.learner.peer_floor[slot], self.learner.chain[slot], NOOP), False)
        self.proposer.role[slot] = FOLLOWER
        self.counters[C_STEP_DOWNS] += 1
        cdef int64_t wait = self.rng.randint(self.backoff_lo, self.backoff_hi) if self.backoff_hi else 0
        self.proposer.timer[slot] = self.now + wait
        cdef ProposerGroup pg = self.proposer.groups.get(slot)
        cdef InFlight inf
        cdef list back
        if pg is not None:
            back = list(first_back) if first_back else []
            instances = sorted(pg.inflight)
            if self.plant_requeue_reverse:
                instances.reverse()      # planted bug: same-session operations come back out of order
            for instance in instances:
                inf = pg.inflight[instance]
                back.extend(self._own_unanswered(slot, inf.value))
            if self.plant_requeue_reverse:
                self._requeue_front(pg, back)
            else:
                self._take_back(slot, pg, back)
            pg.inflight.clear()
            pg.reproposals = None
            pg.repropose_top = 0
            pg.promises = None
            pg.retries = 0
            if pg.pending:
                self._route_follower(slot)
        self.active[slot] = True

    cdef void _route_follower(self, Py_ssize_t slot):
        """A follower with queued proposals: forward them to whoever should lead, or lead.

        Leadership follows mastership: with a preferred leader (the group's live master, set by the replica
        layer) proposals go there and no other node prepares, so leaders do not churn; the master itself
        prepares. With none known, a live leader gets them, or this node tries to lead. A rebuilding node never
        leads: it forwards."""
        cdef ProposerGroup pg = self.proposer.groups.get(slot)
        if pg is None or not pg.pending:
            return
        cdef int leader = ballot_node(self.acceptor.promised[slot])
        cdef int preferred = self.proposer.preferred[slot]
        cdef bint leader_live = (leader != 0 and leader != self.node_id
                                 and self.now - self.proposer.leader_heard[slot] <= self.leader_timeout)
        cdef int dest = 0
        if self.status[slot] == GROUP_REPAIRING or not self._voter_at(slot, self.learner.chosen_next[slot]):
            if preferred != 0 and preferred != self.node_id:
                dest = preferred
            elif leader != 0 and leader != self.node_id:
                dest = leader
            elif self.peers:
                dest = self.peers[self.rng.randrange(len(self.peers))]
        elif preferred == self.node_id:
            if self.now >= self.proposer.timer[slot]:
                self._start_prepare(slot)
                return
            if leader_live:
                dest = leader              # backing off after a refused Prepare: the active leader serves meanwhile
        elif preferred != 0:
            dest = preferred
        elif leader_live:
            dest = leader
        elif self.now >= self.proposer.timer[slot]:
            self._start_prepare(slot)
            return
        if dest == 0:
            return
        if not pg.forwarded:
            pg.forwarded_at = self.now
        # In messages of at most max_batch_bytes of payload (one proposal may pass it alone), so that a long
        # queue never makes a message bigger than a frame.
        cdef list chunk = []
        cdef Py_ssize_t chunk_bytes = 0
        cdef Py_ssize_t k
        cdef Py_ssize_t n = len(pg.pending)
        for k in range(n):
            e = pg.pending[k]
            chunk.append(e)
            chunk_bytes += len(<bytes>e[2])
            if k == n - 1 or chunk_bytes + len(<bytes>(<tuple>pg.pending[k + 1])[2]) > self.max_batch_bytes:
                self.counters[C_FORWARDS] += 1
                self._send(dest, make_message(FORWARD, self.group_of(slot), 0, self.acceptor.promised[slot], 0,
                                              0, 0, encode_batch(chunk)), False)
                chunk = []
                chunk_bytes = 0
        pg.forwarded.extend(pg.pending)
        pg.pending = []
        pg.pending_bytes = 0

    cdef set _own_in_flight(self, ProposerGroup pg):
        """Seqs of our own proposals inside the instances we have in flight."""
        cdef set seqs = set()
        for inf in pg.inflight.values():
            value = (<InFlight>inf).value
            if value:
                seqs.update([e[1] for e in _entries_of(value) if e[0] == self.node_id])
        return seqs

    cdef void _on_forward(self, Py_ssize_t slot, Message m, int src):
        cdef int role = self.proposer.role[slot]
        cdef int preferred = self.proposer.preferred[slot]
        if role == FOLLOWER and (preferred not in (0, self.node_id) or self.status[slot] != GROUP_OK
                                 or not self._voter_at(slot, self.learner.chosen_next[slot])):
            return   # another should lead (or we cannot): the origin re-routes after its forward timeout
        # A follower with no master known takes the forward too, and leads if nobody does: the origin may be
        # a node that cannot lead (rebuilding, or not a voter) with no one else to send it to, in a group
        # nobody else writes to (its rebuild would wait for ever for an instance nobody finishes).
        entries = decode_batch(m.value)      # before anything changes: it may refuse the message
        cdef ProposerGroup pg = self.proposer.group(slot)
        cdef dict out = self.learner.outstanding.get(slot)
        cdef set held = {(e[0], e[1]) for e in pg.pending}
        held.update([(e[0], e[1]) for e in pg.forwarded])
        cdef set flying = None
        for entry in entries:
            if entry[0] == self.node_id:
                if out is None or entry[1] not in out:
                    continue        # our own proposal relayed back after it was answered here
                if flying is None:
                    flying = self._own_in_flight(pg)
                if entry[1] in flying:
                    # In an instance we lead now (a former leader re-proposed it from our votes, then relayed
                    # it back): queued again, it was proposed a second time, after proposals made later
                    # (soak seed 1,417,060 at 277c49c). If that instance is lost, stepping down re-queues it.
                    continue
            if (entry[0], entry[1]) in held and not self.plant_forward_twice:
                continue        # one we hold already (relayed back to us while mastership moved): once only
            held.add((entry[0], entry[1]))
            at = len(pg.pending)
            if entry[0] == self.node_id and not self.plant_relay_appends:   # planted bug: appended
                # Ours, relayed back by a former leader: before our own later proposals, so that ours reach
                # instances in the order we made them (soak seed 3,154,073 at 7fa4005: appended, it went after
                # a newer one queued since we lead).
                for k in range(len(pg.pending)):
                    if pg.pending[k][0] == self.node_id and pg.pending[k][1] > entry[1]:
                        at = k
                        break
            pg.pending.insert(at, entry)
            pg.pending_bytes += len(<bytes>entry[2])
        self.active[slot] = True
        if role == LEADING:
            self._fill(slot)
        elif role == FOLLOWER:
            self._route_follower(slot)      # we are the master but not leading yet: prepare

    # ------------------------------------------------------------------ learner side

    cdef void _decide(self, Py_ssize_t slot, uint64_t instance, bytes value):
        """A quorum accepted `value` at `instance` under our ballot: it is chosen."""
        cdef uint64_t chosen_next = self.learner.chosen_next[slot]
        if instance < chosen_next:
            return
        cdef dict decided
        if instance == chosen_next:
            self._learn(slot, value)
        else:
            decided = self.learner.decided.get(slot)
            if decided is None:
                decided = {}
                self.learner.decided[slot] = decided
            decided[instance] = value
        self._fill(slot)

    cdef void _learn(self, Py_ssize_t slot, bytes value):
        """Learn `value` as the chosen value of the slot's next instance, then any decided ones after it."""
        self._learn_one(slot, value)
        cdef dict decided = self.learner.decided.get(slot)
        if decided:
            decided.pop(self.learner.chosen_next[slot] - 1, None)
            while self.learner.chosen_next[slot] in decided and self.status[slot] != GROUP_STOPPED:
                self._learn_one(slot, decided.pop(self.learner.chosen_next[slot]))
            if not decided:
                self.learner.decided.pop(slot, None)

    cdef void _learn_one(self, Py_ssize_t slot, bytes value):
        """Learn `value` as the chosen value of the slot's next instance, and deliver it."""
        cdef uint64_t instance = self.learner.chosen_next[slot]
        cdef uint32_t group = self.group_of(slot)
        cdef uint32_t chain = self.learner.advance(slot, value)
        self.acceptor.forget(slot, instance)
        if (len(value) and (<unsigned char>value[0]) == 0xC0) or self.voters.pending:
            self._learned_config(slot, instance, value)
        self.fx.chosen.append((group, instance, value))
        self.counters[C_CHOSEN] += 1
        if (instance + 1) % CHAIN_EVERY == 0:
            # Every CHAIN_EVERY instances the chain is kept, so a catch-up reply ending here carries it.
            self._record((CHAIN_RECORD, group, instance + 1, 0, 0, self.learner.learned_bytes[slot], 0, chain,
                          self.voters.compact_state(slot)))
        cdef ProposerGroup pg
        cdef InFlight inf
        pg = self.proposer.groups.get(slot) if self.proposer.role[slot] == LEADING else None
        if (self.proposer.role[slot] == LEADING and instance >= self.proposer.next_instance[slot]
                and (pg is None or instance >= pg.repropose_top)):
            # Chosen beyond anything our ballot proposed or has yet to re-propose (what our promises reported,
            # held back by the window): another proposer with a higher ballot did it.
            self._step_down(slot, False, None)
        elif self.proposer.role[slot] != FOLLOWER:
            pg = self.proposer.groups.get(slot)
            if pg is not None:
                inf = pg.inflight.pop(instance, None)
                if inf is not None and inf.value != value:
                    # Someone else's value was chosen where our ballot had proposed: our ballot is beaten,
                    # and keeping it would let our later marks vouch for a value that lost.
                    self._step_down(slot, False, self._own_unanswered(slot, inf.value))
        cdef dict out = self.learner.outstanding.get(slot)
        if out and value:
            for origin, seq, payload in _entries_of(value):
                if origin == self.node_id:
                    entry = out.pop(seq, None)
                    if entry is not None:
                        self.fx.acks.append((entry[0], group, instance))
                        self.counters[C_ACKS] += 1
            if not out:
                del self.learner.outstanding[slot]
        if self.status[slot] == GROUP_REPAIRING:
            self._repair_progress(slot)

    cdef void _learned_config(self, Py_ssize_t slot, uint64_t instance, bytes value):
        """Membership bookkeeping of a learned value: an ADOPT becomes pending, active alpha instances after
        its own (R1); a pending configuration whose activation the chosen mark reached becomes current."""
        cdef uint64_t delay = 1 if self.plant_config_at_i else self.alpha   # planted bug: in force at once
        if self.voters.learned_at(slot, instance, value, delay):
            self.counters[C_ADOPTS] += 1
            if self.proposer.role[slot] == LEADING:
                self.proposer.group(slot)        # _fill drives an idle group to the activation
                self.active[slot] = True
            log.info("group %d on node %d: configuration %r adopted at %d, in force from %d",
                     self.group_of(slot), self.node_id, self.voters.latest_epoch(slot), instance, instance + delay)
        if slot in self.voters.pending:
            self.counters[C_ACTIVATIONS] += self.voters.advance(slot, instance + 1)

    cdef void _learn_by_mark(self, Py_ssize_t slot, uint64_t ballot, uint64_t mark, int src):
        """The sender, leading with `ballot`, says every instance below `mark` is chosen.

        An instance we accepted under that same ballot holds the very value that sender proposed, which is
        therefore the chosen one; learn it from our own record. Anything else must come by catch-up.
        """
        cdef uint64_t i
        cdef tuple entry
        while self.learner.chosen_next[slot] < mark:
            i = self.learner.chosen_next[slot]
            entry = self.acceptor.get(slot, i)
            if entry is None or entry[0] != ballot:
                break
            self._learn(slot, <bytes>entry[1])
        if self.learner.chosen_next[slot] < mark:
            self._learn_from(slot, src, mark)

    cdef void _on_chosen(self, Py_ssize_t slot, Message m, int src):
        if m.ballot == self.acceptor.promised[slot]:
            if m.flags & FLAG_RESIGN:
                # Our leader stepped down for the group's master: stop holding the promise to it.
                self.proposer.leader_heard[slot] = -(1 << 62)
                self.proposer.accept_heard[slot] = -(1 << 62)
            else:
                self.proposer.leader_heard[slot] = self.now
                self.proposer.accept_heard[slot] = self.now
            if m.aux:
                self.learner.peer_floor[slot] = m.aux      # the leader's peers' floor
        self._learn_by_mark(slot, m.ballot, m.mark, src)
        self._check_chain(slot, m.mark, m.chain, src)

    cdef void _learn_from(self, Py_ssize_t slot, int src, uint64_t mark):
        """Peer `src` has learned every instance below `mark`: raise our known mark to it and ask that peer
        for the chosen values we lack."""
        if self.learner.known_mark[slot] < mark:
            self.learner.known_mark[slot] = mark
        self.learner.catchup_src[slot] = src
        self._request_catchup(slot)

    cdef void _request_catchup(self, Py_ssize_t slot):
        self.active[slot] = True
        if self.now - self.learner.catchup_at[slot] < self.catchup_interval:
            return
        cdef int src = self.learner.catchup_src[slot]
        cdef int asked = self.catchup_asked.get(slot, 0)     # our last request, while nothing came of it
        if src == 0 or src == self.node_id or src not in self.member_index or asked and (
                src == asked or self.now - self.learner.catchup_at[slot] < 2 * self.catchup_interval) and (
                not self.plant_catchup_source_only):   # planted bug: the source is asked again and again
            # No known source, or the request of the last interval brought nothing (lost, or the peer cannot
            # serve the range: its own records damaged or truncated), or went to the source, long ago, to no
            # avail (it may be gone for good: soak seed 4,401,544, a restarted learner of an idle group asked
            # the node its promise named, which had left the cluster, again and again): another peer. The
            # source is set again by every message from the leader, so without this a node whose leader cannot
            # serve it would ask the leader alone for ever. A request from longer ago to another node does not
            # count: after a quiet while the node that announced the mark is asked first.
            src = self._catchup_peer(asked)
            if src == 0:
                return
        self.catchup_asked[slot] = src
        self.learner.catchup_at[slot] = self.now
        self.counters[C_CATCHUP_REQUESTS] += 1
        self._send(src, make_message(CATCHUP_REQ, self.group_of(slot), self.learner.chosen_next[slot], 0, 0,
                                     self.catchup_max, 0, NOOP), False)

    cdef int _catchup_peer(self, int asked):
        """A peer drawn at random to ask for chosen values (0 if none): one heard from within peer_live ticks if
        any, so that a node gone for good (removed from the cluster, or down) is passed over while a live one
        exists (simulator seed 525: a learner of an idle group, cut off while it changed, had one refresh in the
        four seconds after the heal and drew the node that had left); not the peer asked last to no avail if
        another will do."""
        cdef list live = [p for p in self.peers
                          if p != asked and self.now - <int64_t>self.peer_heard.get(p, -(1 << 62)) <= self.peer_live
                          and not self.plant_catchup_any_peer]     # planted bug: any peer, gone or not
        if live:
            return live[self.rng.randrange(len(live))]
        cdef list others = [p for p in self.peers if p != asked] or list(self.peers)
        return others[self.rng.randrange(len(others))] if others else 0

    cdef void _serve(self, int dest, Py_ssize_t slot, uint64_t first, uint64_t limit=0):
        """Ask the caller to send chosen values from `first`, read from durable storage after this cycle's
        write (a value learned in this very cycle is in the batch being written; the vote the log held before
        may differ). The reply ends where our chain is known, so it can carry it: at our chosen mark, or at a
        CHAIN record (every CHAIN_EVERY instances) when the range is capped.

        One reply per peer and group per batch: a lagging peer's burst (a catch-up request, retransmitted
        Accepts, a Prepare, all drained in one poll) would otherwise get one full reply per message. A second
        ask widens the first: from the lower `first` to our chosen mark now (values learned meanwhile in this
        batch included); the receiver skips what it has."""
        cdef uint32_t group = self.group_of(slot)
        if first < self.learner.low[slot]:
            self._offer(dest, slot, first)
            return
        key = (dest, group)
        at = self.fx.serve_at.get(key)
        if at is not None and (<tuple>self.fx.serve[at])[2] < first:
            first = (<tuple>self.fx.serve[at])[2]
        cdef uint64_t end = self.learner.chosen_next[slot]
        if first >= end:
            return
        if limit == 0 or limit > self.catchup_max:
            limit = self.catchup_max
        cdef long long chain = self.learner.chain[slot]
        if end - first > limit:
            end = (first + limit) // CHAIN_EVERY * CHAIN_EVERY     # > first, since limit >= CHAIN_EVERY
            if end <= first:
                end = first - first % CHAIN_EVERY + CHAIN_EVERY
            chain = -1
        if at is not None:
            self.fx.serve[at] = (dest, group, first, end, chain)
        else:
            self.fx.serve_at[key] = len(self.fx.serve)
            self.fx.serve.append((dest, group, first, end, chain))

    cdef void _offer(self, int dest, Py_ssize_t slot, uint64_t first):
        """`dest` needs values from `first`, below our truncation mark: ask for a snapshot offer (one per peer
        and group per batch)."""
        cdef uint32_t group = self.group_of(slot)
        key = (dest, group)
        if key in self.fx.offer_at:
            return
        self.fx.offer_at.add(key)
        self.fx.offers.append((dest, group, first))
        self.counters[C_OFFERS] += 1

    cdef void _on_catchup_req(self, Py_ssize_t slot, Message m, int src):
        if self.proposer.role[slot] == LEADING:
            self._heard_mark(slot, src, m.instance)
        self._serve(src, slot, m.instance, m.aux)
        if m.instance > self.learner.chosen_next[slot]:
            # The asker asks from its own chosen mark: it learned every instance below it, so they are chosen
            # and it holds them. Learn them from it, as from a CHOSEN mark (soak seed 5,022,045: a new voter
            # cut off while a swap was chosen in the idle system group, whose leader then left, never heard of
            # it: its refreshes drew a rebuilding node and the node that had left, while a peer's requests
            # from beyond its mark went unused).
            self._learn_from(slot, src, m.instance)

    # ------------------------------------------------------------------ checkpoints

    def low(self, uint32_t group):
        """The group's truncation mark: its log holds no record below it."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        return self.learner.low[slot]

    def learned_bytes(self, uint32_t group):
        """Value bytes learned below chosen_next (counted from 0 where the log did not know them)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        return self.learner.learned_bytes[slot]

    def truncate(self, uint32_t group, uint64_t below, uint32_t chain, uint64_t bytes_below, bytes config=b""):
        """Drop the group's log below `below`: a range delete of its instance and chain records and a new LOW
        record, in this batch. `chain`, `bytes_below` and `config` are the chain, the value bytes and the
        membership configuration state at `below` (from the durable CHAIN record there).

        The caller guarantees that the state machine's applied mark is at least `below` and durable before
        this batch (docs/design/checkpoints.md §2, I2); the engine checks that only learned instances go
        (low < below <= chosen_next), so only chosen values and votes at learned instances are deleted. A
        serve request of this batch that started below `below` becomes a snapshot offer."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        cdef uint64_t low = self.learner.low[slot]
        if self.status[slot] == GROUP_STOPPED:
            raise GroupStopped("group %d is stopped: nothing is truncated" % group)
        if not (low < below <= self.learner.chosen_next[slot]):
            raise ValueError("group %d: cannot truncate below %d (truncated below %d, learned below %d)"
                             % (group, below, low, self.learner.chosen_next[slot]))
        self.learner.low[slot] = below
        self.learner.low_bytes[slot] = 0 if bytes_below == BYTES_UNKNOWN else bytes_below
        self.voters.forget_below(slot, below)
        self.fx.deletes.append((INSTANCE_RECORD, group, low, below))
        self.fx.deletes.append((CHAIN_RECORD, group, 0, below))
        self._record(low_record(group, below, chain, bytes_below, config))
        # A promise raised by an Accept lives only in the instance records written since: some of them go,
        # so the promise is put on record by itself (the simulator found a promise lost this way).
        self._record((PROMISE_RECORD, group, 0, 0, self.acceptor.promised[slot], 0, 0, 0, NOOP))
        self.counters[C_TRUNCATIONS] += 1
        self.counters[C_TRUNCATED_INSTANCES] += below - low
        self._serve_to_offers(slot, below)

    def _serve_to_offers(self, Py_ssize_t slot, uint64_t below):
        """Serve requests of this batch for the group that start below `below` become snapshot offers."""
        cdef uint32_t group = self.group_of(slot)
        cdef Effects fx = self.fx
        cdef list keep = []
        moved = False
        for entry in fx.serve:
            if entry[1] == group and entry[2] < below:
                self._offer(entry[0], slot, entry[2])
                moved = True
            else:
                keep.append(entry)
        if moved:
            fx.serve = keep
            fx.serve_at = {(e[0], e[1]): k for k, e in enumerate(keep)}

    def install(self, uint32_t group, uint64_t applied, uint32_t chain, uint64_t bytes_below, int src=0,
                bytes config=b""):
        """A snapshot of the group's state at `applied` (A) is being swapped in by this very batch: every
        instance below A is now learned, with `chain` the chain at A, and the log below A goes (range deletes
        and LOW = A in this batch).

        What the node learned below A in this batch is not applied (the snapshot holds it): it leaves
        ``chosen``, and acknowledgements of it become ``expired`` (outcome unknown to this node: the client's
        retry gets the session table's answer). A proposer role is given up and every proposal made here is
        expired, as when a group stops: which of them the snapshot holds is not known here. The acceptor keeps
        its promise and its votes at or above A. Requires A > chosen_next."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        if self.status[slot] == GROUP_STOPPED:
            raise GroupStopped("group %d is stopped: no snapshot is installed" % group)
        cdef uint64_t before = self.learner.chosen_next[slot]
        if applied <= before:
            raise ValueError("group %d: a snapshot at %d is not ahead of what is learned (%d)"
                             % (group, applied, before))
        if config:
            state_configs(config)       # BadAdopt (a ValueError) before anything changes
        cdef Effects fx = self.fx
        fx.chosen = [c for c in fx.chosen if c[0] != group or c[1] >= applied]
        cdef list acks = []
        for a in fx.acks:
            if a[1] == group and a[2] < applied:
                fx.expired.append((a[0], group, "a snapshot was installed over it: outcome unknown here"))
                self.counters[C_EXPIRED] += 1
            else:
                acks.append(a)
        fx.acks = acks
        out = self.learner.outstanding.pop(slot, None)
        if out:
            for seq, entry in out.items():
                fx.expired.append((entry[0], group, "a snapshot was installed: outcome unknown here"))
                self.counters[C_EXPIRED] += 1
        self.proposer.groups.pop(slot, None)
        self.proposer.role[slot] = FOLLOWER
        cdef dict votes = self.acceptor.accepted.get(slot)
        if votes:
            for instance in [i for i in votes if i < applied]:
                del votes[instance]
            if not votes:
                del self.acceptor.accepted[slot]
        cdef dict decided = self.learner.decided.get(slot)
        if decided:
            for instance in [i for i in decided if i < applied]:
                del decided[instance]
        cdef uint64_t low = self.learner.low[slot]
        # The snapshot's membership configuration at A (empty: the first one): what governs from A on.
        if config and not self.plant_snapshot_drops_config:      # planted bug: the first configuration instead
            self.voters.restore(slot, config)
        else:
            self.voters.reset(slot)
        self.learner.chosen_next[slot] = applied
        self.learner.chain[slot] = chain
        self.learner.low[slot] = applied
        self.learner.learned_bytes[slot] = 0 if bytes_below == BYTES_UNKNOWN else bytes_below
        self.learner.low_bytes[slot] = self.learner.learned_bytes[slot]
        if self.learner.known_mark[slot] < applied:
            self.learner.known_mark[slot] = applied
        if self.acceptor.top[slot] < applied:
            self.acceptor.top[slot] = applied
        if src:
            self.learner.catchup_src[slot] = src
        self.learner.catchup_at[slot] = -(1 << 62)
        self.catchup_asked.pop(slot, None)
        fx.deletes.append((INSTANCE_RECORD, group, 0, applied))
        fx.deletes.append((CHAIN_RECORD, group, 0, applied))
        self._record(low_record(group, applied, chain, bytes_below, config))
        self._record((PROMISE_RECORD, group, 0, 0, self.acceptor.promised[slot], 0, 0, 0, NOOP))  # as truncate
        self.counters[C_INSTALLS] += 1
        self._serve_to_offers(slot, applied)
        self.active[slot] = True
        if decided:
            while self.learner.chosen_next[slot] in decided and self.status[slot] != GROUP_STOPPED:
                self._learn_one(slot, decided.pop(self.learner.chosen_next[slot]))
            if not decided:
                self.learner.decided.pop(slot, None)
        if self.status[slot] == GROUP_REPAIRING:
            self._repair_progress(slot)
        if self.learner.chosen_next[slot] < self.learner.known_mark[slot]:
            self._request_catchup(slot)
        self._drain()

    cdef void _on_catchup_reply(self, Py_ssize_t slot, Message m, int src):
        """Chosen values [m.instance, m.mark) with the sender's chain at m.mark and its chosen mark in aux.

        Nothing is learned unless the values, chained onto our own chain, give the sender's chain at the end:
        a value that is not the chosen one (a vote served by mistake, a damaged record, a diverged sender) is
        refused whole, and we ask another peer."""
        cdef uint64_t before = self.learner.chosen_next[slot]
        cdef uint64_t end = m.mark
        cdef uint32_t group = m.group
        entries = decode_entries(m.value) if end > before and m.value else []    # first: it may refuse the reply
        if m.aux > self.learner.known_mark[slot]:
            self.learner.known_mark[slot] = m.aux
            self.learner.catchup_src[slot] = src
        cdef list fresh = []
        cdef uint64_t expect = before
        cdef uint32_t chain = self.learner.chain[slot]
        if end > before:
            for instance, ballot, value in entries:
                if instance < expect:
                    continue
                if instance != expect or instance >= end:
                    break
                chain = chain_step(chain, instance, <bytes>value)
                fresh.append((instance, ballot, value))
                expect += 1
            if expect != end or chain != m.chain:
                self.counters[C_CATCHUP_REJECTED] += 1
                log.warning("group %d: refused a catch-up reply from node %d for [%d, %d): %s", group, src,
                            m.instance, end, "its values do not give its chain %08x (we get %08x)" % (m.chain, chain)
                            if expect == end else "it does not continue at our mark %d" % before)
                others = [p for p in self.peers if p != src]
                if others:
                    self.learner.catchup_src[slot] = others[self.rng.randrange(len(others))]
                # Ask the other peer, but not before the catch-up interval: if every reply fails the check
                # (our own chain is what is wrong, e.g. after an install with a wrong chain), retrying at
                # once would make a request-reply loop that never waits.
                self._request_catchup(slot)
                return
        elif end == before:
            self._check_chain(slot, end, m.chain, src)
        for instance, ballot, value in fresh:
            if instance != self.learner.chosen_next[slot]:
                continue        # learned meanwhile (a decided value of ours pulled in by the one before)
            self._learn(slot, <bytes>value)
            self.counters[C_CATCHUP_LEARNED] += 1
            # Keep the learned value (and the mark that says so) so that it survives a restart.
            self._record((INSTANCE_RECORD, group, instance, RECORD_CHOSEN, self.acceptor.promised[slot], ballot,
                          self.learner.chosen_next[slot], self.learner.chain[slot], value))
            if self.status[slot] == GROUP_STOPPED:
                return
        cdef uint64_t now_next = self.learner.chosen_next[slot]
        if now_next > before:
            self.learner.catchup_at[slot] = -(1 << 62)     # progress: ask again at once if still behind
            if self.catchup_asked:
                self.catchup_asked.pop(slot, None)
        if now_next < self.learner.known_mark[slot]:
            self._request_catchup(slot)
        cdef ProposerGroup pg
        if self.proposer.role[slot] == PREPARING:
            pg = self.proposer.groups.get(slot)
            if (pg is not None and pg.promises is not None
                    and len(pg.promises) >= self.voters.by_index(self.lead_config[slot]).quorum):
                self._finish_prepare(slot)

    cdef void _check_chain(self, Py_ssize_t slot, uint64_t mark, uint32_t chain, int src):
        if mark != 0 and mark == self.learner.chosen_next[slot] and chain != self.learner.chain[slot]:
            self._stop(slot, "diverged: node %d's chain at instance %d is %08x, ours is %08x"
                       % (src, mark, chain, self.learner.chain[slot]))

    def stop_group(self, uint32_t group, str reason):
        """Stop `group` here, as a divergence does (its fx.stopped comes with the next take_effects): for what the
        replica layer finds it cannot apply, a chosen value that does not decode."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot >= 0:
            self._stop(slot, reason)

    cdef void _stop(self, Py_ssize_t slot, str reason):
        cdef uint32_t group = self.group_of(slot)
        if self.status[slot] == GROUP_STOPPED:
            return
        log.error("group %d STOPPED on node %d: %s", group, self.node_id, reason)
        self.status[slot] = GROUP_STOPPED
        self.stop_reasons[group] = reason
        self.counters[C_DIVERGENCES] += 1
        self.fx.stopped.append((group, reason))
        # Nothing of the group that this batch learned is applied or acknowledged: the stop is handled first.
        self.fx.chosen = [c for c in self.fx.chosen if c[0] != group]
        self.fx.acks = [a for a in self.fx.acks if a[1] != group]
        self._forget_slot(slot, "group stopped: " + reason)

    # ------------------------------------------------------------------ rebuild after lost storage

    cdef void _on_state_req(self, Py_ssize_t slot, Message m, int src):
        """A rebuilding peer asks what we hold, or a peer handing the group over asks how far we learned
        (Engine.handoff). The reply leaves after this cycle's synced write: the chosen mark it reports is then
        durable here, which the handover counts on (simulator seed 1,502: a mark reported before its sync was
        lost in a crash, after the peer that asked had dropped its copy). For a rebuild, a promise or top that
        is not durable yet would only have made its floor higher.

        A mark learned from a leader's notice (an instance we had accepted, learned by its ballot) is in no
        record yet: a CHAIN record at the mark goes into this cycle's write, and recovery counts it as a
        learned mark (storage/recovery.py), so the mark we report survives a crash."""
        cdef uint64_t mark = self.learner.chosen_next[slot]
        if mark > self.learner.low[slot] and self.status[slot] == GROUP_OK:
            self._record((CHAIN_RECORD, m.group, mark, 0, 0, self.learner.learned_bytes[slot], 0,
                          self.learner.chain[slot], self.voters.compact_state(slot)))
        self._send(src, make_message(STATE_REPLY, m.group, self.acceptor.top[slot], self.acceptor.promised[slot],
                                     self.learner.chosen_next[slot], 0 if self.status[slot] == GROUP_OK else 1,
                                     0, self.voters.compact_state(slot)), True)

    def _hands_over_to(self, Py_ssize_t slot, value, placement, uint64_t min_epoch):
        """Does a voter's STATE_REPLY configuration state let us hand the group over (Engine.handoff)? No
        configuration in it names us, its current configuration is of `min_epoch` or newer, and with
        `placement`, its current configuration's voters are those."""
        if placement is None and not value and min_epoch == 0:
            return True
        cdef Config first = self.voters.first_of(slot)
        try:
            configs = state_configs(value) if value else [(first.epoch, first.voters)]
        except BadAdopt:
            return False
        if any(self.node_id in config[1] for config in configs) or configs[0][0] < min_epoch:
            return False
        return placement is None or tuple(configs[0][1]) == placement

    def _repair_covered(self, Py_ssize_t slot, Repair rep, bint own):
        """The rebuild rule under changing voters: for every configuration that any reply names (current or
        pending), and with `own` every one our table names, a majority of its voters other than us has replied.
        A promise or vote of ours that a proposer counted was counted under one of them (the instance it was
        for is not chosen yet, so it lies at or past every reply's chosen mark, where these configurations
        govern); we learn up to the replies' marks before voting, then check again with what our log names
        (`own`). Our table is not asked before: a node that lost its storage holds only the first configuration,
        whose voters may be long gone."""
        named = set(rep.configs)
        if own:
            for voters in state_configs(self.voters.state(slot)):
                named.add(voters[1])
        for voters in named:
            heard = 0
            for node in voters:
                if node != self.node_id and node in rep.replies:
                    heard += 1
            if heard < len(voters) // 2 + 1:
                return False
        return True

    cdef void _on_state_reply(self, Py_ssize_t slot, Message m, int src):
        handoff = self.handoffs.get(slot)
        if (handoff is not None and m.aux == 0 and src in <tuple>handoff[1] and m.mark >= <uint64_t>handoff[0]
                and self._hands_over_to(slot, m.value, handoff[4], handoff[5])):
            (<set>handoff[2]).add(src)      # a voter carrying the group on learned all we had (Engine.handoff)
        cdef Repair rep = self.repairs.get(slot)
        if rep is None or rep.phase != REPAIR_QUERY or m.aux != 0 or src == self.node_id:
            return
        cdef set named = set()
        if m.value:
            try:
                for config in state_configs(m.value):
                    named.add(config[1])
            except BadAdopt:
                return          # a reply we cannot read does not count
        else:
            named.add(self.voters.first_of(slot).voters)     # the replier is in the group's first configuration
        # A replier's newer reply replaces its older one, configurations included: those an older reply named
        # governed instances below the newer one's chosen mark, which are chosen, and one may hold a node since
        # removed, which nobody asks any more: kept, it would block the rebuild for ever (simulator seed 11,
        # 5 nodes, 64 groups).
        rep.reply_configs[src] = named
        rep.configs = set().union(*rep.reply_configs.values())
        rep.replies[src] = (m.ballot, m.instance, m.mark)
        if not self._repair_covered(slot, rep, False):
            return
        # A majority of each configuration without us: every counted promise or vote of ours is reflected here.
        cdef uint64_t floor = 0
        cdef uint64_t top = rep.target
        cdef uint64_t mark = 0
        for promised, their_top, their_mark in rep.replies.values():
            floor = max(floor, promised)
            top = max(top, their_top, their_mark)
            mark = max(mark, their_mark)
        if floor > self.acceptor.promised[slot]:
            self.acceptor.promised[slot] = floor
        self._see_ballot(slot, floor)
        self._record((PROMISE_RECORD, m.group, 0, 0, self.acceptor.promised[slot], 0, 0, 0, NOOP))
        rep.target = top
        if top > self.learner.repair_upto[slot]:
            self.learner.repair_upto[slot] = top
        if mark > self.learner.known_mark[slot]:
            self.learner.known_mark[slot] = mark
        rep.phase = REPAIR_LEARN
        self._repair_progress(slot)

    cdef void _repair_tick(self, Py_ssize_t slot):
        cdef Repair rep = self.repairs.get(slot)
        if rep is None:
            return
        if rep.phase == REPAIR_WAIT and self.now >= rep.wait_until:
            rep.phase = REPAIR_QUERY
        if rep.phase == REPAIR_QUERY and self.now - rep.asked_at >= self.retransmit_ticks:
            rep.asked_at = self.now
            self._broadcast(make_message(STATE_REQ, self.group_of(slot), 0, 0, 0, 0, 0, NOOP), False)
        elif rep.phase == REPAIR_LEARN:
            if self.learner.chosen_next[slot] < rep.target:
                if self.learner.known_mark[slot] > self.learner.chosen_next[slot]:
                    self._request_catchup(slot)
            self._repair_progress(slot)

    cdef void _repair_progress(self, Py_ssize_t slot):
        """Finish the rebuild once every instance below the target is learned: vote again."""
        cdef Repair rep = self.repairs.get(slot)
        if rep is None or rep.phase != REPAIR_LEARN or self.learner.chosen_next[slot] < rep.target:
            return
        if not rep.reentry and not self._repair_covered(slot, rep, True):
            # What we learned named voters that have not all replied: ask again before voting.
            rep.phase = REPAIR_QUERY
            rep.asked_at = -(1 << 62)
            return
        cdef uint32_t group = self.group_of(slot)
        del self.repairs[slot]
        self.status[slot] = GROUP_OK
        self.stop_reasons.pop(group, None)
        self.learner.repair_upto[slot] = 0
        self.counters[C_REPAIRS_DONE] += 1
        self._record((PROMISE_RECORD, group, 0, 0, self.acceptor.promised[slot], 0, 0, 0, NOOP))
        self._record((REPAIR_RECORD, group, 0, 0, 0, 0, 0, 0, NOOP))
        log.warning("group %d rebuilt from its peers on node %d (%s): learned up to %d, promise floor %d; "
                    "it votes again", group, self.node_id, rep.reason, self.learner.chosen_next[slot],
                    self.acceptor.promised[slot])

    # ------------------------------------------------------------------ timers

    cdef bint _tick_group(self, Py_ssize_t slot):
        """Per-tick work of one active group; False when the group has gone idle."""
        if self.status[slot] == GROUP_STOPPED or self.status[slot] == GROUP_ABSENT:
            return False
        if self.status[slot] == GROUP_REPAIRING:
            self._repair_tick(slot)
        cdef int64_t now = self.now
        cdef int role = self.proposer.role[slot]
        cdef ProposerGroup pg = self.proposer.groups.get(slot)
        cdef InFlight inf
        cdef uint32_t group = self.group_of(slot)
        cdef uint64_t chosen_next = self.learner.chosen_next[slot]
        cdef bint restart = False
        if role == LEADING and pg is not None and pg.inflight:
            for instance in sorted(pg.inflight):
                inf = pg.inflight[instance]
                if now - inf.sent_at < (self.retransmit_ticks << inf.retries if self.retransmit_backoff
                                        else self.retransmit_ticks):
                    continue
                if inf.retries >= self.max_retransmits:
                    restart = True   # no quorum answers: maybe a higher ballot we never heard of
                    break
                inf.retries += 1
                inf.sent_at = now
                self.counters[C_RETRANSMITS] += 1
                m = make_message(ACCEPT, group, instance, self.proposer.ballot[slot], chosen_next,
                                 self.learner.peer_floor[slot], self.learner.chain[slot], inf.value)
                config = self.voters.config_at(slot, instance)
                for p in self.peers:
                    k = (<Config>config).position(p)
                    if k < 0 or not (inf.votes >> <int>k) & 1:
                        self._send(p, m, False)
            if restart:
                self._start_prepare(slot)
                role = self.proposer.role[slot]
        elif role == PREPARING and pg is not None and now >= self.proposer.timer[slot]:
            pg.retries += 1
            if pg.retries > self.max_retransmits:
                self._start_prepare(slot)
            else:
                self.proposer.timer[slot] = now + self.retransmit_ticks
                self.counters[C_RETRANSMITS] += 1
                m = make_message(PREPARE, group, pg.prepare_from, self.proposer.ballot[slot], pg.prepare_from, 0,
                                 0, NOOP)
                for p in self.peers:
                    if pg.promises is None or p not in pg.promises:
                        self._send(p, m, True)
        elif role == FOLLOWER and pg is not None:
            if pg.forwarded and now - pg.forwarded_at >= self.forward_timeout:
                # The leader did not get our proposals chosen in time: take them back.
                self._take_back(slot, pg, [])
                self.proposer.leader_heard[slot] = -(1 << 62)
            if pg.pending:
                self._route_follower(slot)
        role = self.proposer.role[slot]
        if role == LEADING and pg is not None and (pg.pending or pg.repropose_top):
            self._fill(slot)       # the window may have opened without a decision of ours (catch-up)
        if (role == LEADING and (pg is None or not pg.inflight) and self.proposer.mark_sent[slot] < chosen_next
                and now - self.proposer.last_accept[slot] >= self.idle_chosen):
            self.proposer.mark_sent[slot] = chosen_next
            self.proposer.mark_notices[slot] = 1
            self.proposer.last_accept[slot] = now
            self.counters[C_CHOSEN_SENT] += 1
            self._broadcast(make_message(CHOSEN, group, 0, self.proposer.ballot[slot], chosen_next,
                                         self.learner.peer_floor[slot], self.learner.chain[slot], NOOP), False)
        elif (role == LEADING and (pg is None or not pg.inflight) and self.proposer.mark_notices[slot] == 1
                and self.proposer.mark_sent[slot] == chosen_next
                and now - self.proposer.last_accept[slot] >= 16 * self.idle_chosen):
            # Once more, in case the notice was lost: then the group is quiet until it has work.
            self.proposer.mark_notices[slot] = 2
            self.counters[C_CHOSEN_SENT] += 1
            self._broadcast(make_message(CHOSEN, group, 0, self.proposer.ballot[slot], chosen_next,
                                         self.learner.peer_floor[slot], self.learner.chain[slot], NOOP), False)
        if self.learner.known_mark[slot] > self.learner.chosen_next[slot]:
            self._request_catchup(slot)
        out = self.learner.outstanding.get(slot)
        if out:
            expired = [seq for seq, entry in out.items() if entry[1] <= now]
            for seq in expired:
                entry = out.pop(seq)
                self.fx.expired.append((entry[0], group, "timeout"))
                self.counters[C_EXPIRED] += 1
            if not out:
                del self.learner.outstanding[slot]
        # Still active?
        pg = self.proposer.groups.get(slot)
        if pg is not None and pg.is_idle():
            if (self.peer_lag and pg.peer_marks and self.proposer.role[slot] == LEADING
                    and self._leader_floor(slot, pg, False) < chosen_next):
                pass    # a live peer still lags: keep its mark (and the group active) until it catches up or goes
            else:
                del self.proposer.groups[slot]
                pg = None
        role = self.proposer.role[slot]
        return (pg is not None or slot in self.learner.outstanding or role == PREPARING
                or self.learner.known_mark[slot] > self.learner.chosen_next[slot]
                or (role == LEADING and (self.proposer.mark_sent[slot] < self.learner.chosen_next[slot]
                                         or self.proposer.mark_notices[slot] == 1))
                or self.status[slot] == GROUP_REPAIRING)

    # ------------------------------------------------------------------ views (tests, simulator, status)

    def counters_dict(self):
        return {name: int(self.counters[k]) for k, name in enumerate(COUNTER_NAMES)}

    def group_view(self, uint32_t group):
        """A snapshot of one group's state, for status pages, tests and the simulator's checks."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        pg = self.proposer.groups.get(slot)
        return {
            "group": group,
            "incarnation": int(self.inc[slot]),
            "status": ("ok", "repairing", "stopped", "absent")[self.status[slot]],
            "stop_reason": self.stop_reasons.get(group),
            "promised": int(self.acceptor.promised[slot]),
            "top": int(self.acceptor.top[slot]),
            "accepted": dict(self.acceptor.accepted.get(slot, {})),
            "chosen_next": int(self.learner.chosen_next[slot]),
            "chain": int(self.learner.chain[slot]),
            "known_mark": int(self.learner.known_mark[slot]),
            "low": int(self.learner.low[slot]),
            "learned_bytes": int(self.learner.learned_bytes[slot]),
            "low_bytes": int(self.learner.low_bytes[slot]),
            "role": ("follower", "preparing", "leading")[self.proposer.role[slot]],
            "preferred": int(self.proposer.preferred[slot]),
            "repair": (None if slot not in self.repairs else
                       {"phase": ("wait", "query", "learn")[(<Repair>self.repairs[slot]).phase],
                        "target": int((<Repair>self.repairs[slot]).target),
                        "replies": len((<Repair>self.repairs[slot]).replies),
                        "reason": (<Repair>self.repairs[slot]).reason}),
            "ballot": int(self.proposer.ballot[slot]),
            "next_instance": int(self.proposer.next_instance[slot]),
            "inflight": len(pg.inflight) if pg is not None else 0,
            "pending": len(pg.pending) if pg is not None else 0,
            "outstanding": len(self.learner.outstanding.get(slot, ())),
            "active": slot in self.active,
        }

    def group_status(self, uint32_t group):
        """GROUP_OK / GROUP_REPAIRING / GROUP_STOPPED, or GROUP_ABSENT for a group not hosted (cheap)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            return GROUP_ABSENT
        return self.status[slot]

    def behind(self, uint32_t group):
        """How many instances this node's log is behind the highest chosen mark it has heard of for `group`
        (known_mark - chosen_next; cheap), or -1 for a group that does not vote here now (not hosted, or
        repairing or stopped): what a stale read checks (the loop's read.max_stale_lag)."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0 or self.status[slot] != GROUP_OK:
            return -1
        cdef uint64_t known = self.learner.known_mark[slot]
        cdef uint64_t chosen = self.learner.chosen_next[slot]
        return known - chosen if known > chosen else 0

    def learned(self, uint32_t group):
        """(chosen_next, chain) of a hosted group."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        return self.learner.chosen_next[slot], self.learner.chain[slot]

    def leader_of(self, uint32_t group):
        """The node this one believes leads `group` (from its promise), or 0."""
        cdef Py_ssize_t slot = self.slot_of(group)
        if slot < 0:
            raise UnknownGroup(group)
        return ballot_node(self.acceptor.promised[slot])

    def is_leading(self, uint32_t group):
        cdef Py_ssize_t slot = self.slot_of(group)
        return slot >= 0 and self.proposer.role[slot] == LEADING

    def active_groups(self):
        return len(self.active)

    def idle_bytes_per_group(self):
        """Bytes of per-group array state (what an idle group costs)."""
        total = 0
        for arr in (self.acceptor.promised_array, self.acceptor.top_array, self.learner.chosen_next_array,
                    self.learner.chain_array, self.learner.known_mark_array, self.learner.repair_upto_array,
                    self.learner.catchup_at_array, self.learner.catchup_src_array, self.learner.low_array,
                    self.learner.learned_bytes_array, self.learner.low_bytes_array, self.learner.peer_floor_array,
                    self.proposer.ballot_array,
                    self.proposer.role_array, self.proposer.next_instance_array, self.proposer.seen_round_array,
                    self.proposer.timer_array, self.proposer.mark_sent_array, self.proposer.mark_notices_array,
                    self.proposer.leader_heard_array,
                    self.proposer.last_accept_array, self.proposer.accept_heard_array, self.proposer.preferred_array,
                    self.status_array, self.inc_array):
            total += arr.itemsize
        return total


from paxos_core._enums import export_members

export_members(globals(), GroupStatus)

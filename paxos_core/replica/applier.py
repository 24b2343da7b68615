"""Apply chosen values: system entries (claims, barriers) to the master table, client commands to the
state machine, in instance order, with fencing; report the outcome of every entry this node proposed.

    outcome kinds (for entries whose origin is this node, keyed by the engine's proposal seq):
      APPLIED  data = the state machine's result bytes (for a CLIENT_BATCH entry: the list of results)
      FENCED   data = the master to ask instead (0 if unknown): the command was NOT applied
      CLAIMED  data = True if the claim made us master (or renewed us), False if it lost
      BARRIER  data = None: every entry before it is applied, so a local read now is linearizable

Determinism: what gets applied depends only on the log (origin, epoch, claim versions), never on clocks.
Master state is stored next to the state machine's data so that replay after a restart sees the same
fencing decisions as the first time.
"""
import struct

from ..errors import FrameError
from ..wire.codec import proposals_of
from . import envelope

APPLIED, FENCED, CLAIMED, BARRIER = "applied", "fenced", "claimed", "barrier"
_MASTER_STATE = struct.Struct("<iQQQ")


def _decoded(value):
    """[(origin, seq, envelope kind, decoded fields)] of a chosen value's entries (other kinds left out), all
    decoded before any is applied; FrameError if any does not decode."""
    out = []
    for origin, seq, payload in proposals_of(value):
        kind = payload[0] if payload else 0
        if kind == envelope.CLIENT:
            out.append((origin, seq, kind, envelope.decode_client(payload)))
        elif kind == envelope.CLIENT_BATCH:
            out.append((origin, seq, kind, envelope.decode_client_batch(payload)))
        elif kind == envelope.CLAIM:
            out.append((origin, seq, kind, envelope.decode_claim(payload)))
        elif kind == envelope.BARRIER:
            out.append((origin, seq, kind, None))
    return out


def master_key(group):
    return b"\xffM" + group.to_bytes(4, "big")


class Applier:
    def __init__(self, node_id, sm, masters, store, slot_of, plant="", leading_ballot=None, votes_at=None):
        """`slot_of(group)` maps a group to its slot in the master table; `store` holds master state;
        `leading_ballot(group)` is the Paxos ballot this node leads the group with (0 if none): our claims
        give us a lease only if we proposed them under it; `votes_at(group, instance, node)`: True if `node`
        votes in the configuration of that instance (the same answer on every node)."""
        self.leading_ballot = leading_ballot or (lambda group: 0)
        self.votes_at = votes_at or (lambda group, instance, node: True)
        self.no_fencing = plant == "no-fencing"      # planted bug: apply commands of deposed masters too
        if plant == "renew-non-voter":              # planted bug: a master that votes no more is renewed too
            self.votes_at = lambda group, instance, node: True
        self.node_id = node_id
        self.sm = sm
        self.masters = masters
        self.store = store
        self.slot_of = slot_of
        self.fenced = 0
        self.applied_commands = 0
        # (group, instance, reason) of chosen values that do not decode, since the caller last emptied it: the
        # group's values from there on are not applied (the caller stops the group).
        self.unreadable = []

    def restore(self, group, now):
        raw = self.store.get(master_key(group))
        if raw is not None:
            self.masters.restore(self.slot_of(group), *_MASTER_STATE.unpack(raw), now)

    def apply(self, chosen, now):
        """Apply [(group, instance, value)] (in order per group). Returns (outcomes, master_changes).

        outcomes: [(group, seq, kind, data, instance)] for entries this node proposed;
        master_changes: [(group, master, epoch)].
        """
        outcomes = []
        changes = []
        me = self.node_id
        masters = self.masters
        k = 0
        n = len(chosen)
        dirty = set()
        while k < n:
            group = chosen[k][0]
            slot = self.slot_of(group)
            applied_next = self.sm.applied_next(group)
            batch = []
            while k < n and chosen[k][0] == group:
                _, instance, value = chosen[k]
                k += 1
                if instance < masters.next_claim_instance[slot]:
                    continue     # applied before a restart (master state and state machine are stored together)
                try:
                    entries = _decoded(value)
                except FrameError as exc:
                    # No node of ours built this value (a buggy or hostile member's, a newer format): applying
                    # around it could make replicas differ, so nothing from here on is applied in this group.
                    self.unreadable.append((group, instance, "the chosen value of instance %d does not decode "
                                            "(%s): a buggy or hostile member, or a newer format than this build "
                                            "reads" % (instance, exc)))
                    while k < n and chosen[k][0] == group:
                        k += 1
                    break
                masters.next_claim_instance[slot] = instance + 1
                dirty.add(group)
                commands = []
                mine = []        # (seq, index in commands, count) for our own client entries
                voter = (-1, False)   # (origin, votes at this instance?): asked once per instance and origin
                for origin, seq, kind, fields in entries:
                    if kind == envelope.CLIENT:
                        epoch, client_id, request_seq, op = fields
                        if (origin == masters.master[slot] and epoch == masters.epoch[slot]) or self.no_fencing:
                            # A master's commands keep its lease alive in every node's view, unless it votes
                            # no more (the group moved): it serves nothing then, and its commands still chosen
                            # (relayed from leader to leader) must not keep a voter from taking over (simulator
                            # seed 897). The version counts them all the same (it is replicated state).
                            if voter[0] != origin:
                                voter = (origin, self.votes_at(group, instance, origin))
                            masters.note_activity(slot, origin, now, voter[1])
                            if origin == me:
                                mine.append((seq, len(commands), 0))
                            commands.append((client_id, request_seq, op))
                        else:
                            self.fenced += 1
                            if origin == me:
                                outcomes.append((group, seq, FENCED, masters.known_master(slot, now), instance))
                    elif kind == envelope.CLIENT_BATCH:
                        epoch, client_id, first_seq, ops = fields
                        if (origin == masters.master[slot] and epoch == masters.epoch[slot]) or self.no_fencing:
                            if voter[0] != origin:
                                voter = (origin, self.votes_at(group, instance, origin))
                            masters.note_activity(slot, origin, now, voter[1])
                            if origin == me:
                                mine.append((seq, -len(commands) - 1, len(ops)))
                            commands.extend([(client_id, first_seq + j, op) for j, op in enumerate(ops)])
                        else:
                            self.fenced += len(ops)
                            if origin == me:
                                outcomes.append((group, seq, FENCED, masters.known_master(slot, now), instance))
                    elif kind == envelope.CLAIM:
                        node, version, lease, nonce = fields
                        before = int(masters.version[slot])
                        if masters.apply_claim(slot, node, version, lease, now, nonce,
                                               self.leading_ballot(group) if node == me else 0):
                            changes.append((group, node, int(masters.epoch[slot])))
                        if origin == me:
                            outcomes.append((group, seq, CLAIMED, bool(masters.version[slot] != before
                                                                     and node == me), instance))
                    elif kind == envelope.BARRIER:
                        if origin == me:
                            outcomes.append((group, seq, BARRIER, None, instance))
                if instance < applied_next:
                    continue     # the state machine has it already
                batch.append((instance, commands, mine))
            if batch:
                results = self.sm.apply_batch(group, [(i, c) for i, c, _ in batch])
                for (instance, commands, mine), res in zip(batch, results):
                    self.applied_commands += len(commands)
                    for seq, index, count in mine:
                        if index >= 0:
                            outcomes.append((group, seq, APPLIED, res[index], instance))
                        else:                # a client batch: its results, in order
                            start = -index - 1
                            outcomes.append((group, seq, APPLIED, res[start:start + count], instance))
        if dirty:
            puts = [(master_key(g), _MASTER_STATE.pack(*self.masters.state(self.slot_of(g)))) for g in sorted(dirty)]
            self.store.write(puts, [])
        return outcomes, changes

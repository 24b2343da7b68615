"""The master of each group: elected through the group's own log, holding a lease counted in ticks.

A node becomes master by getting a CLAIM chosen. Claims compare-and-set a per-group version, so of two
concurrent claims only the first in log order succeeds, and every node, applying the same log, agrees on
who is master (deterministic part: master, epoch, version). A successful claim by a new node starts a new
epoch; client commands carry the epoch of the master that proposed them and are applied only if it is still
current (fencing). The version also counts every applied command of the master: a claim succeeds only if
its proposer had seen all of the master's activity, which is what lets activity renew the lease (below).

The lease is local (not in the log):
  * another node's master holds its lease until `apply tick + lease_ticks` on this node's clock, and this
    node does not claim before then;
  * our own lease runs from the tick we PROPOSED the claim, for `lease_ticks * (1 - margin)`. Every claim
    carries a nonce, so the proposer knows exactly which of its proposals was chosen (a claim proposed
    before a restart, or a retry, is never dated with the tick of another). It counts only if we proposed it
    under the Paxos ballot we still lead with when it is applied: then our own Accept carried it, and the
    acceptors that took it refuse any other leader for lease_ticks (engine: sticky_ticks), so nobody else
    can get a value chosen, and announced, that we have not applied.
Since a claim is applied everywhere after it was proposed, the master's own lease ends before anyone else's
view of it does, as long as tick rates differ by less than the margin. Only the master with an unexpired
lease serves lease reads. A restarted node trusts no lease it cannot date: a master it learns of from
storage is given a full lease from the restart, and its own mastership from before the restart has no lease
until it renews.

Every applied command of the master renews its lease like a claim does: the others extend their view to
`apply tick + lease_ticks`, the master its own to `proposal tick + lease_ticks * (1 - margin)`. A busy
group therefore needs no renewal claims; a master that only serves lease reads claims again when its lease
runs low. Idle groups are quiet: nothing renews, the lease lapses, and the next request claims again.
"""
import numpy as np

from . import envelope


class MasterTable:
    def __init__(self, node_id, n_slots, lease_ticks, margin, claim_timeout_ticks=None, plant="", nonce_base=0):
        if not 0 < margin < 1:
            raise ValueError("margin must be in (0, 1)")
        self.node_id = node_id
        self.lease_ticks = int(lease_ticks)
        self.own_lease = int(lease_ticks * (1.0 - margin))
        if plant == "lease-overrun":          # planted bug: the master trusts its lease past everyone's view
            self.own_lease = int(lease_ticks * 1.5)
        self.claim_timeout = int(claim_timeout_ticks or max(4, lease_ticks // 4))
        self.master = np.zeros(n_slots, np.int32)
        self.epoch = np.zeros(n_slots, np.uint64)
        self.version = np.zeros(n_slots, np.uint64)
        self.lease_until = np.zeros(n_slots, np.int64)
        self.next_claim_instance = np.zeros(n_slots, np.uint64)   # instances below were applied to this table
        self.pending = {}        # slot -> {nonce: (tick we proposed it, Paxos ballot we led with or 0)}
        self.last_claim = {}     # slot -> tick of our latest claim (to pace retries)
        self._nonce = nonce_base

    def resize(self, n_slots):
        old = len(self.master)
        if n_slots <= old:
            return
        extra = n_slots - old
        self.master = np.concatenate([self.master, np.zeros(extra, np.int32)])
        self.epoch = np.concatenate([self.epoch, np.zeros(extra, np.uint64)])
        self.version = np.concatenate([self.version, np.zeros(extra, np.uint64)])
        self.lease_until = np.concatenate([self.lease_until, np.zeros(extra, np.int64)])
        self.next_claim_instance = np.concatenate([self.next_claim_instance, np.zeros(extra, np.uint64)])

    # -------------------------------------------------------------- durable part
    def state(self, slot):
        """(master, epoch, version, next_claim_instance): what must be stored with the state machine."""
        return (int(self.master[slot]), int(self.epoch[slot]), int(self.version[slot]),
                int(self.next_claim_instance[slot]))

    def restore(self, slot, master, epoch, version, next_claim_instance, now):
        self.master[slot] = master
        self.epoch[slot] = epoch
        self.version[slot] = version
        self.next_claim_instance[slot] = next_claim_instance
        # A lease we cannot date: another master gets a full lease from now, our own none at all.
        self.lease_until[slot] = now + self.lease_ticks if master and master != self.node_id else 0
        self.pending.pop(slot, None)
        self.last_claim.pop(slot, None)

    def apply_claim(self, slot, node, expected_version, lease_ticks, now, nonce=0, leading_ballot=0):
        """Apply a chosen claim (once: the applier skips instances below next_claim_instance, the mark of
        what this table has applied). `leading_ballot`: the Paxos ballot this node leads the group with now
        (0 if it does not lead). Returns True if the group's master changed."""
        proposed_at = None
        if node == self.node_id:
            mine = self.pending.get(slot)
            if mine:
                proposal = mine.pop(nonce, None)
                if proposal is not None and proposal[1] and proposal[1] == leading_ballot:
                    proposed_at = proposal[0]
                if proposal is not None and expected_version == self.version[slot]:
                    self.pending.pop(slot, None)     # decided: our other copies will lose the version check
                    self.last_claim.pop(slot, None)
        if expected_version != self.version[slot]:
            return False
        self.version[slot] += 1
        changed = self.master[slot] != node
        if changed:
            self.epoch[slot] += 1
            self.master[slot] = node
        if node == self.node_id:
            # Ours: the lease runs from when we proposed this very claim; one we cannot date gives none.
            self.lease_until[slot] = proposed_at + self.own_lease if proposed_at is not None else 0
        else:
            self.lease_until[slot] = now + lease_ticks
            self.pending.pop(slot, None)
            self.last_claim.pop(slot, None)
        return bool(changed)

    def note_activity(self, slot, origin, now, renews=True):
        """A command of the current master was applied (deterministic: the version counts it). It renews the
        master's lease in our view unless `renews` is False (a master that votes no more: replica/applier.py)."""
        self.version[slot] += 1
        if origin != self.node_id and renews:
            until = now + self.lease_ticks
            if until > self.lease_until[slot]:
                self.lease_until[slot] = until

    def extend_own(self, slot, proposed_tick):
        """One of our own commands, proposed at `proposed_tick` in this incarnation under the Paxos ballot we
        still lead with (the caller checks), was applied."""
        if self.master[slot] == self.node_id:
            until = proposed_tick + self.own_lease
            if until > self.lease_until[slot]:
                self.lease_until[slot] = until

    def drop_own_leases(self):
        """Forget every lease we hold (we resumed late: a pause we cannot measure may have outlived them)."""
        mine = self.master == self.node_id
        dropped = int(np.count_nonzero(self.lease_until[mine] > 0))
        self.lease_until[mine] = 0
        return dropped

    # -------------------------------------------------------------- local views
    def is_master(self, slot):
        return self.master[slot] == self.node_id

    def has_lease(self, slot, now):
        return self.master[slot] == self.node_id and now < self.lease_until[slot]

    def known_master(self, slot, now):
        """The master to send requests to, or 0 when there is none we can trust."""
        m = int(self.master[slot])
        if m == self.node_id or (m and now < self.lease_until[slot]):
            return m
        return 0

    def claim_due(self, slot, now):
        """Should this node propose a claim now (to become master, or to renew its lease)?"""
        last = self.last_claim.get(slot)
        if last is not None and now - last < self.claim_timeout:
            return False
        m = self.master[slot]
        if m == self.node_id:
            return now >= self.lease_until[slot] - self.own_lease // 2
        return m == 0 or now >= self.lease_until[slot]

    def make_claim(self, slot, now, ballot=0):
        """The payload of a claim for the slot's current version; remembers when we proposed it, and under
        which Paxos ballot we led (0: we did not lead, the claim gives no lease)."""
        self._nonce += 1
        mine = self.pending.get(slot)
        if mine is None:
            mine = self.pending[slot] = {}
        mine[self._nonce] = (now, ballot)
        self.last_claim[slot] = now
        return envelope.claim(self.node_id, int(self.version[slot]), self.lease_ticks, self._nonce)

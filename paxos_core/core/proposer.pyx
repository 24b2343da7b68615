# cython: language_level=3
"""The proposer role's state: ballots, the window of instances in flight, queued proposals.

Per group the state is a few numbers in numpy arrays; a ProposerGroup object exists only while the group has
proposer work (queued proposals, instances in flight, a Prepare under way) and is dropped when it is idle.
The protocol steps that use this state are in engine.pyx.
"""
import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t


cdef class InFlight:
    def __init__(self, bytes value, int64_t sent_at):
        self.value = value
        self.votes = 0
        self.sent_at = sent_at
        self.first_sent = sent_at
        self.retries = 0


cdef class ProposerGroup:
    def __init__(self):
        self.pending = []
        self.pending_bytes = 0
        self.inflight = {}
        self.promises = None
        self.prepare_from = 0
        self.prepare_started = 0
        self.retries = 0
        self.forwarded = []
        self.forwarded_at = 0
        self.sticky_refusals = 0
        self.reproposals = None
        self.repropose_top = 0
        self.peer_marks = None
        self.floor_since = -1

    def is_idle(self):
        return (not self.pending and not self.inflight and self.promises is None and not self.forwarded
                and self.repropose_top == 0)


cdef class ProposerState:
    def __init__(self, Py_ssize_t n_slots):
        self.ballot_array = np.zeros(n_slots, np.uint64)
        self.role_array = np.zeros(n_slots, np.uint8)
        self.next_instance_array = np.zeros(n_slots, np.uint64)
        self.seen_round_array = np.zeros(n_slots, np.uint64)
        self.timer_array = np.zeros(n_slots, np.int64)
        self.mark_sent_array = np.zeros(n_slots, np.uint64)
        self.mark_notices_array = np.zeros(n_slots, np.uint8)
        self.leader_heard_array = np.full(n_slots, -(1 << 62), np.int64)
        self.last_accept_array = np.zeros(n_slots, np.int64)
        self.accept_heard_array = np.full(n_slots, -(1 << 62), np.int64)
        self.preferred_array = np.zeros(n_slots, np.uint16)
        self._bind()
        self.groups = {}

    def _bind(self):
        self.ballot = self.ballot_array
        self.role = self.role_array
        self.next_instance = self.next_instance_array
        self.seen_round = self.seen_round_array
        self.timer = self.timer_array
        self.mark_sent = self.mark_sent_array
        self.mark_notices = self.mark_notices_array
        self.leader_heard = self.leader_heard_array
        self.last_accept = self.last_accept_array
        self.accept_heard = self.accept_heard_array
        self.preferred = self.preferred_array

    def resize(self, Py_ssize_t n_slots):
        cdef Py_ssize_t old = self.ballot_array.shape[0]
        if n_slots <= old:
            return
        extra = n_slots - old
        self.ballot_array = np.concatenate([self.ballot_array, np.zeros(extra, np.uint64)])
        self.role_array = np.concatenate([self.role_array, np.zeros(extra, np.uint8)])
        self.next_instance_array = np.concatenate([self.next_instance_array, np.zeros(extra, np.uint64)])
        self.seen_round_array = np.concatenate([self.seen_round_array, np.zeros(extra, np.uint64)])
        self.timer_array = np.concatenate([self.timer_array, np.zeros(extra, np.int64)])
        self.mark_sent_array = np.concatenate([self.mark_sent_array, np.zeros(extra, np.uint64)])
        self.mark_notices_array = np.concatenate([self.mark_notices_array, np.zeros(extra, np.uint8)])
        self.leader_heard_array = np.concatenate([self.leader_heard_array, np.full(extra, -(1 << 62), np.int64)])
        self.last_accept_array = np.concatenate([self.last_accept_array, np.zeros(extra, np.int64)])
        self.accept_heard_array = np.concatenate([self.accept_heard_array, np.full(extra, -(1 << 62), np.int64)])
        self.preferred_array = np.concatenate([self.preferred_array, np.zeros(extra, np.uint16)])
        self._bind()

    cdef ProposerGroup group(self, Py_ssize_t slot):
        cdef ProposerGroup g = self.groups.get(slot)
        if g is None:
            g = ProposerGroup()
            self.groups[slot] = g
        return g


from paxos_core._enums import export_members

export_members(globals(), ProposerRole)

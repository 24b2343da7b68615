# cython: language_level=3
"""The acceptor role: promises and accepted values, for many groups at once.

Multi-Paxos acceptor: one promise per group covers every instance that is not yet chosen, so a leader that
won a Prepare sends only Accept for every later instance until someone else prepares. Per group the state is
two numbers in numpy arrays (bytes, not objects); accepted values are held in a dict only while their
instance is not yet learned, and dropped as soon as it is (the durable record keeps them).

This module decides; it does not send or persist. The engine turns a verdict into a record and a reply.
"""
import numpy as np

from libc.stdint cimport uint64_t


cdef class AcceptorState:
    def __init__(self, Py_ssize_t n_slots, bint ignore_promise=False):
        self.promised_array = np.zeros(n_slots, dtype=np.uint64)
        self.promised = self.promised_array
        self.top_array = np.zeros(n_slots, dtype=np.uint64)
        self.top = self.top_array
        self.accepted = {}
        self.ignore_promise = ignore_promise

    def resize(self, Py_ssize_t n_slots):
        old = self.promised_array.shape[0]
        if n_slots > old:
            self.promised_array = np.concatenate([self.promised_array, np.zeros(n_slots - old, np.uint64)])
            self.top_array = np.concatenate([self.top_array, np.zeros(n_slots - old, np.uint64)])
            self.promised = self.promised_array
            self.top = self.top_array

    def restore(self, Py_ssize_t slot, uint64_t promised, uint64_t top, entries):
        """Load recovered state: the promise, 1 + highest accepted instance, unlearned (instance, ballot, value)."""
        self.promised[slot] = promised
        self.top[slot] = top
        if entries:
            self.accepted[slot] = {i: (b, v) for i, b, v in entries}
        else:
            self.accepted.pop(slot, None)

    cdef int on_prepare(self, Py_ssize_t slot, uint64_t ballot):
        cdef uint64_t promised = self.promised[slot]
        if ballot < promised:
            return REJECTED
        if ballot == promised:
            return PROMISED_AGAIN
        self.promised[slot] = ballot
        return PROMISED

    cdef int on_accept(self, Py_ssize_t slot, uint64_t instance, uint64_t ballot, bytes value):
        if ballot < self.promised[slot] and not self.ignore_promise:
            return REJECTED
        if ballot > self.promised[slot]:
            self.promised[slot] = ballot
        cdef dict per_group = self.accepted.get(slot)
        if per_group is None:
            per_group = {}
            self.accepted[slot] = per_group
        per_group[instance] = (ballot, value)
        if instance + 1 > self.top[slot]:
            self.top[slot] = instance + 1
        return ACCEPTED

    cdef tuple get(self, Py_ssize_t slot, uint64_t instance):
        """(ballot, value) accepted at `instance`, or None."""
        cdef dict per_group = self.accepted.get(slot)
        if per_group is None:
            return None
        return per_group.get(instance)

    cdef void forget(self, Py_ssize_t slot, uint64_t instance):
        """Drop an instance from memory once it is learned (its record stays on disk)."""
        cdef dict per_group = self.accepted.get(slot)
        if per_group is not None:
            per_group.pop(instance, None)
            if not per_group:
                del self.accepted[slot]

    cdef list entries_from(self, Py_ssize_t slot, uint64_t first):
        """[(instance, ballot, value)] accepted at instances >= first, in instance order (for a Promise)."""
        cdef dict per_group = self.accepted.get(slot)
        if not per_group:
            return []
        return sorted([(i, bv[0], bv[1]) for i, bv in per_group.items() if i >= first])

    # Python views for the simulator's invariant checks and for tests.
    def promised_of(self, Py_ssize_t slot):
        return self.promised[slot]

    def accepted_of(self, Py_ssize_t slot):
        return dict(self.accepted.get(slot, {}))

    def prepare(self, Py_ssize_t slot, uint64_t ballot):
        return self.on_prepare(slot, ballot)

    def accept(self, Py_ssize_t slot, uint64_t instance, uint64_t ballot, bytes value):
        return self.on_accept(slot, instance, ballot, value)


from paxos_core._enums import export_members

export_members(globals(), AcceptorVerdict)

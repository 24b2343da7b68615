# cython: language_level=3
"""The learner role: which instances are chosen, in order, and the checksum chain over their values.

Chosen values are delivered strictly in instance order. The chain is crc32c over (instance, value) pairs,
each step seeded with the previous chain value; two nodes with the same learned prefix have the same chain,
and every Accept and Chosen message carries the sender's chain at its mark, so a node whose log diverged
from the leader's finds out at the first message whose mark equals its own.
"""
import numpy as np

from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from paxos_core.wire.checksum cimport crc32c_buf


cdef uint32_t chain_step(uint32_t chain, uint64_t instance, bytes value):
    cdef unsigned char buf[8]
    memcpy(buf, &instance, 8)
    chain = crc32c_buf(buf, 8, chain)
    return crc32c_buf(<const unsigned char *>PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), chain)


def chain_of(values, uint32_t chain=0, uint64_t first=0):
    """The chain after learning `values` at instances first, first+1, ... (for tests and recovery)."""
    cdef uint64_t i = first
    for v in values:
        chain = chain_step(chain, i, v)
        i += 1
    return chain


def chain_next(uint32_t chain, uint64_t instance, bytes value):
    return chain_step(chain, instance, value)


cdef class LearnerState:
    def __init__(self, Py_ssize_t n_slots):
        self.chosen_next_array = np.zeros(n_slots, np.uint64)
        self.chain_array = np.zeros(n_slots, np.uint32)
        self.known_mark_array = np.zeros(n_slots, np.uint64)
        self.repair_upto_array = np.zeros(n_slots, np.uint64)
        self.catchup_at_array = np.full(n_slots, -(1 << 62), np.int64)
        self.catchup_src_array = np.zeros(n_slots, np.int32)
        self.low_array = np.zeros(n_slots, np.uint64)
        self.learned_bytes_array = np.zeros(n_slots, np.uint64)
        self.low_bytes_array = np.zeros(n_slots, np.uint64)
        self.peer_floor_array = np.zeros(n_slots, np.uint64)
        self._bind()
        self.decided = {}
        self.outstanding = {}

    def _bind(self):
        self.chosen_next = self.chosen_next_array
        self.chain = self.chain_array
        self.known_mark = self.known_mark_array
        self.repair_upto = self.repair_upto_array
        self.catchup_at = self.catchup_at_array
        self.catchup_src = self.catchup_src_array
        self.low = self.low_array
        self.learned_bytes = self.learned_bytes_array
        self.low_bytes = self.low_bytes_array
        self.peer_floor = self.peer_floor_array

    def resize(self, Py_ssize_t n_slots):
        cdef Py_ssize_t old = self.chosen_next_array.shape[0]
        if n_slots <= old:
            return
        extra = n_slots - old
        self.chosen_next_array = np.concatenate([self.chosen_next_array, np.zeros(extra, np.uint64)])
        self.chain_array = np.concatenate([self.chain_array, np.zeros(extra, np.uint32)])
        self.known_mark_array = np.concatenate([self.known_mark_array, np.zeros(extra, np.uint64)])
        self.repair_upto_array = np.concatenate([self.repair_upto_array, np.zeros(extra, np.uint64)])
        self.catchup_at_array = np.concatenate([self.catchup_at_array, np.full(extra, -(1 << 62), np.int64)])
        self.catchup_src_array = np.concatenate([self.catchup_src_array, np.zeros(extra, np.int32)])
        self.low_array = np.concatenate([self.low_array, np.zeros(extra, np.uint64)])
        self.learned_bytes_array = np.concatenate([self.learned_bytes_array, np.zeros(extra, np.uint64)])
        self.low_bytes_array = np.concatenate([self.low_bytes_array, np.zeros(extra, np.uint64)])
        self.peer_floor_array = np.concatenate([self.peer_floor_array, np.zeros(extra, np.uint64)])
        self._bind()

    def restore(self, Py_ssize_t slot, uint64_t chosen_next, uint32_t chain, uint64_t known_mark,
                uint64_t repair_upto, uint64_t low=0, uint64_t learned_bytes=0, uint64_t low_bytes=0):
        self.low[slot] = low
        self.learned_bytes[slot] = learned_bytes
        self.low_bytes[slot] = low_bytes
        self.chosen_next[slot] = chosen_next
        self.chain[slot] = chain
        self.known_mark[slot] = max(known_mark, chosen_next)
        self.repair_upto[slot] = repair_upto

    cdef uint32_t advance(self, Py_ssize_t slot, bytes value):
        """Learn `value` at the slot's next instance; returns the new chain."""
        cdef uint64_t instance = self.chosen_next[slot]
        cdef uint32_t c = chain_step(self.chain[slot], instance, value)
        self.chain[slot] = c
        self.learned_bytes[slot] += len(value)
        self.chosen_next[slot] = instance + 1
        if self.known_mark[slot] < instance + 1:
            self.known_mark[slot] = instance + 1
        return c

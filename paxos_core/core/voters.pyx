# cython: language_level=3
"""Per-instance voters (issue 14, step 3; docs/design/membership.md): which nodes vote at an instance.

A group's voters change only through its own log. An ADOPT value chosen at instance i names an epoch and its
voters; they govern every instance from i + alpha on, so `config(j)` is "the voters of the last ADOPT chosen
at an instance <= j - alpha" (the group's first configuration where there is none: the table's, or for a
group added at run time the one its ADD_GROUP named). That is a function of
values chosen below j - alpha + 1, which never change, and a node acting on j has learned them (a leader acts
below its chosen mark + window, and the window is at most alpha), so every node computes the same `config(j)`
and each instance is single-decree Paxos over one fixed set of acceptors.

ADOPT values are laid out as: the tag byte 0xC0, the epoch (u64), the voter count (u8) and the voter ids (u16
each, strictly ascending, 1 to 7 of them), little-endian. A log value's first byte is otherwise a batch's
version byte (1), and a no-op is empty, so the tag cannot be mistaken. An ADOPT whose epoch is not above the
group's latest one (current or pending) is a no-op (rule R5), and so is a malformed one: every node reads the
same chosen bytes and skips it the same way.

Cost per group: 2 bytes (an index into the worker's interned configurations) while no change is pending; a
group with a pending activation also has one small list in a dict.

This module is built and tested on its own; the engine does not use it yet (docs/architecture.md, "Not built
yet").
"""
import numpy as np

from libc.stdint cimport uint16_t, uint64_t

ADOPT_TAG = 0xC0
MAX_VOTERS = 7
MAX_NODE_ID = 0xFFFE                 # as config.py: ballots keep a node id in 16 bits, 0xFFFF reserved
CONFIG_STATE_VERSION = 1
_NO_CONFIG = 0xFFFF                     # configuration indexes stop below it
cdef unsigned char ADOPT_TAG_C = 0xC0
# Configurations remembered below the current one per group (VoterTable.history): an applier behind by more
# activations than this, above the truncation mark, gets the oldest of them (only after a restart far behind).
_HISTORY = 16


class BadAdopt(ValueError):
    """An ADOPT value or a configuration state that is not well formed."""


def _check_voters(voters):
    voters = tuple(int(v) for v in voters)
    if not 1 <= len(voters) <= MAX_VOTERS:
        raise BadAdopt("a configuration has 1 to %d voters, got %d" % (MAX_VOTERS, len(voters)))
    if any(not 1 <= v <= MAX_NODE_ID for v in voters):
        raise BadAdopt("voter ids are 1 to %d, got %r" % (MAX_NODE_ID, voters))
    if len(set(voters)) != len(voters):
        raise BadAdopt("a voter is named twice: %r" % (voters,))
    return tuple(sorted(voters))


def encode_adopt(epoch, voters):
    """The log value that adopts `voters` (any order; stored ascending) as epoch `epoch` (>= 1)."""
    voters = _check_voters(voters)
    if not 1 <= epoch < (1 << 64):
        raise BadAdopt("an epoch is 1 to 2**64 - 1, got %r" % (epoch,))
    out = bytearray([ADOPT_TAG])
    out += int(epoch).to_bytes(8, "little")
    out.append(len(voters))
    for v in voters:
        out += v.to_bytes(2, "little")
    return bytes(out)


def is_adopt(bytes value):
    """True when the value is tagged as an ADOPT (well formed or not)."""
    return len(value) > 0 and (<unsigned char>value[0]) == ADOPT_TAG


def decode_adopt(bytes value):
    """(epoch, voters) of an ADOPT value; BadAdopt if it is not a well-formed one."""
    if not is_adopt(value):
        raise BadAdopt("not an ADOPT value")
    if len(value) < 10:
        raise BadAdopt("an ADOPT value is at least 10 bytes, got %d" % len(value))
    epoch = int.from_bytes(value[1:9], "little")
    count = value[9]
    if len(value) != 10 + 2 * count:
        raise BadAdopt("an ADOPT value with %d voters is %d bytes, got %d" % (count, 10 + 2 * count, len(value)))
    voters = tuple(int.from_bytes(value[10 + 2 * k:12 + 2 * k], "little") for k in range(count))
    if epoch == 0:
        raise BadAdopt("epoch 0 is not an epoch")
    if _check_voters(voters) != voters:
        raise BadAdopt("voter ids must be strictly ascending, got %r" % (voters,))
    return epoch, voters


cdef class Config:
    def __init__(self, uint64_t epoch, tuple voters):
        self.epoch = epoch
        self.voters = voters
        self.quorum = len(voters) // 2 + 1
        self._position = {node: k for k, node in enumerate(voters)}

    cpdef int position(self, int node):
        """The node's position in the voters (what a vote is counted by), -1 if it is not a voter."""
        return self._position.get(node, -1)

    def __repr__(self):
        return "Config(epoch=%d, voters=%r)" % (self.epoch, self.voters)


cdef class VoterTable:
    """Every slot's configuration: the current one (what governs the group's chosen mark) and the pending
    ones (adopted, not yet active), for the slots of one engine."""

    def __init__(self, Py_ssize_t n_slots, uint64_t alpha, uint64_t epoch, voters):
        if alpha < 1:
            raise BadAdopt("alpha is at least 1, got %d" % alpha)
        self.alpha = alpha
        self.configs = []
        self.index_of = {}
        first = self._intern(epoch, _check_voters(voters))
        self.config_array = np.full(n_slots, first, np.uint16)
        self.current = self.config_array
        self.first_array = np.full(n_slots, first, np.uint16)
        self.first = self.first_array
        self.pending = {}
        self.history = {}

    cdef uint16_t _intern(self, uint64_t epoch, tuple voters) except? 65535:
        key = (epoch, voters)
        index = self.index_of.get(key)
        if index is None:
            if len(self.configs) >= _NO_CONFIG:
                raise BadAdopt("more than %d distinct configurations" % _NO_CONFIG)
            index = len(self.configs)
            self.configs.append(Config(epoch, voters))
            self.index_of[key] = index
        return index

    def grow(self, Py_ssize_t extra):
        """Room for `extra` more slots, in the table's first configuration."""
        self.config_array = np.concatenate([self.config_array, np.zeros(extra, np.uint16)])
        self.current = self.config_array
        self.first_array = np.concatenate([self.first_array, np.zeros(extra, np.uint16)])
        self.first = self.first_array

    def set_first(self, Py_ssize_t slot, bytes state=b""):
        """The slot's group starts in the configuration of `state` (a state() with nothing pending, as
        first_state() gives it; empty: the table's first configuration). Call before reset(slot). A group
        added at run time starts in the configuration its ADD_GROUP names, the same on every node (a group
        that started on the table's first voters could never choose again once a majority of them had left
        the cluster: soak seed 4,910,844). BadAdopt, and nothing changed, if `state` is not well formed or
        names a pending configuration."""
        if not state:
            self.first[slot] = 0
            return
        epoch, voters = first_config(state)
        self.first[slot] = self._intern(epoch, voters)

    def first_state(self, Py_ssize_t slot):
        """The slot's first configuration as set_first() takes it: empty when it is the table's."""
        if self.first[slot] == 0:
            return b""
        config = <Config>self.configs[self.first[slot]]
        return config_state(config.epoch, config.voters)

    def normal_first(self, bytes state):
        """`state` as set_first() takes it, in the one form first_state() gives: empty for the table's first
        configuration (compared by value). BadAdopt if it is not one configuration with nothing pending."""
        if not state:
            return b""
        epoch, voters = first_config(state)
        table_first = <Config>self.configs[0]
        if epoch == table_first.epoch and voters == table_first.voters:
            return b""
        return config_state(epoch, voters)

    def first_of(self, Py_ssize_t slot):
        """The slot's first configuration (a Config): what an empty configuration state stands for."""
        return self.configs[self.first[slot]]

    cdef uint16_t index_at(self, Py_ssize_t slot, uint64_t instance):
        """The index (into the interned configurations) of the one that governs `instance`."""
        cdef uint16_t index = self.current[slot]
        cdef list queue = self.pending.get(slot)
        if queue is not None:
            for activation, pending_index in queue:
                if instance >= <uint64_t>activation:
                    index = pending_index
        return index

    cdef Config config_at(self, Py_ssize_t slot, uint64_t instance):
        return <Config>self.configs[self.index_at(slot, instance)]

    cdef uint64_t span_end(self, Py_ssize_t slot, uint64_t start, tuple voters):
        """The first instance at or after `start` whose voters are not `voters` (as far as the slot's table
        knows: a leader whose phase 1 was answered by a quorum of `voters` may act below it, rule R4);
        2**64 - 1 when every known configuration from `start` on has these voters."""
        if self.config_at(slot, start).voters != voters:
            return start
        cdef list queue = self.pending.get(slot)
        if queue is not None:
            for activation, pending_index in queue:
                if <uint64_t>activation > start and (<Config>self.configs[pending_index]).voters != voters:
                    return activation
        return <uint64_t>0xFFFFFFFFFFFFFFFF

    cdef bint votes_anywhere(self, Py_ssize_t slot, int node):
        """True when `node` is a voter of the slot's current configuration or of a pending one."""
        if (<Config>self.configs[self.current[slot]]).position(node) >= 0:
            return True
        cdef list queue = self.pending.get(slot)
        if queue is not None:
            for activation, pending_index in queue:
                if (<Config>self.configs[pending_index]).position(node) >= 0:
                    return True
        return False

    cdef Py_ssize_t learned_at(self, Py_ssize_t slot, uint64_t instance, bytes value, uint64_t delay) except -1:
        """As learned(), with the activation `delay` instances after `instance` (the engine passes alpha; a
        planted bug passes less). 1 when a configuration became pending, else 0."""
        if len(value) == 0 or (<unsigned char>value[0]) != ADOPT_TAG_C:
            return 0
        try:
            epoch, voters = decode_adopt(value)
        except BadAdopt:
            return 0
        if epoch <= self.latest_epoch(slot):
            return 0
        self.pending.setdefault(slot, []).append((instance + delay, self._intern(epoch, voters)))
        return 1

    def span(self, Py_ssize_t slot, uint64_t start, voters):
        """span_end() for tests."""
        return self.span_end(slot, start, tuple(voters))

    def voter_anywhere(self, Py_ssize_t slot, int node):
        return self.votes_anywhere(slot, node)

    def config(self, Py_ssize_t slot, uint64_t instance):
        """The configuration that governs `instance` of the slot's group. Defined for instances below the
        group's chosen mark + alpha (what a node that learned up to that mark can know)."""
        return self.config_at(slot, instance)

    def config_of_chosen(self, Py_ssize_t slot, uint64_t instance):
        """As config(), for any instance from the group's truncation mark on, chosen ones included: a
        configuration that became current is remembered with its activation until truncation passes it, so
        the answer for an instance is the same on every node, however far each has learned since (the
        applier asks it of the instances it applies: replica/applier.py)."""
        cdef uint16_t index = self.index_at(slot, instance)
        cdef list past = self.history.get(slot)
        if past is not None:
            for activation, before in reversed(past):
                if instance >= <uint64_t>activation:
                    break
                index = before
        return <Config>self.configs[index]

    def forget_below(self, Py_ssize_t slot, uint64_t low):
        """The group's log was truncated below `low`: nothing below it is asked about any more."""
        past = self.history.get(slot)
        if past is None:
            return
        while past and past[0][0] <= low:
            past.pop(0)
        if not past:
            del self.history[slot]

    def position(self, Py_ssize_t slot, uint64_t instance, int node):
        return self.config_at(slot, instance).position(node)

    def latest_epoch(self, Py_ssize_t slot):
        """The epoch of the slot's newest configuration, pending or current."""
        return self.latest(slot).epoch

    def latest(self, Py_ssize_t slot):
        """The slot's newest configuration (a Config), pending or current."""
        queue = self.pending.get(slot)
        index = queue[-1][1] if queue else self.current[slot]
        return self.configs[index]

    def learned(self, Py_ssize_t slot, uint64_t instance, bytes value):
        """Call for every value the group learns, in instance order. An ADOPT of a newer epoch becomes
        pending, active from instance + alpha; returns that activation instance, or 0 when nothing changed
        (not an ADOPT, malformed, or not newer: every node skips it alike)."""
        if self.learned_at(slot, instance, value, self.alpha):
            return instance + self.alpha
        return 0

    def advance(self, Py_ssize_t slot, uint64_t chosen_next):
        """The group learned every instance below `chosen_next`: pending configurations active at or below it
        become current (nothing asks for the configuration of a chosen instance). Returns how many did."""
        queue = self.pending.get(slot)
        if not queue:
            return 0
        cdef int moved = 0
        while queue and queue[0][0] <= chosen_next:
            activation, index = queue.pop(0)
            past = self.history.setdefault(slot, [])
            past.append((activation, self.current[slot]))
            if len(past) > _HISTORY:
                past.pop(0)
            self.current[slot] = index
            moved += 1
        if not queue:
            del self.pending[slot]
        return moved

    def reset(self, Py_ssize_t slot, uint64_t epoch=0, voters=None):
        """A fresh slot (a group added or removed), nothing pending: in configuration `epoch` of `voters`, or
        in the group's first configuration when none is given."""
        self.current[slot] = self._intern(epoch, _check_voters(voters)) if voters is not None else self.first[slot]
        self.pending.pop(slot, None)
        self.history.pop(slot, None)

    def state(self, Py_ssize_t slot):
        """The slot's configurations as bytes (for a CONFIG record, a LOW record or a snapshot): version
        (u8), the current epoch and voters, the number of pending ones (u8), each as activation (u64),
        epoch and voters; epoch as u64, voters as a count (u8) and ids (u16)."""
        out = bytearray([CONFIG_STATE_VERSION])
        _put_config(out, self.configs[self.current[slot]])
        queue = self.pending.get(slot, [])
        out.append(len(queue))
        for activation, index in queue:
            out += int(activation).to_bytes(8, "little")
            _put_config(out, self.configs[index])
        return bytes(out)

    def restore(self, Py_ssize_t slot, bytes state):
        """Set the slot from `state()` bytes; BadAdopt (and nothing changed) if they are not well formed."""
        current, queue = _parse_state(state)
        self.current[slot] = self._intern(current[0], current[1])
        self.history.pop(slot, None)
        if queue:
            self.pending[slot] = [(a, self._intern(c[0], c[1])) for a, c in queue]
        else:
            self.pending.pop(slot, None)

    def replay(self, Py_ssize_t slot, bytes base, adopts, uint64_t end, uint64_t delay):
        """Set the slot to its state at `end` from the state at a base (`state()` bytes, empty: the first
        configuration) and the ADOPT values [(instance, value)] chosen between the base and `end`, each in
        force `delay` instances after its own (alpha). BadAdopt if `base` is not well formed."""
        self.reset(slot)
        if base:
            self.restore(slot, base)
        for instance, value in adopts:
            self.learned_at(slot, instance, value, delay)
        self.advance(slot, end)

    def compact_state(self, Py_ssize_t slot):
        """state(), or empty while the slot is in its group's first configuration with nothing pending (what
        records, snapshots and STATE_REPLY carry: every node holding an incarnation of the group starts it in
        the same first configuration)."""
        if self.current[slot] == self.first[slot] and slot not in self.pending:
            return b""
        return self.state(slot)

    def distinct(self):
        """How many configurations the table has interned."""
        return len(self.configs)


def _put_config(bytearray out, Config config):
    out += int(config.epoch).to_bytes(8, "little")
    out.append(len(config.voters))
    for v in config.voters:
        out += int(v).to_bytes(2, "little")


def _get_config(bytes state, Py_ssize_t at):
    if at + 9 > len(state):
        raise BadAdopt("configuration state: truncated")
    epoch = int.from_bytes(state[at:at + 8], "little")
    count = state[at + 8]
    end = at + 9 + 2 * count
    if end > len(state):
        raise BadAdopt("configuration state: truncated")
    voters = tuple(int.from_bytes(state[at + 9 + 2 * k:at + 11 + 2 * k], "little") for k in range(count))
    if epoch == 0 or _check_voters(voters) != voters:
        raise BadAdopt("configuration state: a configuration that is not well formed")
    return end, (epoch, voters)


def _parse_state(bytes state):
    """(current (epoch, voters), [(activation, (epoch, voters)), ...]) of `state()` bytes; BadAdopt if they are
    not well formed (pending epochs and activations must ascend)."""
    if len(state) < 1 or state[0] != CONFIG_STATE_VERSION:
        raise BadAdopt("configuration state: unknown version")
    at, current = _get_config(state, 1)
    if at >= len(state):
        raise BadAdopt("configuration state: truncated")
    count = state[at]
    at += 1
    queue = []
    last_epoch, last_activation = current[0], 0
    for _ in range(count):
        if at + 8 > len(state):
            raise BadAdopt("configuration state: truncated")
        activation = int.from_bytes(state[at:at + 8], "little")
        at, config = _get_config(state, at + 8)
        if config[0] <= last_epoch or activation <= last_activation:
            raise BadAdopt("configuration state: pending epochs and activations must ascend")
        last_epoch, last_activation = config[0], activation
        queue.append((activation, config))
    if at != len(state):
        raise BadAdopt("configuration state: %d bytes left over" % (len(state) - at))
    return current, queue


def config_state(epoch, voters):
    """The state() bytes of configuration `epoch` of `voters` with nothing pending (a group's first
    configuration as ADD_GROUP, GROUP records and VoterTable.set_first carry it); BadAdopt if it is not one."""
    voters = _check_voters(voters)
    if not 1 <= epoch < (1 << 64):
        raise BadAdopt("an epoch is 1 to 2**64 - 1, got %r" % (epoch,))
    out = bytearray([CONFIG_STATE_VERSION])
    _put_config(out, Config(epoch, voters))
    out.append(0)
    return bytes(out)


def first_config(bytes state):
    """(epoch, voters) of a config_state(); BadAdopt if `state` is not one configuration with nothing pending."""
    current, queue = _parse_state(state)
    if queue:
        raise BadAdopt("a first configuration has nothing pending")
    return current


def state_configs(bytes state):
    """The configurations named by `state()` bytes, current first: [(epoch, voters), ...]; BadAdopt if the
    bytes are not well formed."""
    current, queue = _parse_state(state)
    return [current] + [config for _, config in queue]

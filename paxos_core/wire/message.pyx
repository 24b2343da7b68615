# cython: language_level=3
"""The protocol message: one fixed set of numeric fields plus one opaque value.

Every message kind uses the same record so the codec has one fixed header layout; ``Kind`` documents which
fields each kind uses.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

_KIND_NAMES = {
    PREPARE: "PREPARE", PROMISE: "PROMISE", ACCEPT: "ACCEPT", ACCEPTED: "ACCEPTED", REJECT: "REJECT",
    CHOSEN: "CHOSEN", CATCHUP_REQ: "CATCHUP_REQ", CATCHUP_REPLY: "CATCHUP_REPLY", FORWARD: "FORWARD",
    STATE_REQ: "STATE_REQ", STATE_REPLY: "STATE_REPLY", SNAP_OFFER: "SNAP_OFFER", SNAP_REQ: "SNAP_REQ",
    SNAP_CHUNK: "SNAP_CHUNK", SNAP_ABORT: "SNAP_ABORT", INC_NOTICE: "INC_NOTICE",
}


def kind_name(int kind):
    return _KIND_NAMES.get(kind, "KIND_%d" % kind)


cdef class Message:
    def __init__(self, int kind=0, uint32_t group=0, uint64_t instance=0, uint64_t ballot=0,
                 uint64_t mark=0, uint64_t aux=0, uint32_t chain=0, bytes value=b"", int flags=0,
                 int src=0, int inc=1):
        self.kind = kind
        self.flags = flags
        self.src = src
        self.inc = inc
        self.group = group
        self.instance = instance
        self.ballot = ballot
        self.mark = mark
        self.aux = aux
        self.chain = chain
        self.value = value

    def __repr__(self):
        return ("Message(%s src=%d group=%d/%d instance=%d ballot=%d mark=%d aux=%d chain=%d flags=%d value=%d B)"
                % (kind_name(self.kind), self.src, self.group, self.inc, self.instance, self.ballot, self.mark,
                   self.aux, self.chain, self.flags, len(self.value)))

    def __eq__(self, other):
        if not isinstance(other, Message):
            return NotImplemented
        cdef Message o = <Message>other
        return (self.kind == o.kind and self.flags == o.flags and self.src == o.src and self.group == o.group
                and self.inc == o.inc
                and self.instance == o.instance and self.ballot == o.ballot and self.mark == o.mark
                and self.aux == o.aux and self.chain == o.chain and self.value == o.value)

    def as_tuple(self):
        return (self.kind, self.flags, self.src, self.group, self.instance, self.ballot, self.mark, self.aux,
                self.chain, self.value, self.inc)


cdef Message make_message(uint8_t kind, uint32_t group, uint64_t instance, uint64_t ballot,
                          uint64_t mark, uint64_t aux, uint32_t chain, bytes value):
    cdef Message m = Message.__new__(Message)
    m.kind = kind
    m.flags = 0
    m.src = 0
    m.inc = 1
    m.group = group
    m.instance = instance
    m.ballot = ballot
    m.mark = mark
    m.aux = aux
    m.chain = chain
    m.value = value
    return m


from paxos_core._enums import export_members

export_members(globals(), Kind, MessageFlag)

# Ballots are (round, node id) packed into one unsigned 64-bit integer: round in the high 48 bits, node id in
# the low 16. Comparing the integers compares rounds first and breaks ties by node id, so ballots are totally
# ordered and two nodes never produce the same ballot. Ballot 0 means "none".
from libc.stdint cimport uint32_t, uint64_t

cdef inline uint64_t make_ballot(uint64_t round_, uint32_t node) noexcept nogil:
    return (round_ << 16) | (node & 0xFFFF)

cdef inline uint64_t ballot_round(uint64_t ballot) noexcept nogil:
    return ballot >> 16

cdef inline uint32_t ballot_node(uint64_t ballot) noexcept nogil:
    return <uint32_t>(ballot & 0xFFFF)

# cython: language_level=3
"""Python view of ballots (the inline C versions are in ballot.pxd)."""
from libc.stdint cimport uint64_t

MAX_NODE_ID = 0xFFFE
MAX_ROUND = (1 << 48) - 1


def pack(uint64_t round_, int node):
    """The ballot of `round_` at `node`."""
    return make_ballot(round_, node)


def unpack(uint64_t ballot):
    """(round, node) of a ballot."""
    return ballot_round(ballot), ballot_node(ballot)

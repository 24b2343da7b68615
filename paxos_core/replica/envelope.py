"""What one proposal (one entry of an instance's batch) carries.

    CLIENT   b"\\x01" | epoch u64 | client_id u64 | request_seq u64 | op ...    a state-machine command
    CLAIM    b"\\x02" | node u16 | expected_version u64 | lease_ticks u32 | nonce u64   a master claim
    BARRIER  b"\\x03"                                                          a read barrier (system)

Integers are little-endian. `epoch` is the master epoch the proposing master held: a client command is
applied only if its origin is the group's master and its epoch is the current one (fencing), so a write
from a deposed master can never land after its successor began to serve reads.
"""
import struct

from ..errors import MalformedFrame

CLIENT = 1
CLAIM = 2
BARRIER = 3

_CLIENT = struct.Struct("<BQQQ")
_CLAIM = struct.Struct("<BHQIQ")


def client(epoch, client_id, request_seq, op):
    return _CLIENT.pack(CLIENT, epoch, client_id, request_seq) + op


def claim(node, expected_version, lease_ticks, nonce):
    return _CLAIM.pack(CLAIM, node, expected_version, lease_ticks, nonce)


def barrier():
    return b"\x03"


def kind(payload):
    return payload[0] if payload else 0


def decode_client(payload):
    """(epoch, client_id, request_seq, op)."""
    if len(payload) < _CLIENT.size:
        raise MalformedFrame("client entry of %d bytes is too short" % len(payload))
    _, epoch, client_id, seq = _CLIENT.unpack_from(payload)
    return epoch, client_id, seq, payload[_CLIENT.size:]


def decode_claim(payload):
    """(node, expected_version, lease_ticks, nonce)."""
    if len(payload) != _CLAIM.size:
        raise MalformedFrame("claim entry of %d bytes, expected %d" % (len(payload), _CLAIM.size))
    _, node, version, lease, nonce = _CLAIM.unpack(payload)
    return node, version, lease, nonce

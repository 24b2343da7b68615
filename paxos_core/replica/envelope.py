"""What one proposal (one entry of an instance's batch) carries.

    CLIENT   b"\\x01" | epoch u64 | client_id u64 | request_seq u64 | op ...    a state-machine command
    CLAIM    b"\\x02" | node u16 | expected_version u64 | lease_ticks u32 | nonce u64   a master claim
    BARRIER  b"\\x03"                                                          a read barrier (system)
    CLIENT_BATCH  b"\\x04" | epoch u64 | client_id u64 | first_seq u64 | count u32 | count x (u32 len | op)
             many commands of one client request, as ONE proposal: command k has request seq first_seq + k

Integers are little-endian. `epoch` is the master epoch the proposing master held: a client command is
applied only if its origin is the group's master and its epoch is the current one (fencing), so a write
from a deposed master can never land after its successor began to serve reads.
"""
import struct

from ..errors import MalformedFrame

CLIENT = 1
CLAIM = 2
BARRIER = 3
CLIENT_BATCH = 4

_CLIENT = struct.Struct("<BQQQ")
_CLAIM = struct.Struct("<BHQIQ")
_CLIENT_BATCH = struct.Struct("<BQQQI")
_LEN = struct.Struct("<I")


def client(epoch, client_id, request_seq, op):
    return _CLIENT.pack(CLIENT, epoch, client_id, request_seq) + op


def client_batch(epoch, client_id, first_seq, ops):
    parts = [_CLIENT_BATCH.pack(CLIENT_BATCH, epoch, client_id, first_seq, len(ops))]
    pack = _LEN.pack
    for op in ops:
        parts.append(pack(len(op)))
        parts.append(op)
    return b"".join(parts)


def decode_client_batch(payload):
    """(epoch, client_id, first_seq, [op, ...])."""
    if len(payload) < _CLIENT_BATCH.size:
        raise MalformedFrame("client batch entry of %d bytes is too short" % len(payload))
    _, epoch, client_id, first_seq, count = _CLIENT_BATCH.unpack_from(payload)
    ops = []
    pos = _CLIENT_BATCH.size
    n = len(payload)
    unpack = _LEN.unpack_from
    for _ in range(count):
        if pos + 4 > n:
            raise MalformedFrame("client batch entry truncated")
        (length,) = unpack(payload, pos)
        pos += 4
        if pos + length > n:
            raise MalformedFrame("client batch entry truncated")
        ops.append(payload[pos:pos + length])
        pos += length
    if pos != n:
        raise MalformedFrame("client batch entry has %d trailing bytes" % (n - pos))
    return epoch, client_id, first_seq, ops


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

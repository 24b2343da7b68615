"""The client protocol between a facade (or the CLI) and a worker's client socket.

One ZeroMQ frame per request and per reply; little-endian integers.

    request  u8 op | u64 request id | body
      PROPOSE       u32 group | u32 timeout ms | u64 client id | u64 request seq | u64 min epoch | op bytes
      READ          u32 group | u8 mode | u32 timeout ms | u64 min epoch | query bytes
                    (min epoch: the highest master epoch the client has been told of; a node that knows only
                    an older one is behind, and catches up before it answers)
      STATUS        -
      PROPOSE_BATCH u32 group | u32 timeout ms | u64 client id | u64 first seq | u64 min epoch | u32 count
                    | count x (u32 length | op)        (op k gets request seq first seq + k; count at most
                    MAX_BATCH_OPS, checked before any op is read)
      ADD_GROUP     u32 group [| u16 incarnation [| u8 flags [| first]]]   (incarnation 0 or absent: one newer
                    than any this node removed; flags: ADD_JOIN, other nodes hold this incarnation already (a
                    worker that lost its synced state may have held it too, and rebuilds it before it votes);
                    first: the configuration the group starts in, core/voters.pyx config_state(), 1 to 7
                    voters; absent: the table's first configuration)
      REMOVE_GROUP  u32 group
      GROUP_INFO    u32 group     (reply: JSON {"hosted", "incarnation", "removed", "status", "first", "table"})
      SUBSCRIBE     -            (master-change events are then pushed to this client)
    reply    u8 status | u64 request id | body
      OK            PROPOSE: u64 instance | result;  READ: result;  STATUS: JSON;  others: empty;
                    PROPOSE_BATCH: u32 count | count x (u64 instance | u32 length | result)
      NOT_MASTER    u16 master to ask instead (0: unknown) | u64 its epoch
      EVENT         u8 kind (1 = master change) | u32 group | u16 master | u64 epoch   (request id 0)
      BATCH         u32 count | count x (u32 length | reply)   several replies for one client in one frame
                    (request id 0): a worker sends each client at most one frame per loop turn
      other errors  a UTF-8 message

The request seq is an opaque u64 to the worker, the envelope and the applier; they carry it unchanged (a batch's
op k gets first seq + k). Its bit 63 is the client's retry flag (see statemachine.kv, RETRY_FLAG).

What an error reply tells the client about a proposal (its retry flag relies on it): NOT_MASTER, GROUP_STOPPED,
UNKNOWN_GROUP, OVERLOADED, VALUE_TOO_LARGE and BAD_REQUEST answer a request that was NOT proposed, or (NOT_MASTER
for a fenced entry) was decided but is never applied; a proposal whose outcome is not known is answered TIMEOUT,
or not at all. A PROPOSE_BATCH proposed as several entries (one after another) that is refused after some of
them were applied is answered TIMEOUT too: its outcome is partly known, and a flagged retry learns the rest.
"""
import struct

from .. import errors
from ..errors import BadRequest, UnknownGroupError  # noqa: F401  (public in paxos_core.errors; named here too)

# A config_state() (core/voters.pyx): version, epoch u64, count u8, count x u16 voter, 0 pending (u8).
_FIRST_SIZES = frozenset(1 + 8 + 1 + 2 * n + 1 for n in range(1, 8))
PROPOSE, READ, STATUS, ADD_GROUP, REMOVE_GROUP, SUBSCRIBE, PROPOSE_BATCH, GROUP_INFO = 1, 2, 3, 4, 5, 6, 7, 8
READ_STALE, READ_LEASE, READ_LINEARIZABLE = 0, 1, 2
READ_MODES = {"stale": READ_STALE, "lease": READ_LEASE, "linearizable": READ_LINEARIZABLE}

OK, TIMEOUT, NOT_MASTER, VALUE_TOO_LARGE, OVERLOADED, GROUP_STOPPED, UNKNOWN_GROUP, BAD_REQUEST, EVENT, BATCH = range(10)
EVENT_MASTER_CHANGE = 1

# The most operations one PROPOSE_BATCH may carry. A worker never accepts a batch of more than its
# limits.max_pending operations (each counts as a pending request; Overloaded beyond), 20,000 by default, so
# bigger batches are refused before anything is split: one frame of up to limits.max_frame_bytes (64 MiB) of
# zero-length operations would otherwise be 16.7 million of them, seconds of the worker's loop and 100+ MB.
# The bound leaves room above the default max_pending and keeps decoding one frame to about 20 ms. The
# Client refuses a bigger batch in the caller's thread (ValueError).
MAX_BATCH_OPS = 1 << 16

_HEAD = struct.Struct("<BQ")
_U32 = struct.Struct("<I")
_BATCH_ITEM = struct.Struct("<QI")
_PROPOSE = struct.Struct("<IIQQQ")
_READ = struct.Struct("<IBIQ")
_GROUP = struct.Struct("<I")
_INC = struct.Struct("<H")
_INSTANCE = struct.Struct("<Q")
_MASTER = struct.Struct("<HQ")
_EVENT = struct.Struct("<BIHQ")


# ---------------------------------------------------------------- requests
def propose_request(req_id, group, timeout_ms, client_id, request_seq, op, min_epoch=0):
    return _HEAD.pack(PROPOSE, req_id) + _PROPOSE.pack(group, timeout_ms, client_id, request_seq, min_epoch) + op


def propose_batch_request(req_id, group, timeout_ms, client_id, first_seq, ops, min_epoch=0):
    parts = [_HEAD.pack(PROPOSE_BATCH, req_id), _PROPOSE.pack(group, timeout_ms, client_id, first_seq, min_epoch),
             _U32.pack(len(ops))]
    for op in ops:
        parts.append(_U32.pack(len(op)))
        parts.append(op)
    return b"".join(parts)


def _split(body, count, what, error=BadRequest):
    """count x (u32 length | bytes) from body (a memoryview). The count is checked against the body's size
    before anything is allocated: each item takes at least its 4-byte length."""
    n = len(body)
    if count > n // 4:
        raise error("%s declares %d items but its %d bytes hold at most %d" % (what, count, n, n // 4))
    out = []
    pos = 0
    for k in range(count):
        if n - pos < 4:
            raise error("%s item %d: its 4-byte length runs past the end (%d bytes left)" % (what, k, n - pos))
        (length,) = _U32.unpack_from(body, pos)
        pos += 4
        if length > n - pos:
            raise error("%s item %d of %d bytes runs past the end (%d bytes left)" % (what, k, length, n - pos))
        out.append(bytes(body[pos:pos + length]))
        pos += length
    if pos != n:
        raise error("%s has %d trailing bytes" % (what, n - pos))
    return out


def read_request(req_id, group, mode, timeout_ms, query, min_epoch=0):
    return _HEAD.pack(READ, req_id) + _READ.pack(group, mode, timeout_ms, min_epoch) + query


def simple_request(op, req_id, group=None):
    return _HEAD.pack(op, req_id) + (b"" if group is None else _GROUP.pack(group))


ADD_JOIN = 1      # ADD_GROUP flag: the incarnation is held on other nodes already (Client.add_group found it)


def add_group_request(req_id, group, incarnation=0, first=b"", join=False):
    return (_HEAD.pack(ADD_GROUP, req_id) + _GROUP.pack(group) + _INC.pack(incarnation)
            + bytes([ADD_JOIN if join else 0]) + first)


_OP_NAMES = {PROPOSE: "PROPOSE", READ: "READ", STATUS: "STATUS", ADD_GROUP: "ADD_GROUP", REMOVE_GROUP: "REMOVE_GROUP",
             SUBSCRIBE: "SUBSCRIBE", PROPOSE_BATCH: "PROPOSE_BATCH", GROUP_INFO: "GROUP_INFO"}


def _need(body, size, op, exact=False):
    n = len(body)
    if n < size or (exact and n != size):
        raise BadRequest("%s request body of %d bytes, expected %s%d" % (_OP_NAMES[op], n, "" if exact else
                                                                          "at least ", size))


def decode_request(frame):
    """(op, req_id, fields...) or BadRequest (with one line saying what is wrong).

    Only the frame's format is checked here, and nothing is allocated beyond the size of the frame itself
    (a batch's count is checked against MAX_BATCH_OPS and the bytes that follow it first). Limits that depend
    on the node (hosted groups, paxos.max_value_bytes, limits.max_group_id, max_pending) are the worker's to
    check."""
    n = len(frame)
    if n < _HEAD.size:
        raise BadRequest("request of %d bytes is shorter than its %d-byte header" % (n, _HEAD.size))
    op, req_id = _HEAD.unpack_from(frame)
    if op not in _OP_NAMES:
        raise BadRequest("unknown request op %d" % op)
    body = memoryview(frame)[_HEAD.size:]
    if op == PROPOSE:
        _need(body, _PROPOSE.size, op)
        group, timeout_ms, client_id, seq, min_epoch = _PROPOSE.unpack_from(body)
        return op, req_id, group, timeout_ms, client_id, seq, min_epoch, bytes(body[_PROPOSE.size:])
    if op == READ:
        _need(body, _READ.size, op)
        group, mode, timeout_ms, min_epoch = _READ.unpack_from(body)
        if mode not in (READ_STALE, READ_LEASE, READ_LINEARIZABLE):
            raise BadRequest("unknown read mode %d" % mode)
        return op, req_id, group, mode, timeout_ms, min_epoch, bytes(body[_READ.size:])
    if op == PROPOSE_BATCH:
        _need(body, _PROPOSE.size + 4, op)
        group, timeout_ms, client_id, first_seq, min_epoch = _PROPOSE.unpack_from(body)
        (count,) = _U32.unpack_from(body, _PROPOSE.size)
        if count > MAX_BATCH_OPS:
            raise BadRequest("batch request of %d operations: at most %d are accepted in one request (and no more "
                             "than the worker's limits.max_pending); split it" % (count, MAX_BATCH_OPS))
        ops = _split(body[_PROPOSE.size + 4:], count, "batch request")
        return op, req_id, group, timeout_ms, client_id, first_seq, min_epoch, ops
    if op == ADD_GROUP:
        fixed = _GROUP.size + _INC.size + 1
        first = len(body) - fixed
        if len(body) not in (_GROUP.size, fixed - 1, fixed) and not (first in _FIRST_SIZES):
            raise BadRequest("ADD_GROUP request body of %d bytes, expected %d, %d, %d, or %d plus a first "
                             "configuration of 1 to 7 voters (%d to %d bytes)"
                             % (len(body), _GROUP.size, fixed - 1, fixed, fixed, min(_FIRST_SIZES), max(_FIRST_SIZES)))
        (group,) = _GROUP.unpack_from(body)
        incarnation = _INC.unpack_from(body, _GROUP.size)[0] if len(body) > _GROUP.size else 0
        flags = body[fixed - 1] if len(body) >= fixed else 0
        if flags & ~ADD_JOIN:
            raise BadRequest("ADD_GROUP request flags 0x%02x: unknown bits (only 0x%02x, join, is defined)"
                             % (flags, ADD_JOIN))
        return op, req_id, group, incarnation, bytes(body[fixed:]), bool(flags & ADD_JOIN)
    if op in (REMOVE_GROUP, GROUP_INFO):
        _need(body, _GROUP.size, op, exact=True)
        (group,) = _GROUP.unpack_from(body)
        return op, req_id, group
    _need(body, 0, op, exact=True)                   # STATUS, SUBSCRIBE
    return op, req_id


# ---------------------------------------------------------------- replies
def reply(status, req_id, body=b""):
    return _HEAD.pack(status, req_id) + body


def propose_ok(req_id, instance, result):
    return _HEAD.pack(OK, req_id) + _INSTANCE.pack(instance) + result


def propose_batch_ok(req_id, results):
    """results: [(instance, result bytes)]."""
    parts = [_HEAD.pack(OK, req_id), _U32.pack(len(results))]
    for instance, result in results:
        parts.append(_BATCH_ITEM.pack(instance, len(result)))
        parts.append(result)
    return b"".join(parts)


def decode_propose_batch_ok(body):
    """[(instance, result)] of a PROPOSE_BATCH's OK body, or BadRequest (the count is checked against the
    body's size before anything is allocated)."""
    n = len(body)
    if n < 4:
        raise BadRequest("batch reply of %d bytes is shorter than its 4-byte count" % n)
    (count,) = _U32.unpack_from(body)
    if count > (n - 4) // _BATCH_ITEM.size:
        raise BadRequest("batch reply declares %d results but its %d bytes hold at most %d"
                         % (count, n, (n - 4) // _BATCH_ITEM.size))
    pos = 4
    out = []
    for k in range(count):
        if n - pos < _BATCH_ITEM.size:
            raise BadRequest("batch reply result %d: its header runs past the end (%d bytes left)" % (k, n - pos))
        instance, length = _BATCH_ITEM.unpack_from(body, pos)
        pos += _BATCH_ITEM.size
        if length > n - pos:
            raise BadRequest("batch reply result %d of %d bytes runs past the end (%d bytes left)"
                             % (k, length, n - pos))
        out.append((instance, bytes(body[pos:pos + length])))
        pos += length
    if pos != n:
        raise BadRequest("batch reply has %d trailing bytes" % (n - pos))
    return out


def reply_batch(frames):
    parts = [_HEAD.pack(BATCH, 0), _U32.pack(len(frames))]
    for frame in frames:
        parts.append(_U32.pack(len(frame)))
        parts.append(frame)
    return b"".join(parts)


def split_reply_batch(body):
    if len(body) < 4:
        raise BadRequest("reply batch of %d bytes is shorter than its 4-byte count" % len(body))
    (count,) = _U32.unpack_from(body)
    return _split(memoryview(body)[4:], count, "reply batch")


def not_master(req_id, master, epoch=0):
    return _HEAD.pack(NOT_MASTER, req_id) + _MASTER.pack(master or 0, epoch)


def error_reply(status, req_id, message):
    return _HEAD.pack(status, req_id) + message.encode("utf-8", "replace")


def master_event(group, master, epoch):
    return _HEAD.pack(EVENT, 0) + _EVENT.pack(EVENT_MASTER_CHANGE, group, master, epoch)


def decode_reply(frame):
    """(status, req_id, body)."""
    if len(frame) < _HEAD.size:
        raise BadRequest("reply of %d bytes is too short" % len(frame))
    status, req_id = _HEAD.unpack_from(frame)
    return status, req_id, bytes(frame[_HEAD.size:])


def decode_propose_ok(body):
    if len(body) < _INSTANCE.size:
        raise BadRequest("propose reply of %d bytes is shorter than its 8-byte instance" % len(body))
    (instance,) = _INSTANCE.unpack_from(body)
    return instance, body[_INSTANCE.size:]


def decode_not_master(body):
    """(master or 0, its epoch)."""
    if len(body) >= _MASTER.size:
        return _MASTER.unpack_from(body)
    return 0, 0


def decode_event(body):
    if len(body) != _EVENT.size:
        raise BadRequest("event of %d bytes, expected %d" % (len(body), _EVENT.size))
    kind, group, master, epoch = _EVENT.unpack_from(body)
    return kind, group, master, epoch


def raise_for(status, body, request_id=None):
    """Turn an error reply into the documented exception."""
    if status == TIMEOUT:
        exc = errors.Timeout(body.decode("utf-8", "replace") or "timed out: the outcome is unknown")
        exc.request_id = request_id
        raise exc
    if status == NOT_MASTER:
        master = decode_not_master(body)[0]
        raise errors.NotMaster("not the master%s" % (" (ask node %d)" % master if master else ""), master or None)
    if status == VALUE_TOO_LARGE:
        raise errors.ValueTooLarge(body.decode("utf-8", "replace"))
    if status == OVERLOADED:
        raise errors.Overloaded(body.decode("utf-8", "replace"))
    if status == GROUP_STOPPED:
        raise errors.GroupStopped(body.decode("utf-8", "replace"))
    if status == UNKNOWN_GROUP:
        raise UnknownGroupError(body.decode("utf-8", "replace"))
    if status == BAD_REQUEST:
        raise BadRequest(body.decode("utf-8", "replace"))
    raise errors.PaxosError("unexpected reply status %d" % status)

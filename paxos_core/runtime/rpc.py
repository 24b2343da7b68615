"""The client protocol between a facade (or the CLI) and a worker's client socket.

One ZeroMQ frame per request and per reply; little-endian integers.

    request  u8 op | u64 request id | body
      PROPOSE       u32 group | u32 timeout ms | u64 client id | u64 request seq | u64 min epoch | op bytes
      READ          u32 group | u8 mode | u32 timeout ms | u64 min epoch | query bytes
                    (min epoch: the highest master epoch the client has been told of; a node that knows only
                    an older one is behind, and catches up before it answers)
      STATUS        -
      ADD_GROUP     u32 group
      REMOVE_GROUP  u32 group
      SUBSCRIBE     -            (master-change events are then pushed to this client)
    reply    u8 status | u64 request id | body
      OK            PROPOSE: u64 instance | result;  READ: result;  STATUS: JSON;  others: empty
      NOT_MASTER    u16 master to ask instead (0: unknown) | u64 its epoch
      EVENT         u8 kind (1 = master change) | u32 group | u16 master | u64 epoch   (request id 0)
      other errors  a UTF-8 message
"""
import struct

from .. import errors

PROPOSE, READ, STATUS, ADD_GROUP, REMOVE_GROUP, SUBSCRIBE = 1, 2, 3, 4, 5, 6
READ_STALE, READ_LEASE, READ_LINEARIZABLE = 0, 1, 2
READ_MODES = {"stale": READ_STALE, "lease": READ_LEASE, "linearizable": READ_LINEARIZABLE}

OK, TIMEOUT, NOT_MASTER, VALUE_TOO_LARGE, OVERLOADED, GROUP_STOPPED, UNKNOWN_GROUP, BAD_REQUEST, EVENT = range(9)
EVENT_MASTER_CHANGE = 1

_HEAD = struct.Struct("<BQ")
_PROPOSE = struct.Struct("<IIQQQ")
_READ = struct.Struct("<IBIQ")
_GROUP = struct.Struct("<I")
_INSTANCE = struct.Struct("<Q")
_MASTER = struct.Struct("<HQ")
_EVENT = struct.Struct("<BIHQ")


class BadRequest(errors.PaxosError, ValueError):
    """A client request that does not decode."""


class UnknownGroupError(errors.ProposalError, KeyError):
    """The group does not exist on this node."""


# ---------------------------------------------------------------- requests
def propose_request(req_id, group, timeout_ms, client_id, request_seq, op, min_epoch=0):
    return _HEAD.pack(PROPOSE, req_id) + _PROPOSE.pack(group, timeout_ms, client_id, request_seq, min_epoch) + op


def read_request(req_id, group, mode, timeout_ms, query, min_epoch=0):
    return _HEAD.pack(READ, req_id) + _READ.pack(group, mode, timeout_ms, min_epoch) + query


def simple_request(op, req_id, group=None):
    return _HEAD.pack(op, req_id) + (b"" if group is None else _GROUP.pack(group))


def decode_request(frame):
    """(op, req_id, fields...) or BadRequest."""
    if len(frame) < _HEAD.size:
        raise BadRequest("request of %d bytes is too short" % len(frame))
    op, req_id = _HEAD.unpack_from(frame)
    body = frame[_HEAD.size:]
    try:
        if op == PROPOSE:
            group, timeout_ms, client_id, seq, min_epoch = _PROPOSE.unpack_from(body)
            return op, req_id, group, timeout_ms, client_id, seq, min_epoch, bytes(body[_PROPOSE.size:])
        if op == READ:
            group, mode, timeout_ms, min_epoch = _READ.unpack_from(body)
            if mode not in (READ_STALE, READ_LEASE, READ_LINEARIZABLE):
                raise BadRequest("unknown read mode %d" % mode)
            return op, req_id, group, mode, timeout_ms, min_epoch, bytes(body[_READ.size:])
        if op in (ADD_GROUP, REMOVE_GROUP):
            (group,) = _GROUP.unpack_from(body)
            return op, req_id, group
        if op in (STATUS, SUBSCRIBE):
            return op, req_id
    except struct.error as exc:
        raise BadRequest("malformed request (op %d): %s" % (op, exc))
    raise BadRequest("unknown request op %d" % op)


# ---------------------------------------------------------------- replies
def reply(status, req_id, body=b""):
    return _HEAD.pack(status, req_id) + body


def propose_ok(req_id, instance, result):
    return _HEAD.pack(OK, req_id) + _INSTANCE.pack(instance) + result


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
    (instance,) = _INSTANCE.unpack_from(body)
    return instance, body[_INSTANCE.size:]


def decode_not_master(body):
    """(master or 0, its epoch)."""
    if len(body) >= _MASTER.size:
        return _MASTER.unpack_from(body)
    return 0, 0


def decode_event(body):
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

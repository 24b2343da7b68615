"""The replicated key-value store's client: keys are spread over the groups, each group is a KV shard.

    kv = KV(client, groups)
    kv.put(b"k", b"v"); kv.get(b"k"); kv.cas(b"k", b"v", b"w"); kv.delete(b"k")

A key lives in group `crc32c(key) % groups`. Writes go through Paxos; `get` is a lease read by default
("linearizable" goes through the log, "stale" reads the nearest node's state).

Writes return ``KVResult(status, value)`` with status OK, NOT_FOUND, CAS_FAILED or ERROR. A write that applied
nothing for a session reason is never returned: STALE raises :class:`~paxos_core.errors.StaleRequest`,
SESSION_UNKNOWN raises :class:`~paxos_core.errors.SessionExpired` (a Timeout: the outcome is unknown). The
client's own errors (Timeout, GroupStopped, ...) pass through.
"""
from . import errors
from .statemachine import kv as ops
from .wire.checksum import crc32c


def key_group(key, groups):
    """THE key-to-group function of the KV store."""
    return crc32c(key) % groups


def _write_result(group, result):
    """The KVResult of a write; a result that applied nothing for a session reason raises instead (the Client
    already raises for those; this holds for a Client built without its session check too)."""
    refusal = ops.session_refusal(result.result)
    if refusal is not None:
        exc = refusal("group %d: request %r applied nothing (%s)"
                      % (group, result.request_id, ops.STATUS_NAMES[result.result[0] & 0x7F]))
        exc.request_id = result.request_id
        raise exc
    return ops.decode_result(result.result)


def _read_value(group, raw):
    status, value = ops.decode_result(raw)
    if status == ops.OK:
        return value
    if status == ops.NOT_FOUND:
        return None
    # Not "absent": the read itself failed (an ERROR result carries its message).
    raise errors.PaxosError("group %d: key-value read failed with %s: %r" % (group, ops.STATUS_NAMES[status], value))


class KV:
    def __init__(self, client, groups):
        self.client = client
        self.groups = groups

    def group(self, key):
        return key_group(key, self.groups)

    def put(self, key, value, timeout=None):
        group = self.group(key)
        return _write_result(group, self.client.propose(group, ops.encode_put(key, value), timeout))

    def delete(self, key, timeout=None):
        group = self.group(key)
        return _write_result(group, self.client.propose(group, ops.encode_delete(key), timeout))

    def cas(self, key, expected, new, timeout=None):
        """Set `key` to `new` if it holds `expected` (None: absent). Returns (status, current value)."""
        group = self.group(key)
        return _write_result(group, self.client.propose(group, ops.encode_cas(key, expected, new), timeout))

    def get(self, key, mode="lease", timeout=None):
        """The value, or None if the key is absent."""
        group = self.group(key)
        return _read_value(group, self.client.read(group, ops.encode_get(key), mode, timeout))

    async def put_async(self, key, value, timeout=None):
        group = self.group(key)
        return _write_result(group, await self.client.propose_async(group, ops.encode_put(key, value), timeout))

    async def get_async(self, key, mode="lease", timeout=None):
        group = self.group(key)
        return _read_value(group, await self.client.read_async(group, ops.encode_get(key), mode, timeout))

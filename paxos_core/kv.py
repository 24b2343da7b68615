"""The replicated key-value store's client: keys are spread over the groups, each group is a KV shard.

    kv = KV(client, groups)
    kv.put(b"k", b"v"); kv.get(b"k"); kv.cas(b"k", b"v", b"w"); kv.delete(b"k")

A key lives in group `crc32c(key) % groups`. Writes go through Paxos; `get` is a lease read by default
("linearizable" goes through the log, "stale" reads the nearest node's state).
"""
from .statemachine import kv as ops
from .wire.checksum import crc32c


def key_group(key, groups):
    """THE key-to-group function of the KV store."""
    return crc32c(key) % groups


class KV:
    def __init__(self, client, groups):
        self.client = client
        self.groups = groups

    def group(self, key):
        return key_group(key, self.groups)

    def put(self, key, value, timeout=None):
        return ops.decode_result(self.client.propose(self.group(key), ops.encode_put(key, value), timeout).result)

    def delete(self, key, timeout=None):
        return ops.decode_result(self.client.propose(self.group(key), ops.encode_delete(key), timeout).result)

    def cas(self, key, expected, new, timeout=None):
        """Set `key` to `new` if it holds `expected` (None: absent). Returns (status, current value)."""
        return ops.decode_result(self.client.propose(self.group(key), ops.encode_cas(key, expected, new),
                                                     timeout).result)

    def get(self, key, mode="lease", timeout=None):
        """The value, or None if the key is absent."""
        status, value = ops.decode_result(self.client.read(self.group(key), ops.encode_get(key), mode, timeout))
        return value if status == ops.OK else None

    async def put_async(self, key, value, timeout=None):
        r = await self.client.propose_async(self.group(key), ops.encode_put(key, value), timeout)
        return ops.decode_result(r.result)

    async def get_async(self, key, mode="lease", timeout=None):
        status, value = ops.decode_result(await self.client.read_async(self.group(key), ops.encode_get(key), mode,
                                                                       timeout))
        return value if status == ops.OK else None

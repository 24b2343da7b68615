"""The replicated key-value store's client: keys are spread over the groups, each group is a KV shard.

    kv = KV(client, groups)
    kv.put(b"k", b"v"); kv.get(b"k"); kv.cas(b"k", b"v", b"w"); kv.delete(b"k")

Keys and values are bytes (a bytearray or memoryview is taken as its bytes); anything else, an int or a str
included, is a TypeError raised by the call itself, before anything is sent. A key lives in group
`crc32c(key) % groups`. Writes go through Paxos; `get` is a lease read by default
("linearizable" goes through the log, "stale" reads the nearest node's state). Every call has an ``_async``
twin for asyncio.

`put` and `delete` return ``KVResult(status, value)`` with status OK (or NOT_FOUND: `delete` of an absent key);
`cas` returns True if it swapped, False if the key did not hold the expected value. A write that applied
nothing for a session reason is never returned: STALE raises :class:`~paxos_core.errors.StaleRequest`,
SESSION_UNKNOWN raises :class:`~paxos_core.errors.SessionExpired` (a Timeout: the outcome is unknown). The
client's own errors (Timeout, GroupStopped, ...) pass through.

Exactly-once, as with ``Client.propose``: every write is one request with a request id. An error of a write
(a Timeout above all: the outcome is unknown) carries it as ``request_id``; pass it back as ``request_id=`` to
retry the same write, which is then applied at most once (a retry of a write that did land returns its
remembered result: `cas` returns True, not False for the value it set itself). ``retry`` is as in
``Client.propose``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from . import errors
from .client import as_bytes
from .statemachine import kv as ops
from .statemachine.kv import KVResult
from .wire.checksum import crc32c

if TYPE_CHECKING:
    from .client import Client, ProposeResult, ReadMode, RequestId


def key_group(key: bytes, groups: int) -> int:
    """THE key-to-group function of the KV store."""
    return int(crc32c(key)) % groups


def _write_result(group: int, result: ProposeResult) -> KVResult:
    """The KVResult of a write; a result that applied nothing for a session reason raises instead (the Client
    already raises for those; this holds for a Client built without its session check too)."""
    refusal = ops.session_refusal(result.result)
    if refusal is not None:
        exc = refusal("group %d: request %r applied nothing (%s)"
                      % (group, result.request_id, ops.STATUS_NAMES[result.result[0] & 0x7F]))
        exc.request_id = result.request_id
        raise exc
    return ops.decode_result(result.result)


def _failed(group: int, what: str, status: int, value: bytes | None) -> NoReturn:
    # Not "absent" nor "not swapped": the operation itself failed (an ERROR result carries its message).
    raise errors.PaxosError("group %d: key-value %s failed with %s: %r"
                            % (group, what, ops.STATUS_NAMES[status], value))


def _swapped(group: int, result: ProposeResult) -> bool:
    status, value = _write_result(group, result)
    if status == ops.OK:
        return True
    if status == ops.CAS_FAILED:
        return False
    _failed(group, "cas", status, value)


def _read_value(group: int, raw: bytes) -> bytes | None:
    status, value = ops.decode_result(raw)
    if status == ops.OK:
        return value
    if status == ops.NOT_FOUND:
        return None
    _failed(group, "read", status, value)


class KV:
    """The key-value store over a :class:`~paxos_core.client.Client` and the cluster's number of groups."""

    def __init__(self, client: Client, groups: int) -> None:
        self.client = client
        self.groups = groups

    def group(self, key: bytes) -> int:
        """The group that holds `key` (bytes, bytearray or memoryview; anything else is a TypeError)."""
        return key_group(as_bytes(key, "key"), self.groups)

    # ------------------------------------------------------------------ writes
    def put(self, key: bytes, value: bytes, timeout: float | None = None, request_id: RequestId | None = None,
            retry: bool | None = None) -> KVResult:
        """Set `key` to `value`. `request_id`: retry an earlier put (from its error's ``request_id``)."""
        group = self.group(key)
        return _write_result(group, self.client.propose(group, ops.encode_put(key, value), timeout, request_id,
                                                        retry=retry))

    def delete(self, key: bytes, timeout: float | None = None, request_id: RequestId | None = None,
               retry: bool | None = None) -> KVResult:
        """Remove `key`: status OK, or NOT_FOUND if it was absent."""
        group = self.group(key)
        return _write_result(group, self.client.propose(group, ops.encode_delete(key), timeout, request_id,
                                                        retry=retry))

    def cas(self, key: bytes, expected: bytes | None, new: bytes | None, timeout: float | None = None,
            request_id: RequestId | None = None, retry: bool | None = None) -> bool:
        """Set `key` to `new` if it holds `expected` (None: absent; `new` None: delete it).

        True if it did, False if the key held something else (nothing changed)."""
        group = self.group(key)
        return _swapped(group, self.client.propose(group, ops.encode_cas(key, expected, new), timeout, request_id,
                                                   retry=retry))

    async def put_async(self, key: bytes, value: bytes, timeout: float | None = None,
                        request_id: RequestId | None = None, retry: bool | None = None) -> KVResult:
        group = self.group(key)
        return _write_result(group, await self.client.propose_async(group, ops.encode_put(key, value), timeout,
                                                                    request_id, retry=retry))

    async def delete_async(self, key: bytes, timeout: float | None = None, request_id: RequestId | None = None,
                           retry: bool | None = None) -> KVResult:
        group = self.group(key)
        return _write_result(group, await self.client.propose_async(group, ops.encode_delete(key), timeout,
                                                                    request_id, retry=retry))

    async def cas_async(self, key: bytes, expected: bytes | None, new: bytes | None, timeout: float | None = None,
                        request_id: RequestId | None = None, retry: bool | None = None) -> bool:
        group = self.group(key)
        return _swapped(group, await self.client.propose_async(group, ops.encode_cas(key, expected, new), timeout,
                                                               request_id, retry=retry))

    # ------------------------------------------------------------------ reads
    def get(self, key: bytes, mode: ReadMode = "lease", timeout: float | None = None) -> bytes | None:
        """The value, or None if the key is absent."""
        group = self.group(key)
        return _read_value(group, self.client.read(group, ops.encode_get(key), mode, timeout))

    async def get_async(self, key: bytes, mode: ReadMode = "lease", timeout: float | None = None) -> bytes | None:
        group = self.group(key)
        return _read_value(group, await self.client.read_async(group, ops.encode_get(key), mode, timeout))

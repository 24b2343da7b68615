"""Calling a state machine of your own: your op bytes in, your result bytes out.

    sm = StateMachineClient(client)            # node.sm of a Node
    result = sm.call(group, op)                # a command: chosen, applied on every node, exactly once
    answer = sm.query(group, query)            # a read: mode "lease" (default), "linearizable" or "stale"
    result = await sm.call_async(group, op); answer = await sm.query_async(group, query)

What the Client does for every proposal applies (sessions, retries, redirects; see client.py): a Timeout
means the outcome is unknown and carries ``request_id``: pass it back (``call(..., request_id=...)``) to
retry, applied at most once. When your ``apply`` or ``query`` raised, the call raises
:class:`~paxos_core.errors.CommandError` with the exception's type and message (for a command, that error
is its outcome: it was chosen and changed nothing).

:class:`ObjectProxy` does the same for a :class:`~paxos_core.statemachine.objects.ReplicatedObject`.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from . import errors
from .statemachine.objects import encode_call, method_kind
from .statemachine.user import decode_user_result

if TYPE_CHECKING:
    from .client import Client, ProposeResult, ReadMode, RequestId


def _result(result: ProposeResult) -> bytes:
    try:
        return decode_user_result(result.result)
    except errors.CommandError as exc:
        exc.request_id = result.request_id
        raise


class StateMachineClient:
    """Your state machine's commands and queries over a :class:`~paxos_core.client.Client`."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def call(self, group: int, op: bytes, timeout: float | None = None, request_id: RequestId | None = None,
             retry: bool | None = None) -> bytes:
        """Apply `op` in `group`; your ``apply``'s result. `request_id`/`retry` as in ``Client.propose``."""
        return _result(self.client.propose(group, op, timeout, request_id, retry=retry))

    async def call_async(self, group: int, op: bytes, timeout: float | None = None,
                         request_id: RequestId | None = None, retry: bool | None = None) -> bytes:
        return _result(await self.client.propose_async(group, op, timeout, request_id, retry=retry))

    def query(self, group: int, query: bytes, mode: ReadMode = "lease", timeout: float | None = None) -> bytes:
        """Your ``query``'s answer. mode "lease": the master answers while its lease holds; "linearizable":
        a barrier goes through the log first; "stale": the nearest node's state, maybe behind."""
        return decode_user_result(self.client.read(group, query, mode, timeout))

    async def query_async(self, group: int, query: bytes, mode: ReadMode = "lease",
                          timeout: float | None = None) -> bytes:
        return decode_user_result(await self.client.read_async(group, query, mode, timeout))


class ObjectProxy:
    """Calls the @replicated and @query methods of a ReplicatedObject class in one group.

    ``proxy.name(*args, **kwargs)`` blocks; ``await proxy.aio.name(...)`` is the asyncio twin. Arguments and
    results are JSON values. A method that is neither @replicated nor @query is an AttributeError here."""

    def __init__(self, sm: StateMachineClient, cls: type, group: int = 0, read_mode: ReadMode = "lease") -> None:
        self._sm = sm
        self._cls = cls
        self._group = group
        self._mode = read_mode
        self.aio = _AsyncProxy(self)

    def _kind(self, name: str) -> str:
        kind = method_kind(self._cls, name)
        if kind is None:
            raise AttributeError("%s has no @replicated or @query method %r" % (self._cls.__name__, name))
        return kind

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        kind = self._kind(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            op = encode_call(name, args, kwargs)
            if kind == "command":
                return json.loads(self._sm.call(self._group, op))
            return json.loads(self._sm.query(self._group, op, self._mode))
        call.__name__ = name
        return call


class _AsyncProxy:
    def __init__(self, proxy: ObjectProxy) -> None:
        self._proxy = proxy

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        proxy = self._proxy
        kind = proxy._kind(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            op = encode_call(name, args, kwargs)
            if kind == "command":
                return json.loads(await proxy._sm.call_async(proxy._group, op))
            return json.loads(await proxy._sm.query_async(proxy._group, op, proxy._mode))
        call.__name__ = name
        return call

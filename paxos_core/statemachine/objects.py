"""Replicated Python objects, for PySyncObj users: methods marked ``@replicated`` become commands.

    class Counter(ReplicatedObject):
        def __init__(self):
            self.value = 0

        @replicated
        def add(self, n):
            self.value += n
            return self.value

        @query
        def get(self):
            return self.value

    node = Node("node1.toml", state_machine="myapp:Counter")
    counter = node.replicated(Counter, group=0)
    counter.add(5)                        # a command: chosen by Paxos, applied on every node, exactly once
    counter.get()                         # a lease read on the master ("linearizable", "stale": read_mode=)
    await counter.aio.add(1)              # asyncio

Each group holds one object of the class, made with ``cls()`` the first time the group is used. Calls and
results travel as JSON (no pickle: nothing a client sends can run code on a node): arguments, return values
and the object's state must be JSON values (dict keys are strings; a tuple comes back as a list).

How the state is kept: after every @replicated call the object's public attributes (``vars(obj)``, names not
starting with ``_``) are written as one JSON document (keys sorted) into the group's data, and the object is
rebuilt from that document: every node, whether it restarted or not, then holds exactly the same state
(a tuple becomes a list at once, everywhere, instead of only on the nodes that reloaded). A call that raises,
or leaves a state that is not JSON, changes nothing: the object goes back to the document of the previous
call, and the caller gets CommandError. The price is a JSON round trip of the whole state per command: this
layer is for small state (counters, configuration, membership, a few thousand entries). For large state,
subclass :class:`~paxos_core.statemachine.user.UserStateMachine` and keep it in keys.

Methods must be deterministic like any ``apply`` (no clock, no randomness, no I/O): pass time in as an
argument. Attributes starting with ``_`` are not state: use them only for caches that ``__init__`` can
rebuild (they are lost whenever the object is rebuilt).
"""
from __future__ import annotations

import collections
import json
import random
from typing import Any, Callable, TypeVar

from ..errors import ConfigError
from .kv import DEFAULT_MAX_LOADED_GROUPS
from .store import Store
from .user import UserStateMachine

F = TypeVar("F", bound=Callable[..., Any])

STATE_KEY = b"\x00object"       # the group's one data key: the object's state, as JSON
_KIND = "__paxos_core_kind__"


def replicated(method: F) -> F:
    """Mark a method as a command: calling it through a proxy proposes it; every node applies it."""
    setattr(method, _KIND, "command")
    return method


def query(method: F) -> F:
    """Mark a method as a read: served from the state (no log round for a lease or stale read)."""
    setattr(method, _KIND, "query")
    return method


def method_kind(cls: type, name: str) -> str | None:
    """"command", "query", or None if `name` is neither on `cls` (plain methods cannot be called remotely)."""
    if not isinstance(name, str) or name.startswith("_"):
        return None
    return getattr(getattr(cls, name, None), _KIND, None)


class ReplicatedObject:
    """Base class of a replicated object; see the module docstring. ``__init__`` takes no arguments."""

    def random_call(self, rng: random.Random) -> tuple[str, list[Any]]:
        """For the simulator: ``(method name, [arguments])`` of a @replicated call drawn from `rng` only.
        Default: the first @replicated method in name order, without arguments."""
        names = sorted(n for n in dir(type(self)) if method_kind(type(self), n) == "command")
        if not names:
            raise ConfigError("%s has no @replicated method" % type(self).__name__)
        return names[0], []


def encode_call(name: str, args: tuple | list = (), kwargs: dict | None = None) -> bytes:
    """The op (or query) bytes of a call: JSON ``[name, [args], {kwargs}]``."""
    return json.dumps([name, list(args), kwargs or {}], separators=(",", ":"), sort_keys=True).encode()


def _decode_call(op: bytes) -> tuple[str, list, dict]:
    call = json.loads(op)
    if (not isinstance(call, list) or len(call) != 3 or not isinstance(call[0], str)
            or not isinstance(call[1], list) or not isinstance(call[2], dict)):
        raise ValueError("a call is JSON [name, [args], {kwargs}]")
    return call[0], call[1], call[2]


def _dump(obj: Any) -> bytes:
    state = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    return json.dumps(state, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


class ObjectStateMachine(UserStateMachine):
    """Serves a ReplicatedObject class: one object per group, loaded on use, state in the group's data."""

    def __init__(self, store: Store, cls: type[ReplicatedObject],
                 max_loaded_groups: int = DEFAULT_MAX_LOADED_GROUPS) -> None:
        super().__init__(store, max_loaded_groups=max_loaded_groups)
        if not (isinstance(cls, type) and issubclass(cls, ReplicatedObject)):
            raise TypeError("%r is not a ReplicatedObject subclass" % (cls,))
        self.cls = cls
        # group -> its object; at most max_loaded_groups, least recently used first
        self._objects: collections.OrderedDict[int, Any] = collections.OrderedDict()

    @staticmethod
    def _load(obj: Any, document: bytes) -> None:
        """Make `obj`'s public attributes exactly those of the state `document` (private ones stay)."""
        for name in [k for k in vars(obj) if not k.startswith("_")]:
            delattr(obj, name)
        vars(obj).update(json.loads(document))

    def _object(self, group: int) -> Any:
        obj = self._objects.get(group)
        if obj is not None:
            self._objects.move_to_end(group)
            return obj
        obj = self.cls()
        document = self.get(group, STATE_KEY)
        if document is not None:
            self._load(obj, document)
        self._objects[group] = obj
        while len(self._objects) > self.max_loaded_groups:
            self._objects.popitem(last=False)
        return obj

    def apply(self, group: int, instance: int, op: bytes) -> bytes:
        name, args, kwargs = _decode_call(op)
        if method_kind(self.cls, name) != "command":
            raise AttributeError("%s has no @replicated method %r" % (self.cls.__name__, name))
        obj = self._object(group)
        try:
            result = json.dumps(getattr(obj, name)(*args, **kwargs), separators=(",", ":"), sort_keys=True,
                                allow_nan=False).encode()
            document = _dump(obj)
        except BaseException:
            self._objects.pop(group, None)       # rebuilt from the previous document at its next use
            raise
        self.put(group, STATE_KEY, document)
        # The canonical state: exactly what a node that reloads the document holds.
        self._load(obj, document)
        return result

    def query(self, group: int, query: bytes) -> bytes:
        name, args, kwargs = _decode_call(query)
        if method_kind(self.cls, name) != "query":
            raise AttributeError("%s has no @query method %r" % (self.cls.__name__, name))
        obj = self._object(group)
        return json.dumps(getattr(obj, name)(*args, **kwargs), separators=(",", ":"), sort_keys=True,
                          allow_nan=False).encode()

    def random_command(self, rng: random.Random, group: int) -> bytes:
        name, args = self.cls().random_call(rng)
        return encode_call(name, args)

    def random_query(self, rng: random.Random, group: int) -> bytes | None:
        names = sorted(n for n in dir(self.cls) if method_kind(self.cls, n) == "query")
        return encode_call(rng.choice(names)) if names else None

    # The object cache follows the data: forgotten whenever the group's data is replaced or unloaded.
    def drop_group(self, group: int) -> None:
        self._objects.pop(group, None)
        super().drop_group(group)

    def restore(self, group: int, snapshot: bytes) -> None:
        self._objects.pop(group, None)
        super().restore(group, snapshot)

    def forget_cached(self, group: int) -> None:
        super().forget_cached(group)
        self._objects.pop(group, None)

    def unload_all(self) -> None:
        super().unload_all()
        if not self._pending and not self._drops:
            self._objects.clear()

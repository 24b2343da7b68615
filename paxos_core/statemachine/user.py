"""Your own state machine: subclass :class:`UserStateMachine` and write ``apply`` and ``query``.

    class Counter(UserStateMachine):
        def apply(self, group, instance, op):          # a command, chosen by Paxos: change state
            n = int(self.get(group, b"n") or b"0") + int(op)
            self.put(group, b"n", b"%d" % n)
            return b"%d" % n                            # the caller's result

        def query(self, group, query):                 # a read: never changes state
            return self.get(group, b"n") or b"0"

Run it with ``Node(config, state_machine="mypkg.counter:Counter")`` (or ``cluster.state_machine`` in the
node file); call it with ``node.sm.call(group, op)`` and ``node.sm.query(group, query)``.

What the base class does for you, the same as for the built-in key-value store (it shares the KV's code,
:class:`~paxos_core.statemachine.kv.SessionStateMachine`):

* exactly-once client sessions: a retried request gets its remembered result and is not applied again; a
  request of a forgotten session is refused (``SESSION_UNKNOWN``), an old one too (``STALE``), and the
  Client turns those into :class:`~paxos_core.errors.SessionExpired` / :class:`~paxos_core.errors.StaleRequest`;
* storage: your data is a per-group ordered map of bytes (``get``, ``put``, ``delete``, ``scan``) kept in the
  worker's RocksDB; every cycle's changes of every group, with the sessions and the applied mark, go to the
  store in ONE atomic write (``flush``), so after a crash your state, your sessions and the log always agree;
* snapshots (``snapshot``/``restore``) of your data and sessions, dropping a removed group, unloading idle
  groups: nothing to write;
* masters, leases, fencing and the three read modes are the replica layer's and work as for the KV.

The rules your code must keep (the simulator checks the first: ``paxos-core sim --state-machine``):

* ``apply`` is DETERMINISTIC: its result and its changes depend only on the group's data and the op. No
  clock, no randomness, no node id, no other group's data, no iteration over a ``set`` of strings (hash
  order changes between processes), no I/O. Time, if you need it, comes inside the op (the lock example).
* a command is atomic: ``apply`` that raises changes nothing, and its caller gets
  :class:`~paxos_core.errors.CommandError` with ``"<ExceptionType>: <message>"``; the session remembers that
  error, so a retry gets it again. Refusing a bad request by raising is therefore fine and deterministic.
* ``query`` only reads (``put``/``delete`` there raise); an exception becomes CommandError too.
* keys are at most 64 KiB; results and values are bytes.

One object per WORKER, not per group: the factory is called once in each worker process with that worker's
store and serves every group of the worker (``group`` is the first argument of everything). Idle groups
then cost nothing but their records in the store: no object, no memory (the base class unloads groups
beyond ``max_loaded_groups``). Keep no per-group state in attributes of your own, or keep it as a cache
that can be rebuilt from the store at any time (a group may be dropped, restored or reloaded).

Results on the wire use the KV's result bytes: ``0x80 | OK`` + your bytes, or ``0x80 | ERROR`` + the error
text (:func:`decode_user_result` reads them; the ``node.sm`` client does it for you).
"""
from __future__ import annotations

import random

from ..errors import CommandError, RecordCorrupt
from .base import ApplyOrderError, Command
from .kv import (
    _GET_OK,
    _MISSING,
    _SESSION,
    _U64,
    _U64_MAX,
    DEFAULT_MAX_LOADED_GROUPS,
    DEFAULT_MAX_SESSIONS,
    E_COMMAND,
    ERROR,
    MAX_KEY_BYTES,
    OK,
    R_SESSION_UNKNOWN,
    R_STALE,
    RETRY_FLAG,
    SEQ_MASK,
    SessionStateMachine,
    _encode_meta,
    _error,
    decode_result,
)
from .store import Store

MAX_ERROR_BYTES = 1024      # an error text is clipped to this (it is stored in the session record)


def _error_result(exc: BaseException) -> bytes:
    text = "%s: %s" % (type(exc).__name__, " ".join(str(exc).split()))
    return _error(text.encode("utf-8", "replace")[:MAX_ERROR_BYTES])


def decode_user_result(result: bytes) -> bytes:
    """Your result bytes from what the worker sent back; :class:`CommandError` if your code raised."""
    status, value = decode_result(result)
    if status == OK and value is not None:
        return value
    if status == ERROR:
        raise CommandError((value or b"").decode("utf-8", "replace"))
    raise RecordCorrupt("not a result of a user state machine (status %d)" % status)


class UserStateMachine(SessionStateMachine):
    """Base class of a state machine of your own. Override :meth:`apply` and :meth:`query`; see the module
    docstring. The constructor takes the worker's :class:`Store` (the factory is called with it)."""

    def __init__(self, store: Store, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 max_loaded_groups: int = DEFAULT_MAX_LOADED_GROUPS) -> None:
        super().__init__(store, max_sessions, max_loaded_groups)
        self._applying = None        # the _Group whose command runs now (None: outside apply)
        self._writes: dict[bytes, bytes | None] | None = None  # that command's changes (store key -> value)

    # ------------------------------------------------------------------ yours to write

    def apply(self, group: int, instance: int, op: bytes) -> bytes:
        """Apply one command of `group`, chosen at log position `instance`; return its result. Deterministic."""
        raise NotImplementedError("%s.apply is not written" % type(self).__name__)

    def query(self, group: int, query: bytes) -> bytes:
        """Answer a read of `group` from its data (``get``/``scan``), without changing it."""
        raise NotImplementedError("%s.query is not written: it serves no reads" % type(self).__name__)

    def random_command(self, rng: random.Random, group: int) -> bytes:
        """For the simulator (``paxos-core sim --state-machine``): a command its clients send, drawn from
        `rng` only. The default is a few random bytes (every command then exercises your error paths)."""
        return rng.randbytes(rng.randint(0, 12))

    def random_query(self, rng: random.Random, group: int) -> bytes | None:
        """For the simulator: a query its clients send, or None (the default): its clients then only write."""
        return None

    # ------------------------------------------------------------------ your data

    def get(self, group: int, key: bytes) -> bytes | None:
        """The value of `key` in `group` (this command's own changes included), or None."""
        g = self._data_group(group)
        skey = g.dprefix + _key(key)
        writes = self._writes
        if writes is not None:
            value = writes.get(skey, _MISSING)
            if value is not _MISSING:
                return value
        return self._data_get(g, skey)

    def put(self, group: int, key: bytes, value: bytes) -> None:
        """Set `key` of `group` to `value` (only inside ``apply``, only for its own group)."""
        self._write_group(group)[self._applying.dprefix + _key(key)] = _value(value)

    def delete(self, group: int, key: bytes) -> None:
        """Remove `key` of `group` (absent: nothing happens). Only inside ``apply``."""
        self._write_group(group)[self._applying.dprefix + _key(key)] = None

    def scan(self, group: int, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """Every ``(key, value)`` of `group` whose key starts with `prefix`, in key order (a list)."""
        g = self._data_group(group)
        full = g.dprefix + _key(prefix)
        items = dict(self._merged_scan(g, full))
        if self._writes:
            for key, value in self._writes.items():
                if key.startswith(full):
                    if value is None:
                        items.pop(key, None)
                    else:
                        items[key] = value
        cut = len(g.dprefix)
        return [(key[cut:], value) for key, value in sorted(items.items())]

    def _data_group(self, group):
        g = self._applying
        if g is not None:
            if group != g.group:
                # Another group's data is at another point of its own log on each node: not deterministic.
                raise ValueError("apply of group %d may only use group %d's data, not group %r's"
                                 % (g.group, g.group, group))
            return g
        return self._group(group)

    def _write_group(self, group):
        writes = self._writes
        if writes is None:
            raise RuntimeError("put and delete are for apply only (query and other code must not change state)")
        self._data_group(group)
        return writes

    # ------------------------------------------------------------------ StateMachine

    def apply_batch(self, group: int, batch: list[tuple[int, list[Command]]]) -> list[list[bytes]]:
        g = self._group(group)
        if not batch:
            return []
        nxt = g.applied_next
        for entry in batch:
            if entry[0] != nxt:
                raise ApplyOrderError("group %d: expected instance %d, got %r (batch starts at %r)"
                                      % (g.group, nxt, entry[0], batch[0][0]))
            nxt += 1
        out = []
        for instance, commands in batch:
            results: list[bytes] = []
            order = instance << 32
            for cmd in commands:
                results.append(self._command(g, instance, order, cmd))
                order += 1
            out.append(results)
        g.applied_next = nxt
        self._pending[g.mkey] = _encode_meta(nxt, g.half)
        return out

    def _command(self, g, instance, order, cmd):
        """One command through the session rules (the KV's, kv.py's module docstring) and then ``apply``."""
        try:
            cid, seq, op = cmd
        except (TypeError, ValueError):
            return E_COMMAND
        if type(op) is not bytes:
            if not isinstance(op, (bytearray, memoryview)):
                return E_COMMAND
            op = bytes(op)
        session = None
        if cid:
            if type(cid) is not int or type(seq) is not int or not (0 < cid <= _U64_MAX and 0 <= seq <= _U64_MAX):
                return E_COMMAND
            retry = seq & RETRY_FLAG
            seq &= SEQ_MASK
            session = g.sessions.get(cid)
            if session is None:
                if retry or seq > 1:
                    return R_SESSION_UNKNOWN
            elif seq == session[1]:
                return self._retry(g, cid, session, order)
            elif seq < session[1]:
                return R_STALE
        self._applying = g
        self._writes = writes = {}
        try:
            value = self.apply(g.group, instance, op)
            if type(value) is not bytes:
                if not isinstance(value, (bytearray, memoryview)):
                    raise TypeError("%s.apply returned %s, not bytes" % (type(self).__name__, type(value).__name__))
                value = bytes(value)
            result = _GET_OK + value
            self._pending.update(writes)
        except Exception as exc:        # the command changes nothing; its error is its result
            result = _error_result(exc)
        finally:
            self._applying = None
            self._writes = None
        if cid:
            if session is None:
                session = g.sessions[cid] = [order, seq, g.sprefix + _U64.pack(cid)]
                if len(g.sessions) > self.max_sessions:
                    self._evict(g)
            else:
                session[0] = order
                session[1] = seq
            if g.heap is not None:
                self._push(g, order, cid)
            self._pending[session[2]] = _SESSION.pack(instance, order & 0xFFFFFFFF, seq) + result
        return result

    def read(self, group: int, query: bytes) -> bytes:
        if type(query) is not bytes:
            query = bytes(query)
        try:
            value = self.query(group, query)
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError("%s.query returned %s, not bytes" % (type(self).__name__, type(value).__name__))
            return _GET_OK + bytes(value)
        except Exception as exc:
            return _error_result(exc)


def _key(key):
    if type(key) is not bytes:
        if not isinstance(key, (bytearray, memoryview)):
            raise TypeError("a key must be bytes, not %s" % type(key).__name__)
        key = bytes(key)
    if len(key) > MAX_KEY_BYTES:
        raise ValueError("a key of %d bytes is longer than %d" % (len(key), MAX_KEY_BYTES))
    return key


def _value(value):
    if type(value) is bytes:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError("a value must be bytes, not %s" % type(value).__name__)



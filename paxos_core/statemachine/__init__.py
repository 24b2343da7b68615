"""State machines replicated by Paxos, and the storage they write through.

* :mod:`.base`: the :class:`StateMachine` interface and the :data:`Command` tuple;
* :mod:`.store`: :class:`Store`, :class:`MemoryStore`, :class:`RocksStore`, :func:`open_rocks_with_sm`;
* :mod:`.kv`: :class:`KVStateMachine`, the replicated key-value store, with its client-side encoders, on
  :class:`SessionStateMachine` (keyed data, exactly-once sessions, one store write per cycle);
* :mod:`.user`: :class:`UserStateMachine`, the base class of a state machine of your own;
* :mod:`.objects`: :class:`ReplicatedObject` with ``@replicated`` / ``@query`` methods (PySyncObj style);
* :mod:`.loader`: a factory found by its import path ("package.module:Factory"), in each worker.
"""
from .base import ApplyOrderError, Command, StateMachine
from .kv import (
    CAS_FAILED,
    ERROR,
    NOT_FOUND,
    OK,
    STALE,
    KVResult,
    KVStateMachine,
    SessionStateMachine,
    decode_result,
    encode_cas,
    encode_delete,
    encode_get,
    encode_put,
)
from .objects import ObjectStateMachine, ReplicatedObject, query, replicated
from .store import SM_COLUMN_FAMILY, MemoryStore, RocksStore, Store, open_rocks_with_sm
from .user import UserStateMachine, decode_user_result

__all__ = [
    "ApplyOrderError",
    "Command",
    "StateMachine",
    "CAS_FAILED",
    "ERROR",
    "NOT_FOUND",
    "OK",
    "STALE",
    "KVResult",
    "KVStateMachine",
    "SessionStateMachine",
    "UserStateMachine",
    "decode_user_result",
    "ObjectStateMachine",
    "ReplicatedObject",
    "query",
    "replicated",
    "decode_result",
    "encode_cas",
    "encode_delete",
    "encode_get",
    "encode_put",
    "SM_COLUMN_FAMILY",
    "MemoryStore",
    "RocksStore",
    "Store",
    "open_rocks_with_sm",
]

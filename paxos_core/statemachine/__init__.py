"""State machines replicated by Paxos, and the storage they write through.

* :mod:`.base`: the :class:`StateMachine` interface and the :data:`Command` tuple;
* :mod:`.store`: :class:`Store`, :class:`MemoryStore`, :class:`RocksStore`, :func:`open_rocks_with_sm`;
* :mod:`.kv`: :class:`KVStateMachine`, the replicated key-value store, with its client-side encoders.
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
    decode_result,
    encode_cas,
    encode_delete,
    encode_get,
    encode_put,
)
from .store import SM_COLUMN_FAMILY, MemoryStore, RocksStore, Store, open_rocks_with_sm

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

"""paxos-core: Multi-Paxos for Python."""
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    BadRequest,
    CommandError,
    ConfigError,
    EpochConflict,
    FrameChecksumError,
    FrameError,
    FrameTooLarge,
    FrameTruncated,
    GroupStopped,
    LearnerNotReady,
    MalformedFrame,
    MembershipError,
    NotMaster,
    Overloaded,
    PaxosError,
    ProposalError,
    RecordCorrupt,
    SessionExpired,
    StartError,
    StaleRequest,
    Timeout,
    UnknownGroupError,
    UnknownVersion,
    ValueTooLarge,
    WouldLoseQuorum,
    WrongCluster,
)

if TYPE_CHECKING:       # what the lazy names below are, for type checkers
    from .client import Client, ProposeResult
    from .kv import KV
    from .node import Node
    from .statemachine import kv as kv_ops
    from .service import ObjectProxy, StateMachineClient
    from .statemachine.kv import KVResult
    from .statemachine.objects import ReplicatedObject, query, replicated
    from .statemachine.user import UserStateMachine, decode_user_result


def __getattr__(name: str) -> Any:
    # The runtime pulls in ZeroMQ and RocksDB: import it only when asked for.
    if name == "Node":
        from .node import Node
        return Node
    if name in ("Client", "ProposeResult"):
        from . import client
        return getattr(client, name)
    if name == "KV":
        from .kv import KV
        return KV
    if name == "KVResult":
        from .statemachine.kv import KVResult
        return KVResult
    if name in ("UserStateMachine", "decode_user_result"):
        from .statemachine import user
        return getattr(user, name)
    if name in ("ReplicatedObject", "replicated", "query"):
        from .statemachine import objects
        return getattr(objects, name)
    if name in ("StateMachineClient", "ObjectProxy"):
        from . import service
        return getattr(service, name)
    if name == "kv_ops":
        from .statemachine import kv as kv_ops
        return kv_ops
    raise AttributeError(name)


__all__ = [
    "Node",
    "Client",
    "KV",
    "ProposeResult",
    "KVResult",
    "kv_ops",
    "UserStateMachine",
    "decode_user_result",
    "ReplicatedObject",
    "replicated",
    "query",
    "StateMachineClient",
    "ObjectProxy",
    "__version__",
    "BadRequest",
    "CommandError",
    "ConfigError",
    "EpochConflict",
    "FrameChecksumError",
    "FrameError",
    "FrameTooLarge",
    "FrameTruncated",
    "GroupStopped",
    "LearnerNotReady",
    "MalformedFrame",
    "MembershipError",
    "NotMaster",
    "Overloaded",
    "PaxosError",
    "ProposalError",
    "RecordCorrupt",
    "SessionExpired",
    "StartError",
    "StaleRequest",
    "Timeout",
    "UnknownGroupError",
    "UnknownVersion",
    "ValueTooLarge",
    "WouldLoseQuorum",
    "WrongCluster",
]

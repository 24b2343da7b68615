"""paxos-core: Multi-Paxos for Python."""
from ._version import __version__
from .errors import (
    ConfigError,
    FrameError,
    GroupStopped,
    NotMaster,
    Overloaded,
    PaxosError,
    StartError,
    Timeout,
    ValueTooLarge,
)



def __getattr__(name):
    # The runtime pulls in ZeroMQ and RocksDB: import it only when asked for.
    if name == "Node":
        from .node import Node
        return Node
    if name == "Client":
        from .client import Client
        return Client
    if name == "KV":
        from .kv import KV
        return KV
    if name == "kv_ops":
        from .statemachine import kv as kv_ops
        return kv_ops
    raise AttributeError(name)


__all__ = [
    "Node",
    "Client",
    "KV",
    "__version__",
    "ConfigError",
    "FrameError",
    "GroupStopped",
    "NotMaster",
    "Overloaded",
    "PaxosError",
    "StartError",
    "Timeout",
    "ValueTooLarge",
]

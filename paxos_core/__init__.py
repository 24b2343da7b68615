"""paxos-core: Multi-Paxos for Python."""
from ._version import __version__
from .errors import (
    ConfigError,
    FrameError,
    GroupStopped,
    NotMaster,
    Overloaded,
    PaxosError,
    Timeout,
    ValueTooLarge,
)

__all__ = [
    "__version__",
    "ConfigError",
    "FrameError",
    "GroupStopped",
    "NotMaster",
    "Overloaded",
    "PaxosError",
    "Timeout",
    "ValueTooLarge",
]

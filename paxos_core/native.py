"""Which modules are compiled, and a check that the compiled ones really loaded."""
import importlib
import importlib.machinery

# Every module paxos-core builds with Cython. `paxos-core info` and the tests read this list.
NATIVE_MODULES = (
    "paxos_core.wire.checksum",
    "paxos_core.wire.message",
    "paxos_core.wire.codec",
    "paxos_core.storage.records",
    "paxos_core.storage.log",
    "paxos_core.core.ballot",
    "paxos_core.core.acceptor",
    "paxos_core.core.proposer",
    "paxos_core.core.learner",
    "paxos_core.core.voters",
    "paxos_core.core.engine",
)


def module_status(name):
    """(name, compiled?, file) for one native module."""
    module = importlib.import_module(name)
    path = getattr(module, "__file__", "") or ""
    compiled = path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    return name, compiled, path


def all_status():
    return [module_status(name) for name in NATIVE_MODULES]


def require_compiled():
    """Raise ImportError unless every native module is the compiled extension."""
    missing = [name for name, compiled, _ in all_status() if not compiled]
    if missing:
        raise ImportError("paxos-core native modules are not compiled: " + ", ".join(missing))

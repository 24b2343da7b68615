"""Finding a state machine by its import path, ``"package.module:Factory"``, in a worker process.

Workers are spawned processes, so a state machine is named, not passed: each worker imports the module and
calls the factory ONCE, with its :class:`~paxos_core.statemachine.store.Store`; that one object serves
every group of the worker. The factory may be

* a :class:`~paxos_core.statemachine.base.StateMachine` subclass, or any callable ``factory(store)`` that
  returns a StateMachine (a :class:`~paxos_core.statemachine.user.UserStateMachine` subclass is the usual);
* a :class:`~paxos_core.statemachine.objects.ReplicatedObject` subclass: it is served by
  :class:`~paxos_core.statemachine.objects.ObjectStateMachine`.

Every failure (no such module, no such attribute, not callable, the factory raising or returning something
else, an import that raises) is a :class:`~paxos_core.errors.ConfigError` of one line naming the path: the
worker reports it and the node does not start (``StartError``), with no traceback.

Where the module is found: the worker's own ``sys.path`` (installed packages, ``PYTHONPATH``), then the
entries of ``PAXOS_CORE_SYS_PATH``, which the supervisor sets to the ``sys.path`` of the process that starts
the node (as ``multiprocessing``'s spawn does): a module your program can import, its workers can import.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable

from ..errors import ConfigError
from .base import StateMachine

SYS_PATH_ENV = "PAXOS_CORE_SYS_PATH"


def parent_sys_path() -> str:
    """The value of PAXOS_CORE_SYS_PATH for a child of this process: its sys.path, as absolute paths."""
    return os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path)


def _extend_sys_path() -> None:
    for entry in os.environ.get(SYS_PATH_ENV, "").split(os.pathsep):
        # Appended, never first: the worker's paxos_core (spawn.py) and its packages keep precedence.
        if entry and entry not in sys.path:
            sys.path.append(entry)


def resolve(spec: str) -> Any:
    """The object ``spec`` ("package.module:Name[.attr]") names. ConfigError (one line) if there is none."""
    from ..config import state_machine_spec_problem

    problem = state_machine_spec_problem(spec)
    if problem:
        raise ConfigError("state machine %r: %s" % (spec, problem))
    module_name, _, attr_path = spec.partition(":")
    _extend_sys_path()
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError("state machine %r: no module named %r (is it installed or on PYTHONPATH?)"
                          % (spec, exc.name or module_name)) from None
    except Exception as exc:
        raise ConfigError("state machine %r: importing %s raised %s: %s" % (
            spec, module_name, type(exc).__name__, " ".join(str(exc).split()))) from None
    for name in attr_path.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise ConfigError("state machine %r: %s has no attribute %r" % (spec, module_name, name)) from None
    if not callable(obj):
        raise ConfigError("state machine %r: is a %s, not a class or factory function" % (spec, type(obj).__name__))
    return obj


def factory_for(spec: str) -> Callable[[Any], StateMachine]:
    """``factory(store) -> StateMachine`` for ``spec``; resolved now (ConfigError), called later by the loop.

    The factory's own failure, or a result that is not a StateMachine, is a ConfigError of one line too."""
    from .objects import ObjectStateMachine, ReplicatedObject

    target = resolve(spec)
    if isinstance(target, type) and issubclass(target, ReplicatedObject):
        cls = target

        def make(store):
            return ObjectStateMachine(store, cls)
    else:
        make = target

    def build(store):
        try:
            sm = make(store)
        except Exception as exc:
            raise ConfigError("state machine %r: the factory raised %s: %s" % (
                spec, type(exc).__name__, " ".join(str(exc).split())[:300])) from None
        if not isinstance(sm, StateMachine):
            raise ConfigError("state machine %r: the factory returned a %s, not a paxos_core StateMachine "
                              "(subclass paxos_core.statemachine.user.UserStateMachine)" % (spec, type(sm).__name__))
        return sm
    return build

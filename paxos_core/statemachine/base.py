"""The state-machine interface: what the runtime applies chosen values to.

A state machine holds deterministic state replicated by Paxos. The runtime hands it, group by group, the
commands of every chosen instance in instance order; every node applies the same commands in the same order
and must reach the same state and produce the same results. Groups are independent of each other.

A command is the tuple ``(client_id, request_seq, op)``: two unsigned 64-bit integers naming the client
session and the request within it (``client_id`` 0: no session), and the operation bytes the client sent.
Instances that carry no client commands (no-ops, system entries) still advance ``applied_next``: they reach
``apply_batch`` with an empty command list.

Writes go through a :class:`paxos_core.statemachine.store.Store`. ``flush()`` is called once per runtime
cycle and hands that cycle's changes to the store as ONE atomic write (so the group's data, its sessions and
its ``applied_next`` mark always agree on disk); until then changes live in memory, and every read and
apply sees them.
"""
from __future__ import annotations

import abc

from ..errors import PaxosError

#: ``(client_id: int u64, request_seq: int u64, op: bytes)``
Command = tuple[int, int, bytes]


class ApplyOrderError(PaxosError, ValueError):
    """``apply_batch`` was given instances that do not continue at ``applied_next`` one by one.

    That is a bug in the caller (not bad client input); nothing was applied.
    """


class StateMachine(abc.ABC):
    """Deterministic state replicated by Paxos.

    Every node applies the same commands in the same order and must reach the same state and results.
    ``apply_batch`` never raises on bad client input: a malformed op gets an error result, the same on every
    node. Per-group state is independent.
    """

    @abc.abstractmethod
    def applied_next(self, group: int) -> int:
        """Instances below this are applied (0 for a group never seen)."""

    @abc.abstractmethod
    def apply_batch(self, group: int, batch: list[tuple[int, list[Command]]]) -> list[list[bytes]]:
        """Apply ``[(instance, [Command, ...]), ...]``.

        Instances are consecutive, starting at ``applied_next(group)`` (else :class:`ApplyOrderError` and
        nothing changes). Returns ``[[result bytes per command] per instance]``; afterwards
        ``applied_next(group)`` is the last instance + 1.
        """

    @abc.abstractmethod
    def read(self, group: int, query: bytes) -> bytes:
        """A local read of the applied state (no log involved); returns an encoded result."""

    @abc.abstractmethod
    def snapshot(self, group: int) -> bytes:
        """Everything of the group (state, ``applied_next``, client sessions) as self-checking bytes."""

    @abc.abstractmethod
    def restore(self, group: int, snapshot: bytes) -> None:
        """Replace the group's state by a snapshot. A damaged snapshot raises and changes nothing."""

    @abc.abstractmethod
    def drop_group(self, group: int) -> None:
        """Forget everything of the group (``applied_next`` returns to 0)."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Hand this cycle's changes, of all groups, to the store as ONE atomic write."""

    def unload_all(self) -> None:
        """The worker has gone idle: drop whatever per-group state is kept in memory only as a cache (all of it
        is in the store after ``flush``), so that idle groups cost no Python objects. Optional."""

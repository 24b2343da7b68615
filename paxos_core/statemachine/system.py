"""The state machine of a worker that hosts the system group: the cluster's own state machine for every data
group, and the membership table (statemachine/membership.py) for the system group (core/config.py's
SYSTEM_GROUP), over the one store of the worker.

Both keep their records under the group's id (the layout of statemachine/kv.py), so they share the store
without meeting, and both write through the same StagedStore: a cycle's changes of both still reach RocksDB in
ONE write. Everything the runtime calls with a group goes to the state machine of that group; ``flush`` and
``unload_all`` go to both. The runtime sees one state machine, as on the other workers, so the applier,
snapshots, retention and reads need nothing of their own for the system group.
"""
from __future__ import annotations

from ..core.config import SYSTEM_GROUP
from .base import StateMachine
from .membership import MembershipStateMachine


class WithSystemGroup(StateMachine):
    """`data` (the cluster's state machine) for the data groups, `system` (the membership table) for the
    system group."""

    def __init__(self, data: StateMachine, system: MembershipStateMachine):
        self.data = data
        self.system = system

    def _of(self, group: int):
        return self.system if group == SYSTEM_GROUP else self.data

    # ------------------------------------------------------------------ the StateMachine interface
    def applied_next(self, group):
        return self._of(group).applied_next(group)

    def apply_batch(self, group, batch):
        return self._of(group).apply_batch(group, batch)

    def read(self, group, query):
        return self._of(group).read(group, query)

    def snapshot(self, group):
        return self._of(group).snapshot(group)

    def restore(self, group, snapshot):
        self._of(group).restore(group, snapshot)

    def drop_group(self, group):
        self._of(group).drop_group(group)

    def flush(self):
        self.system.flush()
        self.data.flush()

    def unload_all(self):
        self.system.unload_all()
        self.data.unload_all()

    def loaded_groups(self):
        loaded = getattr(self.data, "loaded_groups", None)
        return (loaded() if loaded else []) + [g for g in self.system.loaded_groups() if g == SYSTEM_GROUP]

    # ------------------------------------------------------------------ checkpoints (statemachine/kv.py)
    def inactive_half(self, group):
        return self._of(group).inactive_half(group)

    def checkpoint_applied(self, view, group):
        return self._of(group).checkpoint_applied(view, group)

    def checkpoint_entries(self, view, group, after=None):
        return self._of(group).checkpoint_entries(view, group, after)

    def staged_entries(self, view, group, half):
        return self._of(group).staged_entries(view, group, half)

    def clear_half_ops(self, group, half):
        return self._of(group).clear_half_ops(group, half)

    def stage_ops(self, group, half, entries):
        return self._of(group).stage_ops(group, half, entries)

    def swap_ops(self, group, applied_next, half):
        return self._of(group).swap_ops(group, applied_next, half)

    def forget_cached(self, group):
        self._of(group).forget_cached(group)

    # ------------------------------------------------------------------ the table, for this worker's driver
    def membership_table(self) -> dict:
        """The applied node table of the system group (see MembershipStateMachine.table)."""
        return self.system.table(SYSTEM_GROUP)

"""Changing the cluster's members from a client: ``client.membership`` (issue 14; docs/architecture.md,
"The system group").

    m = client.membership
    m.table()                          # epoch, alpha, nodes (id, role, address, key), voters, learners
    change = m.remove(3)               # a removal against the epoch just read (compare-and-set)
    change.wait(timeout=60)            # until every group on every reachable node votes on the new voters
    m.status()                         # the table, and how far each node and worker is in adopting it

    change = await m.remove_async(3)   # from asyncio: every call has an ``_async`` twin (run in a thread,
    await change.wait_async(60)        # so the event loop is never blocked), Change.wait/progress too

Every change is a command to the system group, which orders them in epochs; it needs the cluster's
credentials (a client made with a member's key, as ``Client.from_config`` and the CLI are). Each is
idempotent: run again after its driver died, a change whose outcome already holds returns ``changed=False``
and changes nothing. ``expect=`` (default: the epoch read just before) makes it compare-and-set: of two
changes made against one epoch, exactly one is applied and the other raises :class:`EpochConflict`.

Before proposing, a change is checked against what the nodes report (``force=True`` skips it):

* promote / replace: the learner answers and is caught up: it holds every group the other members hold,
  and every worker knows the table's epoch, rebuilds nothing and lags at most ``max_lag`` instances (else
  :class:`LearnerNotReady`). Groups added while the cluster ran that it lacks (a node that joins gets its node
  file's groups only) are added there first, and it learns them like any group it rebuilds;
* remove / replace / promote: the voters after the change that answer (and, but for the one promoted, vote
  now) are a majority of them (else :class:`WouldLoseQuorum`).
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import errors
from .core.config import SYSTEM_GROUP
from .statemachine.membership import EPOCH_CONFLICT, encode_change
from .statemachine.user import decode_user_result

if TYPE_CHECKING:
    from .client import Client

DEFAULT_MAX_LAG = 1000          # instances a learner may lag (its largest group) and still count as caught up


def client_endpoints(row: dict[str, Any], workers: int) -> list[str]:
    """The client endpoints of a node of the membership table (a row of ``table()["nodes"]``)."""
    from .config import NodeAddress

    address = NodeAddress(row["id"], row["host"], row["peer_port"], row["client_port"])
    return [address.client_endpoint(w) for w in range(workers)]


@dataclass
class Change:
    """A membership change as the system group decided it, and a way to follow it."""

    op: str
    epoch: int                  # the table's epoch after it
    changed: bool               # False: its outcome held already (run again), nothing changed
    node: int | None = None     # the node added, promoted, removed, or updated (replace: the new voter)
    membership: Any = field(default=None, repr=False)

    def progress(self, timeout: float = 5.0) -> dict[str, Any]:
        """How far the cluster is in adopting the epoch (see Membership.progress)."""
        return self.membership.progress(self.epoch, timeout)

    def wait(self, timeout: float = 60.0, interval: float = 0.2) -> dict[str, Any]:
        """Until every reachable node's every worker knows the epoch and every group it hosts votes on the
        epoch's voters; Timeout if that takes longer than `timeout` seconds. Returns the last progress."""
        deadline = time.monotonic() + timeout
        progress = None
        while True:
            try:
                progress = self.progress(min(5.0, max(0.5, deadline - time.monotonic())))
            except errors.Timeout:
                # One poll unanswered (the system group's table read, the nodes busy adopting: 100,000 groups
                # on one host) says nothing about the change: asked again until the deadline.
                pass
            else:
                if progress["done"]:
                    return progress
            if time.monotonic() >= deadline:
                raise errors.Timeout("epoch %d: not every group adopted it within %.0f s: %s"
                                     % (self.epoch, timeout, "no answer to the last poll" if progress is None
                                        else progress["waiting"][:10]))
            time.sleep(interval)

    async def progress_async(self, timeout: float = 5.0) -> dict[str, Any]:
        """Awaitable :meth:`progress` (run in a thread: the event loop is not blocked)."""
        return await asyncio.to_thread(self.progress, timeout)

    async def wait_async(self, timeout: float = 60.0, interval: float = 0.2) -> dict[str, Any]:
        """Awaitable :meth:`wait` (run in a thread)."""
        return await asyncio.to_thread(self.wait, timeout, interval)


class Membership:
    """The cluster's membership through one Client (``client.membership``)."""

    def __init__(self, client: Client, max_lag: int = DEFAULT_MAX_LAG):
        self.client = client
        self.max_lag = max_lag

    # ------------------------------------------------------------------ reading
    def table(self, timeout: float = 5.0) -> dict[str, Any]:
        """The membership table, read through the system group's log (linearizable)."""
        raw = self.client.read(SYSTEM_GROUP, b"table", "linearizable", timeout)
        return json.loads(decode_user_result(raw))

    def history(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Every epoch, oldest first: its voters, learners and the change that made it."""
        raw = self.client.read(SYSTEM_GROUP, b"history", "linearizable", timeout)
        return json.loads(decode_user_result(raw))

    def _rows(self, timeout, table):
        """{node: [worker status rows]} of the table's members and the client's nodes that answer (the client
        learns the addresses of those it does not know: nodes that joined after its node files were written);
        a node that does not answer is left out, and a node the table removed is not asked (it has left:
        waiting for its answer made every progress call after a removal take the whole timeout)."""
        out = {}
        removed = {n["id"] for n in table["nodes"] if n["role"] == "removed"}
        asked = set(self.client._learn_members(table)) | {n for n in self.client.nodes if n not in removed}
        for row in self.client._status_of(sorted(asked), timeout):
            if "error" not in row:
                out.setdefault(row["node"], []).append(row)
        return out

    @staticmethod
    def _missing(node, rows):
        """The groups added while the cluster ran (beyond the node files') that some member answering holds and
        `node` does not: a node that joins gets its node file's groups only (worker.py `added_groups`)."""
        def held(node_rows):
            return {g for r in node_rows for g in r.get("added_groups", ())}

        wanted = set().union(*(held(node_rows) for other, node_rows in rows.items() if other != node))
        return sorted(wanted - held(rows.get(node, ())))

    def progress(self, epoch: int, timeout: float = 5.0) -> dict[str, Any]:
        """How far the nodes are in adopting `epoch`: per node and worker, the epoch it knows and how many of its
        groups still vote on other voters; ``done`` once every node that answers is there (nodes the table
        removed excepted), and ``waiting`` lists who is not."""
        table = self.table(timeout)
        voters = table["voters"]
        rows = self._rows(timeout, table)        # never a node the table removed
        waiting, workers = [], []
        for node, node_rows in sorted(rows.items()):
            for row in node_rows:
                m = row.get("membership", {})
                placements = table.get("placements", {})
                behind = [g["group"] for g in row.get("group_detail", ())
                          if g.get("config", {}).get("latest_voters") not in (None, placements.get(str(g["group"]),
                                                                                               voters))]
                entry = {"node": node, "worker": row["worker"], "epoch": m.get("epoch", 0),
                         "groups_to_check": m.get("groups_to_check", 0), "groups_adopting": m.get("groups_adopting", 0),
                         "groups_behind": behind}
                workers.append(entry)
                # Behind: it does not know the epoch yet, or (the epoch still being the newest) some of its groups
                # have not adopted its voters. Once a newer epoch came, those groups adopt that one instead.
                adopting = entry["groups_to_check"] or entry["groups_adopting"]
                if entry["epoch"] < epoch or (adopting and table["epoch"] == epoch):
                    waiting.append(entry)
        silent = sorted(n["id"] for n in table["nodes"] if n["role"] != "removed" and n["id"] not in rows)
        return {"epoch": epoch, "table_epoch": table["epoch"], "voters": voters, "workers": workers,
                "waiting": waiting, "silent": silent, "done": not waiting}

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The table, each node's state as it reports it (answers, epoch known, lag, rebuilding), and the
        node file's member list where it differs from the table."""
        table = self.table(timeout)
        rows = self._rows(timeout, table)
        nodes = []
        for n in table["nodes"]:
            node_rows = rows.get(n["id"], [])
            nodes.append(dict(n, answers=bool(node_rows), ready=self._ready(n["id"], table, rows),
                              groups_missing=self._missing(n["id"], rows) if node_rows else [],
                              epoch_known=min((r.get("membership", {}).get("epoch", 0) for r in node_rows), default=0),
                              max_lag=max((r.get("max_lag", 0) for r in node_rows), default=None),
                              repairing=sum(r.get("repairing", 0) for r in node_rows)))
        per_node = self.groups_per_node(self.client.groups or 0, timeout) if self.client.groups else {}
        for n in nodes:
            n["groups_voting"] = per_node.get(n["id"], 0)
        in_file = sorted(self.client.nodes)
        in_table = sorted(n["id"] for n in table["nodes"] if n["role"] != "removed")
        return {"epoch": table["epoch"], "alpha": table["alpha"], "voters": table["voters"],
                "learners": table["learners"], "nodes": nodes,
                "mismatch": None if in_file == in_table else {"node_files": in_file, "table": in_table}}

    def _ready(self, node, table, rows):
        """The node answers, holds every group the other members hold, and every worker knows the table's epoch,
        rebuilds nothing and lags at most max_lag instances."""
        node_rows = rows.get(node)
        if not node_rows or len(node_rows) < self.client.workers or self._missing(node, rows):
            return False
        return all(r.get("membership", {}).get("epoch", 0) >= table["epoch"] and not r.get("repairing", 0)
                   and r.get("max_lag", 0) <= self.max_lag for r in node_rows)

    # ------------------------------------------------------------------ changing
    def add(self, host: str, peer_port: int, client_port: int, public_key: str, replaces: int | None = None,
            expect: int | None = None, timeout: float = 10.0) -> Change:
        """A new node, as a learner (it gets a new id, never used before: ``Change.node``). `replaces`: a dead
        voter whose address the new node takes (then ``replace`` it)."""
        fields = dict(host=host, peer_port=peer_port, client_port=client_port, public_key=public_key)
        if replaces:
            fields["replaces"] = replaces
        return self._change("add", expect, timeout, **fields)

    def promote(self, node: int, expect: int | None = None, force: bool = False, timeout: float = 10.0) -> Change:
        """Learner `node` becomes a voter."""
        return self._change("promote", expect, timeout, force=force, joining=node, id=node)

    def remove(self, node: int, expect: int | None = None, force: bool = False, timeout: float = 10.0) -> Change:
        """`node` (voter or learner) leaves the cluster for good (its id is never used again)."""
        return self._change("remove", expect, timeout, force=force, leaving=node, id=node)

    def replace(self, old: int, new: int, expect: int | None = None, force: bool = False,
                timeout: float = 10.0) -> Change:
        """In one epoch, voter `old` is removed and learner `new` becomes a voter."""
        return self._change("swap", expect, timeout, force=force, joining=new, leaving=old, old=old, new=new)

    def place(self, group: int, voters, expect: int | None = None, timeout: float = 10.0) -> Change:
        """Group `group` votes on `voters` (1 to 7 of the cluster's nodes) from now on, not on the cluster's
        voters (None: on the cluster's again). Every node still holds the group: the others learn it."""
        voters = None if voters is None else sorted(int(v) for v in voters)
        if voters is not None:
            table = self.table(timeout)
            rows = self._rows(timeout, table)
            live = [v for v in voters if self._ready(v, table, rows)]
            if len(live) < len(voters) // 2 + 1:
                raise errors.WouldLoseQuorum("group %d on %s: only %s answer and are caught up, not a majority; "
                                             "nothing was changed" % (group, voters, live))
        return self._change("place", expect, timeout, group=group, voters=voters)

    def groups_per_node(self, groups: int, timeout: float = 5.0) -> dict[int, int]:
        """How many of groups 0 .. `groups` - 1 each node votes in (placed ones by their placement, the others on
        the cluster's voters)."""
        table = self.table(timeout)
        placements = {int(g): v for g, v in table.get("placements", {}).items() if int(g) < groups}
        counts = {n["id"]: 0 for n in table["nodes"] if n["role"] != "removed"}
        for voters in placements.values():
            for v in voters:
                counts[v] = counts.get(v, 0) + 1
        for v in table["voters"]:
            counts[v] = counts.get(v, 0) + groups - len(placements)
        return counts

    def update(self, node: int, host: str, peer_port: int, client_port: int, expect: int | None = None,
               timeout: float = 10.0) -> Change:
        """`node` moved to another address (every node connects to it there)."""
        return self._change("update", expect, timeout, id=node, host=host, peer_port=peer_port,
                            client_port=client_port)

    def _change(self, op, expect, timeout, force=False, joining=None, leaving=None, **fields):
        table = self.table(timeout)
        if expect is None:
            expect = table["epoch"]
        # Against an epoch the table has passed, the change is refused (EpochConflict) or found made already: it
        # changes nothing, so the nodes are not asked whether it would be safe. Asked, a node that had not yet
        # learned the newer epoch made a change that was bound to conflict fail with WouldLoseQuorum instead
        # (CI run of 11c2d68: two removals against one epoch, the second read the table after the first).
        passed = expect < table["epoch"]
        if not force and not passed and (joining is not None or leaving is not None):
            self._check(table, joining, leaving, timeout)
        command = encode_change(op, expect, **fields)
        deadline = time.monotonic() + timeout
        while True:
            # A change is idempotent (its outcome holding already is "unchanged", checked before the epoch), so
            # one whose outcome is unknown (a Timeout; SessionExpired: a slow first attempt re-sent) is proposed
            # again, until `timeout`: under faults the system group's first attempt is often slower than the
            # client's attempt timeout (nemesis seed 2).
            try:
                raw = self.client.propose(SYSTEM_GROUP, command, timeout=max(1.0, deadline - time.monotonic())).result
                break
            except errors.Timeout:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
        result = json.loads(decode_user_result(raw))
        if not result["ok"]:
            kind = errors.EpochConflict if result["error"] == EPOCH_CONFLICT else errors.MembershipError
            exc = kind("%s: %s" % (result["error"], result["message"]))
            exc.epoch = result.get("epoch", 0)
            raise exc
        return Change(op, result["epoch"], result["changed"], result.get("id"), self)

    def _check(self, table, new, gone, timeout):
        """LearnerNotReady / WouldLoseQuorum, from what the nodes report now (the module docstring)."""
        roles = {n["id"]: n["role"] for n in table["nodes"]}
        voters = set(table["voters"])
        if new is not None and roles.get(new) == "voter" and gone is None:
            return                                          # promoted already: the command is a no-op
        if gone is not None and roles.get(gone) == "removed":
            return                                          # removed already
        rows = self._rows(timeout, table)
        missing = self._missing(new, rows) if new is not None and new in rows else []
        if roles.get(new) == "learner" and missing:
            # Groups added after its node file was written: put them there now (it learns them before it votes,
            # as every node that joins does); the operator promotes it once it has caught up.
            for group in missing:
                self.client._add_to_learner(group, new, timeout)
            raise errors.LearnerNotReady("node %d did not hold group(s) %s, which the other members hold (added "
                                         "while the cluster ran): they were added there now, and it learns them; "
                                         "run the change again once it caught up (status shows where it is); "
                                         "nothing else was changed" % (new, ", ".join(map(str, missing))))
        if new is not None and roles.get(new) == "learner" and not self._ready(new, table, rows):
            raise errors.LearnerNotReady("node %d is not caught up: it must answer, know epoch %d, rebuild nothing "
                                         "and lag at most %d instances (status shows where it is); nothing was "
                                         "changed" % (new, table["epoch"], self.max_lag))
        after = (voters | ({new} if new is not None else set())) - ({gone} if gone is not None else set())
        live = {v for v in after if self._ready(v, table, rows)}
        if len(live) < len(after) // 2 + 1:
            raise errors.WouldLoseQuorum("after the change the voters would be %s, of which %s answer and are caught "
                                         "up: not a majority, so the groups would stop; nothing was changed"
                                         % (sorted(after), sorted(live)))

    # ------------------------------------------------------------------ asyncio twins (run in a thread)
    async def table_async(self, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.to_thread(self.table, timeout)

    async def history_async(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.history, timeout)

    async def progress_async(self, epoch: int, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.to_thread(self.progress, epoch, timeout)

    async def status_async(self, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.to_thread(self.status, timeout)

    async def groups_per_node_async(self, groups: int, timeout: float = 5.0) -> dict[int, int]:
        return await asyncio.to_thread(self.groups_per_node, groups, timeout)

    async def add_async(self, host: str, peer_port: int, client_port: int, public_key: str,
                        replaces: int | None = None, expect: int | None = None, timeout: float = 10.0) -> Change:
        return await asyncio.to_thread(self.add, host, peer_port, client_port, public_key, replaces, expect, timeout)

    async def promote_async(self, node: int, expect: int | None = None, force: bool = False,
                            timeout: float = 10.0) -> Change:
        return await asyncio.to_thread(self.promote, node, expect, force, timeout)

    async def remove_async(self, node: int, expect: int | None = None, force: bool = False,
                           timeout: float = 10.0) -> Change:
        return await asyncio.to_thread(self.remove, node, expect, force, timeout)

    async def replace_async(self, old: int, new: int, expect: int | None = None, force: bool = False,
                            timeout: float = 10.0) -> Change:
        return await asyncio.to_thread(self.replace, old, new, expect, force, timeout)

    async def place_async(self, group: int, voters, expect: int | None = None, timeout: float = 10.0) -> Change:
        return await asyncio.to_thread(self.place, group, voters, expect, timeout)

    async def update_async(self, node: int, host: str, peer_port: int, client_port: int,
                           expect: int | None = None, timeout: float = 10.0) -> Change:
        return await asyncio.to_thread(self.update, node, host, peer_port, client_port, expect, timeout)

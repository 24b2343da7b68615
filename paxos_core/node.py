"""`paxos_core.Node`: run a node inside your process and use its groups.

    node = paxos_core.Node("cluster/node1.toml")       # starts the worker processes
    result = node.propose(group, op)                   # blocking; node.propose_async() for asyncio
    node.kv.put(b"key", b"value"); node.kv.get(b"key")
    node.close()

The calling process is the node's supervisor: it starts the workers (spawned processes, one per shard of
the groups), restarts any that dies, and stops them on close(). Node() returns once every worker is up and
answers from the pid the supervisor started; a start that fails raises StartError (one line, e.g. "address
in use: 127.0.0.1:15167") after stopping whatever it started. The workers' log records are re-emitted
through this process's `logging`, and the workers stop by themselves if this process dies
(runtime/supervisor.py). Requests go through a Client to the worker of the group; proposals made here for a
group mastered elsewhere are forwarded to its master.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Any

from . import errors
from .client import Client, MasterCallback, ProposeResult, ReadMode, RequestId
from .config import NodeConfig, load_config, state_machine_spec_problem
from .kv import KV
from .service import ObjectProxy, StateMachineClient
from .runtime.supervisor import Supervisor

log = logging.getLogger("paxos_core.node")


class Node:
    def __init__(self, config: str | os.PathLike[str] | NodeConfig, start: bool = True, log_level: int = logging.INFO,
                 ready_timeout: float = 30.0, state_machine: str | None = None, rebuild: bool = False,
                 bundle: str | os.PathLike[str] | None = None, **client_options: Any) -> None:
        """`state_machine`: "package.module:Factory", your own state machine (see
        paxos_core/statemachine/user.py); it overrides ``cluster.state_machine`` of the node file. Every node
        of the cluster must run the same one. Default: the file's, else the built-in key-value store.

        `rebuild`: the node's data directory was lost (a replaced disk): start anyway and rebuild every group
        from the peers before voting. Without it a data directory without its identity marker is refused
        (StartError), since it may as well be a wrong path or a disk that did not mount.

        `bundle`: with `rebuild` and a node file, a bundle of the membership table for this node (``paxos-core
        member bundle ID --out BUNDLE`` on any member), for a node whose file lists no member left: the file's
        nodes and keys are brought to the table's first (join.refresh; ``paxos-core node FILE --rebuild
        --bundle BUNDLE`` does the same). A bundle that does not fit raises ConfigError and writes nothing."""
        if bundle is not None:
            if not rebuild or isinstance(config, NodeConfig):
                raise errors.ConfigError("bundle= goes with rebuild=True and the node's file (a member whose data "
                                         "directory was lost)")
            from .join import read_bundle, refresh

            before, now = refresh(read_bundle(bundle), config)
            log.warning("%s: its nodes were %s, now the table's %s (from %s); it rebuilds", config,
                        ",".join(map(str, before)), ",".join(map(str, now)), bundle)
        if isinstance(config, NodeConfig):
            self.config = config
            source: str | dict[str, Any] = config.to_dict()
        else:
            self.config = load_config(config)
            source = str(config)
        if state_machine is not None:
            problem = state_machine_spec_problem(state_machine)
            if problem:
                raise errors.ConfigError("state_machine: %s" % problem)
            if state_machine != self.config.state_machine:
                self.config = dataclasses.replace(self.config, state_machine=state_machine)
                source = self.config.to_dict()      # the workers read the config from the supervisor's copy
        self._started = False
        self.supervisor = Supervisor(self.config, source, log_level, rebuild=rebuild)
        try:
            self.client = Client.from_config(self.config, prefer=self.config.node_id, **client_options)
        except BaseException:
            self.supervisor.stop()
            raise
        self.kv = KV(self.client, self.config.groups)
        # Calls to a state machine of your own (state_machine=...): node.sm.call(group, op), node.sm.query(...)
        self.sm = StateMachineClient(self.client)
        if start:
            try:
                self.start(ready_timeout)
            except BaseException:
                self.close()
                raise

    def start(self, ready_timeout: float = 30.0) -> None:
        """Start the workers; return once every one is up and answering. On failure (StartError, one line:
        e.g. "address in use: 127.0.0.1:15167"), every worker started is stopped before it raises."""
        deadline = time.monotonic() + ready_timeout
        self._started = True
        try:
            self.supervisor.start(ready_timeout)
            self.wait_ready(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.supervisor.stop()
            self._started = False
            raise

    def wait_ready(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until every local worker answers a status request from the process this node started (a
        worker's answer carries its pid). StartError if that does not happen within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.supervisor.failure is not None:
                raise errors.StartError(self.supervisor.failure)
            statuses = self.client.status(self.config.node_id, timeout=1.0)
            ours = self.supervisor.pids()
            wrong = [s for s in statuses if "error" in s or s.get("pid") != ours.get(s.get("worker"))]
            if not wrong:
                return statuses
            if time.monotonic() > deadline:
                s = wrong[0]
                raise errors.StartError("node %d worker %s: %s" % (
                    self.config.node_id, s.get("worker"),
                    "no answer (%s)" % s["error"] if "error" in s else
                    "answered by pid %s, which this node did not start (pid %s)" % (s.get("pid"),
                                                                                   ours.get(s.get("worker")))))
            time.sleep(0.1)

    # ------------------------------------------------------------------ the facade
    def propose(self, group: int, value: bytes, timeout: float | None = None,
                request_id: RequestId | None = None, retry: bool | None = None) -> ProposeResult:
        """Propose `value` (a state-machine command) to `group`; blocks until chosen AND applied.

        Returns ProposeResult(group, instance, result, request_id). Raises Timeout (outcome unknown: retry
        with the same request_id; `retry` as in Client.propose), NotMaster, ValueTooLarge, Overloaded,
        GroupStopped, UnknownGroupError.
        """
        return self.client.propose(group, value, timeout, request_id, retry=retry)

    async def propose_async(self, group: int, value: bytes, timeout: float | None = None,
                            request_id: RequestId | None = None, retry: bool | None = None) -> ProposeResult:
        return await self.client.propose_async(group, value, timeout, request_id, retry=retry)

    def read(self, group: int, query: bytes, mode: ReadMode = "lease", timeout: float | None = None) -> bytes:
        return self.client.read(group, query, mode, timeout)

    async def read_async(self, group: int, query: bytes, mode: ReadMode = "lease",
                         timeout: float | None = None) -> bytes:
        return await self.client.read_async(group, query, mode, timeout)

    def read_stale(self, group: int, query: bytes) -> bytes:
        """This node's state, possibly behind the others: no master, no log round."""
        return self.client.read_stale(group, query, node=self.config.node_id)

    async def read_stale_async(self, group: int, query: bytes) -> bytes:
        return await self.client.read_stale_async(group, query, node=self.config.node_id)

    def on_master_change(self, callback: MasterCallback) -> None:
        """`callback(group, master, epoch)` on every master change seen by any node's workers."""
        self.client.on_master_change(callback)

    def add_group(self, group: int, cluster_wide: bool = True) -> None:
        """Create a group while running (on every node by default)."""
        self.client.add_group(group, None if cluster_wide else [self.config.node_id])

    async def add_group_async(self, group: int, cluster_wide: bool = True) -> None:
        await self.client.add_group_async(group, None if cluster_wide else [self.config.node_id])

    def remove_group(self, group: int, cluster_wide: bool = True) -> None:
        self.client.remove_group(group, None if cluster_wide else [self.config.node_id])

    async def remove_group_async(self, group: int, cluster_wide: bool = True) -> None:
        await self.client.remove_group_async(group, None if cluster_wide else [self.config.node_id])

    def replicated(self, cls: type, group: int = 0, read_mode: ReadMode = "lease") -> ObjectProxy:
        """A proxy of the ReplicatedObject `cls` in `group` (the node must run it: state_machine="mod:Cls").
        ``proxy.method(...)`` calls a @replicated or @query method; ``await proxy.aio.method(...)`` too."""
        return ObjectProxy(self.sm, cls, group, read_mode)

    @property
    def membership(self) -> Any:
        """The cluster's members through this node's client (paxos_core/membership.py): table, add, promote,
        remove, replace, update, place, each returning a change with ``wait()``. Blocking; from asyncio, their
        awaitable twins: ``change = await node.membership.remove_async(3)``, ``await change.wait_async()``."""
        return self.client.membership

    def status(self) -> list[dict[str, Any]]:
        """Per-worker status dicts of this node."""
        return self.client.status(self.config.node_id)

    async def status_async(self) -> list[dict[str, Any]]:
        return await self.client.status_async(self.config.node_id)

    def close(self) -> None:
        """Stop the workers (SIGTERM; each finishes its cycle and closes its log) and the client."""
        self.client.close()
        self.supervisor.stop()
        self._started = False

    # Start, readiness and close for asyncio: the blocking calls, in a thread.
    async def start_async(self, ready_timeout: float = 30.0) -> None:
        await asyncio.to_thread(self.start, ready_timeout)

    async def wait_ready_async(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.wait_ready, timeout)

    async def close_async(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

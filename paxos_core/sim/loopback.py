"""A fault-free cluster of engines in one process, each behind the real effect cycle.

Messages are delivered in order and nothing is lost. Each node's records go to a log (MemoryLog by default,
or any object with the RocksLog interface, e.g. a real RocksLog), through the same ``run_cycle`` the worker
runtime uses. Useful to drive the protocol step by step in tests, to count exactly what one proposal costs,
and as the smallest example of the effect contract.
"""
import random

from ..core.config import CoreConfig
from ..core.engine import Engine
from ..replica.cycle import run_cycle
from ..storage.memory import MemoryLog


class LoopbackCluster:
    def __init__(self, nodes=3, groups=1, seed=0, log_factory=None, max_reply_bytes=None, **config):
        """`max_reply_bytes`: bound on a catch-up reply's values (run_cycle's); `config`: CoreConfig's."""
        self.max_reply_bytes = max_reply_bytes
        self.node_ids = tuple(range(1, nodes + 1))
        self.rng = random.Random(seed)
        self.log_factory = log_factory or (lambda node: MemoryLog(node))
        self.configs = {n: CoreConfig(node_id=n, members=self.node_ids, n_groups=groups, **config)
                        for n in self.node_ids}
        self.logs = {n: self.log_factory(n) for n in self.node_ids}
        self.engines = {}
        self.down = set(self.node_ids)
        self.recoveries = {}
        self.inbox = {n: [] for n in self.node_ids}
        self.sent = {}           # message kind -> count
        self.records = {n: 0 for n in self.node_ids}
        self.chosen = {n: [] for n in self.node_ids}    # [(group, instance, value)] since the last (re)start
        self.acks = []
        self.expired = []
        self.offers = {n: [] for n in self.node_ids}     # [(dest, group, first)] snapshot offers asked for
        self.superseded = {n: [] for n in self.node_ids}  # [(group, incarnation, first)] newer incarnations told
        self.now = 0
        self.drop = None         # drop(src, dest, message) -> True: that message is lost (tests that cut a link)
        for n in self.node_ids:
            self.restart(n)

    @property
    def stores(self):
        """node -> dict of the MemoryLog (tests that edit stored bytes use this)."""
        return {n: log.store for n, log in self.logs.items()}

    def propose(self, node, group, payload, tag=None):
        self.engines[node].propose(group, payload, tag if tag is not None else payload)
        self.settle()

    def tick(self, ticks=1):
        for _ in range(ticks):
            self.now += 1
            for n, engine in self.engines.items():
                if n not in self.down:
                    engine.tick(self.now)
            self.settle()

    def settle(self, limit=100_000):
        """Run cycles and deliveries until nothing moves."""
        for _ in range(limit):
            moved = False
            for n, engine in self.engines.items():
                if n in self.down:
                    self.inbox[n] = []
                    continue
                if self.inbox[n]:
                    batch, self.inbox[n] = self.inbox[n], []
                    engine.receive(batch)
                    moved = True
                fx, _ = run_cycle(engine, self.logs[n], lambda msgs, n=n: self._route(n, msgs),
                                  max_reply_bytes=self.max_reply_bytes)
                if fx:
                    moved = True
                self.records[n] += len(fx.records)
                self.chosen[n].extend(fx.chosen)
                self.acks.extend(fx.acks)
                self.expired.extend(fx.expired)
                self.offers[n].extend(fx.offers)
                self.superseded[n].extend(fx.superseded)
            if not moved:
                return
        raise RuntimeError("loopback cluster did not settle")

    def crash(self, node):
        """Stop a node; its log keeps what was written."""
        self.down.add(node)
        self.inbox[node] = []

    def restart(self, node):
        """Rebuild a node from its log only, with the real recovery code."""
        recovery = self.logs[node].recover()
        self.recoveries[node] = recovery
        self.engines[node] = Engine(self.configs[node], random.Random(self.rng.getrandbits(64)),
                                    recovered=recovery.groups, now=self.now)
        self.down.discard(node)
        self.chosen[node] = []
        return recovery

    def _route(self, src, messages):
        for dest, msg in messages:
            if dest in self.down or (self.drop is not None and self.drop(src, dest, msg)):
                continue
            self.sent[msg.kind] = self.sent.get(msg.kind, 0) + 1
            copy = type(msg)(msg.kind, msg.group, msg.instance, msg.ballot, msg.mark, msg.aux, msg.chain,
                             msg.value, msg.flags, src, msg.inc)
            self.inbox[dest].append(copy)

"""A fault-free, synchronous cluster of engines in one process.

Messages are delivered at once and in order, records are "persisted" at once; nothing is lost. Useful to
drive the protocol step by step in tests (and to count exactly what one proposal costs), and as the
smallest example of the effect contract.
"""
import random

from ..core.config import CoreConfig
from ..core.engine import Engine
from ..storage.records import encode_records


class LoopbackCluster:
    def __init__(self, nodes=3, groups=1, seed=0, **config):
        self.node_ids = tuple(range(1, nodes + 1))
        rng = random.Random(seed)
        self.engines = {
            n: Engine(CoreConfig(node_id=n, members=self.node_ids, n_groups=groups, **config),
                      random.Random(rng.getrandbits(64)))
            for n in self.node_ids
        }
        self.stores = {n: {} for n in self.node_ids}
        self.inbox = {n: [] for n in self.node_ids}
        self.sent = {}           # message kind -> count
        self.records = {n: 0 for n in self.node_ids}
        self.chosen = {n: [] for n in self.node_ids}    # [(group, instance, value)]
        self.acks = []
        self.now = 0

    def propose(self, node, group, payload, tag=None):
        self.engines[node].propose(group, payload, tag if tag is not None else payload)
        self.settle()

    def tick(self, ticks=1):
        for _ in range(ticks):
            self.now += 1
            for engine in self.engines.values():
                engine.tick(self.now)
            self.settle()

    def settle(self, limit=100_000):
        """Run effects and deliveries until nothing moves."""
        for _ in range(limit):
            moved = False
            for n, engine in self.engines.items():
                fx = engine.take_effects()
                if not fx and not self.inbox[n]:
                    continue
                moved = True
                self._route(n, fx.send_now)
                for key, value in encode_records(fx.records):
                    self.stores[n][key] = value
                self.records[n] += len(fx.records)
                self._route(n, fx.send_after)
                self.chosen[n].extend(fx.chosen)
                self.acks.extend(fx.acks)
                engine.persisted(fx.token)
                if self.inbox[n]:
                    batch, self.inbox[n] = self.inbox[n], []
                    engine.receive(batch)
            if not moved:
                return
        raise RuntimeError("loopback cluster did not settle")

    def _route(self, src, messages):
        for dest, msg in messages:
            self.sent[msg.kind] = self.sent.get(msg.kind, 0) + 1
            copy = type(msg)(msg.kind, msg.group, msg.instance, msg.ballot, msg.mark, msg.aux, msg.chain,
                             msg.value, msg.flags, src)
            self.inbox[dest].append(copy)

"""A fault-free, synchronous cluster of engines in one process.

Messages are delivered at once and in order, records are "persisted" at once; nothing is lost. Useful to
drive the protocol step by step in tests (and to count exactly what one proposal costs), and as the
smallest example of the effect contract.
"""
import random

from ..core.config import CoreConfig
from ..storage.recovery import recover
from ..core.engine import Engine
from ..storage.records import encode_records, read_chosen
from ..wire.codec import encode_entries
from ..wire.message import CATCHUP_REPLY, Message


class LoopbackCluster:
    def __init__(self, nodes=3, groups=1, seed=0, **config):
        self.node_ids = tuple(range(1, nodes + 1))
        self.rng = random.Random(seed)
        self.configs = {n: CoreConfig(node_id=n, members=self.node_ids, n_groups=groups, **config)
                        for n in self.node_ids}
        self.engines = {n: Engine(self.configs[n], random.Random(self.rng.getrandbits(64))) for n in self.node_ids}
        self.down = set()
        self.recoveries = {}
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
                if n in self.down:
                    self.inbox[n] = []
                    continue
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
                for dest, group, first, end in fx.serve:
                    self._serve(n, dest, group, first, end)
                engine.persisted(fx.token)
                if self.inbox[n]:
                    batch, self.inbox[n] = self.inbox[n], []
                    engine.receive(batch)
            if not moved:
                return
        raise RuntimeError("loopback cluster did not settle")

    def crash(self, node):
        """Stop a node; its store keeps what was persisted (here: everything written)."""
        self.down.add(node)
        self.inbox[node] = []

    def restart(self, node):
        """Rebuild a node from its store only, with the real recovery code."""
        recovery = recover(sorted(self.stores[node].items()))
        self.recoveries[node] = recovery
        self.engines[node] = Engine(self.configs[node], random.Random(self.rng.getrandbits(64)),
                                    recovered=recovery.groups, now=self.now)
        self.down.discard(node)
        self.chosen[node] = []
        return recovery

    def _serve(self, n, dest, group, first, end):
        entries = read_chosen(self.stores[n].get, group, first, end)
        if entries:
            chosen_next, chain = self.engines[n].learned(group)
            reply = Message(CATCHUP_REPLY, group, first, 0, chosen_next, 0, chain, encode_entries(entries))
            self._route(n, [(dest, reply)])

    def _route(self, src, messages):
        for dest, msg in messages:
            if dest in self.down:
                continue
            self.sent[msg.kind] = self.sent.get(msg.kind, 0) + 1
            copy = type(msg)(msg.kind, msg.group, msg.instance, msg.ballot, msg.mark, msg.aux, msg.chain,
                             msg.value, msg.flags, src)
            self.inbox[dest].append(copy)

"""Replicated Python objects in the PySyncObj style: @replicated methods are commands, @query methods reads.

    node = paxos_core.Node("cluster/node1.toml", state_machine="counter:Counters")
    counters = node.replicated(Counters, group=0)
    counters.add("visits", 3)          # 3: applied on every node, exactly once
    counters.get("visits")             # 3: a lease read on the master
    await counters.aio.add("visits")   # asyncio

Arguments, results and the state are JSON values (see paxos_core/statemachine/objects.py).
"""
from paxos_core.statemachine.objects import ReplicatedObject, query, replicated


class Counters(ReplicatedObject):
    def __init__(self):
        self.counts = {}

    @replicated
    def add(self, name, n=1):
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError("n must be an integer")
        self.counts[name] = self.counts.get(name, 0) + n
        return self.counts[name]

    @replicated
    def reset(self, name):
        return self.counts.pop(name, 0)

    @query
    def get(self, name):
        return self.counts.get(name, 0)

    @query
    def snapshot(self):
        return dict(self.counts)

    def random_call(self, rng):
        return ("add", ["c%d" % rng.randrange(3), rng.randint(-5, 5)]) if rng.random() < 0.9 else \
            ("reset", ["c%d" % rng.randrange(3)])

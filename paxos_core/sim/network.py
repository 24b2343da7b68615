"""A simulated network: loss, duplication, delay with jitter (hence reordering), and partitions.

It moves opaque frames; the simulation encodes and decodes them with the real wire codec. All randomness
comes from the simulation's seeded generator, so a seed replays exactly.
"""


class NetworkFaults:
    """Fault rates; the simulation changes them over a run (zero after the heal)."""

    def __init__(self, loss=0.0, duplicate=0.0, delay_us=(200, 2000), jitter_us=0):
        self.loss = loss
        self.duplicate = duplicate
        self.delay_us = delay_us
        self.jitter_us = jitter_us


class SimNetwork:
    def __init__(self, rng, faults=None):
        self.rng = rng
        self.faults = faults or NetworkFaults()
        self.blocked = set()         # (src, dst) pairs whose frames are dropped (one-way partitions)
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0

    def block(self, src, dst):
        self.blocked.add((src, dst))

    def unblock(self, src, dst):
        self.blocked.discard((src, dst))

    def heal(self):
        self.blocked.clear()

    def isolate(self, node, nodes, one_way=None):
        """Cut `node` off: both ways, or only 'in' / 'out'."""
        for other in nodes:
            if other == node:
                continue
            if one_way in (None, "out"):
                self.blocked.add((node, other))
            if one_way in (None, "in"):
                self.blocked.add((other, node))

    def deliveries(self, src, dst):
        """Delays (µs) at which a frame sent now from src to dst arrives: [] if lost, two if duplicated."""
        self.sent += 1
        f = self.faults
        if (src, dst) in self.blocked or (f.loss and self.rng.random() < f.loss):
            self.dropped += 1
            return []
        lo, hi = f.delay_us
        delays = [self.rng.randint(lo, hi) + (self.rng.randint(0, f.jitter_us) if f.jitter_us else 0)]
        if f.duplicate and self.rng.random() < f.duplicate:
            self.duplicated += 1
            delays.append(delays[0] + self.rng.randint(0, max(f.jitter_us, hi)))
        return delays

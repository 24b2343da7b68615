"""Fixed-bucket histograms: what the worker's loop measures (latency, batch size, synced-write time), with
no per-observation cost beyond a bisect; runtime/metrics.py shows them to Prometheus."""
import bisect

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Histogram:
    """Fixed buckets (upper bounds); observe() is one bisect and two additions."""

    def __init__(self, buckets):
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value):
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def cumulative(self):
        out = []
        running = 0
        for bound, count in zip(self.bounds, self.counts):
            running += count
            out.append((repr(float(bound)), running))
        out.append(("+Inf", self.n))
        return out

    def snapshot(self):
        return {"count": self.n, "sum": self.total, "buckets": dict(self.cumulative())}

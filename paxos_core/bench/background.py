"""A steady background write load for the benchmarks that watch a cluster over time (rejoin, soak).

One thread of the bench process keeps `concurrency` key-value puts in flight through the real `Client`
(closed loop, one operation per request, groups in turn, keys from a fixed set so that the state stays the
same size) and keeps the completion time of every operation, so that throughput can be read for any window
afterwards (`rate`). Errors are counted by type; a put that failed is not retried by the load.
"""
import bisect
import json
import os
import threading
import time

from ..statemachine import kv


class BackgroundLoad:
    def __init__(self, client, groups, concurrency=64, value_size=100, keys=10000, timeout=30.0):
        self.client = client
        self.groups = groups
        self.keys = max(1, keys)
        self.value = os.urandom(value_size)
        self.timeout = timeout
        self.slots = threading.BoundedSemaphore(concurrency)
        self.concurrency = concurrency
        self.done_at = []             # monotonic completion times, in order (appended by the client's thread)
        self.errors = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-load", daemon=True)
        self.sent = 0

    def start(self):
        self.thread.start()
        return self

    def stop(self, timeout=60.0):
        """Stop sending, then wait (up to `timeout`) for the puts in flight."""
        self.stopping.set()
        self.thread.join(timeout)
        for _ in range(self.concurrency):
            if not self.slots.acquire(timeout=timeout):
                break

    def _run(self):
        n = 0
        while not self.stopping.is_set():
            if not self.slots.acquire(timeout=0.2):
                continue
            key = b"load-%d" % (n % self.keys)
            future = self.client.propose_future(n % self.groups, kv.encode_put(key, self.value), timeout=self.timeout)
            future.add_done_callback(self._done)
            n += 1
            self.sent = n

    def _done(self, future):
        now = time.monotonic()
        exc = future.exception()
        with self.lock:
            if exc is None:
                self.done_at.append(now)
            else:
                name = type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
        self.slots.release()

    def completed(self):
        return len(self.done_at)

    def rate(self, t0, t1):
        """Operations per second completed in the window [t0, t1) of time.monotonic()."""
        if t1 <= t0:
            return None
        with self.lock:
            times = self.done_at
            n = bisect.bisect_left(times, t1) - bisect.bisect_left(times, t0)
        return n / (t1 - t0)

    def measure(self, window, warmup=0.0):
        """Wait `warmup` seconds, then return the rate over the next `window` seconds."""
        time.sleep(warmup)
        t = time.monotonic()
        time.sleep(window)
        return self.rate(t, time.monotonic())


def start_load(client, groups, concurrency, value_size, keys, window, warmup=2.0):
    """Start a BackgroundLoad and measure its steady rate: (load, ops/s over `window` s after `warmup` s)."""
    load = BackgroundLoad(client, groups, concurrency, value_size, keys=keys).start()
    return load, load.measure(window, warmup)


def report(result, json_path=None, leave_out=()):
    """Write `result` to `json_path` (if given) and print it as the last line of output, without the keys in
    `leave_out` (long series that belong in the file only)."""
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k not in leave_out}, sort_keys=True), flush=True)


def stop_and_close(load, cluster):
    """The end of a benchmark with a background load, however it ends: the load stops, the cluster's nodes
    are stopped by PID."""
    if load is not None:
        load.stopping.set()
    cluster.close()

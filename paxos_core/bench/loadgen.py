"""A benchmark client process: drives key-value puts against a cluster and records every latency.

    python -m paxos_core.bench.loadgen --cluster DIR --out PREFIX [--concurrency 64] [--groups 16]
        [--value-size 100] [--batch 1] [--mode closed|open] [--rate OPS_PER_S] [--warmup 1] [--duration 5]

It connects, prints "ready", waits for a line on stdin ("go"), runs `warmup` seconds unrecorded and
`duration` seconds recorded, then writes PREFIX.npy (latencies in seconds, float64, one per operation) and
PREFIX.json (operation and error counts, the measured window), and exits when stdin closes (the bench reads
its CPU time in /proc until then).

A request is one call of the client API on one group: with --batch 1, `Client.propose_async` of one encoded
put; with --batch B > 1, `Client.propose_batch_async` of B encoded puts, which the master proposes as one
Paxos instance (what `KV.put` does not do: it sends one operation per request). Closed loop: `concurrency`
coroutines each wait for their request before sending the next, so concurrency x B operations are in
flight. Open loop: requests start on a fixed schedule of `rate` operations per second whatever the answers;
latency is measured from the scheduled start, so queueing counts.
"""
import argparse
import asyncio
import json
import os
import sys
import time

import numpy as np

from ..client import Client
from ..errors import PaxosError
from ..statemachine import kv


class Recorder:
    def __init__(self):
        self.latencies = []
        self.ops = 0
        self.errors = {}
        self.recording = False

    def ok(self, latency, n=1):
        if self.recording:
            self.latencies.extend([latency] * n)
            self.ops += n

    def error(self, exc, n=1):
        if self.recording:
            name = type(exc).__name__
            self.errors[name] = self.errors.get(name, 0) + n


async def closed_loop(client, rec, groups, worker, concurrency, value, batch, stop):
    group = worker % groups
    counter = 0
    prefix = os.urandom(4).hex().encode()
    while not stop.is_set():
        group = (group + concurrency) % groups if groups > concurrency else (group + 1) % groups
        counter += 1
        if batch > 1:
            ops = [kv.encode_put(b"%s-%d-%d-%d" % (prefix, worker, counter, k), value) for k in range(batch)]
            t0 = time.perf_counter()
            try:
                await client.propose_batch_async(group, ops)
                rec.ok(time.perf_counter() - t0, batch)
            except PaxosError as exc:
                rec.error(exc, batch)
        else:
            op = kv.encode_put(b"%s-%d-%d" % (prefix, worker, counter), value)
            t0 = time.perf_counter()
            try:
                await client.propose_async(group, op)
                rec.ok(time.perf_counter() - t0)
            except PaxosError as exc:
                rec.error(exc)


async def open_loop(client, rec, groups, rate, value, batch, stop):
    prefix = os.urandom(4).hex().encode()
    interval = batch / rate
    start = time.perf_counter()
    k = 0
    inflight = set()

    async def one(group, scheduled, n):
        try:
            if batch > 1:
                ops = [kv.encode_put(b"%s-%d-%d" % (prefix, n, j), value) for j in range(batch)]
                await client.propose_batch_async(group, ops)
            else:
                await client.propose_async(group, kv.encode_put(b"%s-%d" % (prefix, n), value))
            rec.ok(time.perf_counter() - scheduled, batch)
        except PaxosError as exc:
            rec.error(exc, batch)

    while not stop.is_set():
        scheduled = start + k * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(one(k % groups, scheduled, k))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        k += 1
    if inflight:
        await asyncio.wait(inflight, timeout=10)


async def run(args):
    client = Client.from_cluster_dir(args.cluster, default_timeout=args.timeout)
    groups = args.groups or client.groups
    value = os.urandom(args.value_size)
    rec = Recorder()
    stop = asyncio.Event()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if args.mode == "closed":
        tasks = [asyncio.ensure_future(closed_loop(client, rec, groups, w, args.concurrency, value, args.batch, stop))
                 for w in range(args.concurrency)]
    else:
        tasks = [asyncio.ensure_future(open_loop(client, rec, groups, args.rate, value, args.batch, stop))]
    await asyncio.sleep(args.warmup)
    rec.recording = True
    t0 = time.perf_counter()
    await asyncio.sleep(args.duration)
    rec.recording = False
    window = time.perf_counter() - t0
    stop.set()
    await asyncio.wait(tasks, timeout=args.timeout + 5)
    np.save(args.out + ".npy", np.asarray(rec.latencies, dtype=np.float64))
    with open(args.out + ".json", "w") as f:
        json.dump({"ops": rec.ops, "errors": rec.errors, "window": window}, f)
    client.close()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)     # until the bench closes stdin


def main(argv=None):
    p = argparse.ArgumentParser(description="paxos-core benchmark client")
    p.add_argument("--cluster", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--groups", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--mode", choices=("closed", "open"), default="closed")
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args(argv)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

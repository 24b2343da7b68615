"""A lean benchmark client process: the replicas' ceiling, without the client library's cost per operation.

    python -m paxos_core.bench.leanload --cluster DIR --out PREFIX [--concurrency 128] [--groups 16]
        [--value-size 100] [--batch 1] [--warmup 1] [--duration 5]

The same contract as paxos_core.bench.loadgen (prints "ready", starts on a line on stdin, writes PREFIX.npy
and PREFIX.json, exits when stdin closes), closed loop only. It speaks the client protocol
(paxos_core.wire.rpc) itself from one thread with no event loop: one ZeroMQ DEALER per worker of every node,
requests encoded from a prepared header, replies read in bursts (a worker sends a client one frame of
replies per loop turn) and parsed for their status and request id only. Each of `concurrency` slots is a
client session of its own with one request in flight (its request seqs go up by one), on group
slot % groups; a NOT_MASTER reply moves the slot's group to the master it names and the request is sent
there again, unchanged (it was not proposed); any other error counts and the slot goes on with its next
seq. What `Client` adds per operation (futures, retries with the retry flag, session pools, deadlines,
the I/O thread hop) is what this leaves out: the gap between the two figures is the library's cost, and
this one shows what the replicas can do. Clusters with CURVE are not supported (the bench runs without).
"""
import argparse
import json
import os
import random
import struct
import sys
import time

import numpy as np
import zmq

from ..config import load_cluster
from ..statemachine import kv
from ..wire import rpc

_HEAD = struct.Struct("<BQ")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
TIMEOUT_MS = 10000
_ERROR_NAMES = {rpc.TIMEOUT: "Timeout", rpc.VALUE_TOO_LARGE: "ValueTooLarge", rpc.OVERLOADED: "Overloaded",
                rpc.GROUP_STOPPED: "GroupStopped", rpc.UNKNOWN_GROUP: "UnknownGroup", rpc.BAD_REQUEST: "BadRequest"}


class LeanLoad:
    def __init__(self, cluster_dir, groups, concurrency, value_size, batch):
        configs = load_cluster(cluster_dir)
        first = configs[0]
        if first.keys_dir is not None:
            raise SystemExit("leanload: clusters with CURVE are not supported (run the bench without --curve)")
        self.workers = first.workers
        self.nodes = [n.id for n in first.nodes]
        self.groups = groups or first.groups
        self.batch = batch
        self.ctx = zmq.Context()
        self.poller = zmq.Poller()
        self.socks = {}
        for n in first.nodes:
            for w in range(self.workers):
                sock = self.ctx.socket(zmq.DEALER)
                sock.linger = 0
                sock.sndhwm = sock.rcvhwm = 1 << 20
                sock.connect("tcp://%s:%d" % (n.host, n.client_port + w))
                self.socks[(n.id, w)] = sock
                self.poller.register(sock, zmq.POLLIN)
        rng = random.Random(os.getpid() ^ time.time_ns())
        self.master = {g: self.nodes[g % len(self.nodes)] for g in range(self.groups)}
        self.slots = concurrency
        self.client_id = [rng.getrandbits(63) | 1 for _ in range(concurrency)]
        self.seq = [1] * concurrency
        self.started = [0.0] * concurrency
        self.req_slot = {}
        self.next_req = 1
        value = os.urandom(value_size)
        prefix = os.urandom(4).hex().encode()
        # One op (or batch) per slot, reused: the bench measures the replicas, not the encoding of keys.
        self.ops = [kv.encode_put(b"%s-%d" % (prefix, k), value) for k in range(concurrency)]
        self.recording = False
        self.latencies = []
        self.ok = 0
        self.errors = {}

    def _send(self, slot):
        group = slot % self.groups
        req = self.next_req
        self.next_req += 1
        self.req_slot[req] = slot
        if self.batch > 1:
            frame = rpc.propose_batch_request(req, group, TIMEOUT_MS, self.client_id[slot], self.seq[slot],
                                              [self.ops[slot]] * self.batch)
        else:
            frame = rpc.propose_request(req, group, TIMEOUT_MS, self.client_id[slot], self.seq[slot], self.ops[slot])
        self.socks[(self.master[group], group % self.workers)].send(frame, copy=True)

    def _reply(self, frame, now):
        status, req = _HEAD.unpack_from(frame)
        slot = self.req_slot.pop(req, None)
        if slot is None:
            return
        if status == rpc.OK:
            if self.recording:
                latency = now - self.started[slot]
                self.latencies.extend([latency] * self.batch)
                self.ok += self.batch
        elif status == rpc.NOT_MASTER:
            (master,) = _U16.unpack_from(frame, 9)
            group = slot % self.groups
            if master in self.nodes:
                self.master[group] = master
            else:                                   # unknown: try the next node
                self.master[group] = self.nodes[(self.nodes.index(self.master[group]) + 1) % len(self.nodes)]
            self._send(slot)                        # not proposed: the same request, to the master
            return
        elif self.recording:
            name = _ERROR_NAMES.get(status, "status %d" % status)
            self.errors[name] = self.errors.get(name, 0) + self.batch
        self.seq[slot] += self.batch
        self.started[slot] = now
        self._send(slot)

    def run(self, warmup, duration):
        now = time.perf_counter()
        for slot in range(self.slots):
            self.started[slot] = now
            self._send(slot)
        t_record = now + warmup
        t_end = t_record + duration
        window = None
        while True:
            now = time.perf_counter()
            if not self.recording and window is None and now >= t_record:
                self.recording = True
                t0 = now
            if now >= t_end:
                self.recording = False
                window = now - t0
                break
            for sock, _ in self.poller.poll(50):
                while True:
                    try:
                        frame = sock.recv(zmq.NOBLOCK, copy=True)
                    except zmq.Again:
                        break
                    now = time.perf_counter()
                    if frame[0] == rpc.BATCH:
                        (count,) = _U32.unpack_from(frame, 9)
                        pos = 13
                        for _ in range(count):
                            (length,) = _U32.unpack_from(frame, pos)
                            self._reply(frame[pos + 4:pos + 4 + length], now)
                            pos += 4 + length
                    else:
                        self._reply(frame, now)
        return window

    def close(self):
        for sock in self.socks.values():
            sock.close(0)
        self.ctx.term()


def main(argv=None):
    p = argparse.ArgumentParser(description="paxos-core lean benchmark client")
    p.add_argument("--cluster", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--groups", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=128)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--mode", choices=("closed",), default="closed")
    p.add_argument("--rate", type=float, default=0.0)          # accepted for loadgen's argv; closed loop only
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args(argv)
    load = LeanLoad(args.cluster, args.groups, args.concurrency, args.value_size, args.batch)
    print("ready", flush=True)
    sys.stdin.readline()
    window = load.run(args.warmup, args.duration)
    np.save(args.out + ".npy", np.asarray(load.latencies, dtype=np.float64))
    with open(args.out + ".json", "w") as f:
        json.dump({"ops": load.ok, "errors": load.errors, "window": window}, f)
    load.close()
    sys.stdin.read()                                # until the bench closes stdin


if __name__ == "__main__":
    main()

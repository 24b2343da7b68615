#!/usr/bin/env python3
"""Fuzz paxos-core's decoders: the long runs, by hand (tests/test_fuzz_decoders.py runs short ones in CI).

    python tools/fuzz.py --decoder frame --inputs 1000000            # one decoder, a million inputs
    python tools/fuzz.py --decoder all --inputs 20000 --seed 7        # every decoder
    python tools/fuzz.py --decoder request --engine atheris --inputs 1000000

Decoders (--decoder):
  frame     wire/codec.pyx decode_frame (peer frames; mutated inputs get their crc32c fixed half the time,
            so that the messages inside are reached, not only the checksum)
  entries   wire/codec.pyx decode_entries (the value of PROMISE and CATCHUP_REPLY)
  batch     wire/codec.pyx decode_batch (the value of one instance)
  request   wire/rpc.py decode_request (a client request as a worker's client port receives it)
  reply     wire/rpc.py decode_reply and the reply body decoders (what a client receives)
  worker    a whole client request through a worker's ReplicaLoop (1-node cluster, memory log): it must be
            answered, never raise; ADD_GROUP and the like included
  record    storage/records.pyx decode_record (14-byte key | value; the crc32c fixed half the time)
  config    config.py load_config on the bytes as a node file (mutated valid files, TOML edited field by
            field, random bytes)

Each input either decodes, or raises one of the decoder's documented error classes (paxos_core.errors) with a
clear message: one non-empty line of at most 500 characters. Anything else is a crash: another exception, a
MemoryError (the process runs under an address-space bound, RLIMIT_AS = its size at start + --memory-mb, so a
decoder that tries to allocate far more than its input cannot hide), or an unclear message. Each crash is
printed with its input (hex) and the command that reproduces it; the exit code is then 1.

Engines (--engine): `mutate` (default; seeded and deterministic: the same --seed gives the same inputs) mutates
valid encodings of every kind (bit flips, interesting values in 1/2/4/8-byte fields - huge length fields and
counts -, truncation, insertion, deletion, splicing) and mixes in random bytes; `atheris` (if `pip install
atheris` works) runs libFuzzer's mutator on the same seeds, with coverage feedback from the Python code (none
from the compiled decoders) and the same crc32c fix-up. NOT WORKING YET: on the development machine it did not
finish a 2,000-input run within 120 s (not debugged); use the default engine.

It fuzzes whichever paxos_core is importable: run it with PYTHONPATH=<checkout> to fuzz a checkout (the JSON
line names the package it used).

The last line is JSON: decoder, engine, inputs, crashes, seconds, seed, date, command, slowest input, package.
"""
import argparse
import datetime
import json
import os
import random
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

import paxos_core
from paxos_core import errors
from paxos_core.storage import records as rec
from paxos_core.storage.memory import MemoryLog
from paxos_core.statemachine import kv as kv_ops
from paxos_core.wire import codec, rpc
from paxos_core.wire.checksum import crc32c
from paxos_core.wire.message import Message

CLUSTER = 0x5EED
DEST = 1
MAX_MESSAGE = 500                  # a clear message is one line of at most this many characters
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFE, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1)


class Crash(Exception):
    """An input the decoder did not handle as documented."""


def unclear(exc):
    """Why `exc`'s message is not clear, or None."""
    msg = str(exc)
    if not msg.strip():
        return "empty message"
    if "\n" in msg:
        return "message of several lines"
    if len(msg) > MAX_MESSAGE:
        return "message of %d characters" % len(msg)
    return None


# ---------------------------------------------------------------------------------------------- targets
class Target:
    name = ""
    errors = ()                    # the documented error classes of this decoder

    def seeds(self):
        raise NotImplementedError

    def run(self, data):
        raise NotImplementedError

    def fixup(self, data):
        """A mutated input with its checksum made valid again (formats without one: as it is)."""
        return data

    def structured(self, rng):
        """An input built from the format's structure (None: this target has no such generator)."""
        return None

    def check(self, data):
        """Run one input; raise Crash if it was not handled as documented."""
        try:
            self.run(data)
        except self.errors as exc:
            why = unclear(exc)
            if why:
                raise Crash("%s: %s: %r" % (type(exc).__name__, why, str(exc)[:2000])) from exc
        except Exception as exc:
            raise Crash("%s: %s" % (type(exc).__name__, str(exc)[:2000])) from exc


def _messages(rng, n):
    out = []
    for _ in range(n):
        value = bytes(rng.randrange(256) for _ in range(rng.choice((0, 0, 1, 8, 40))))
        out.append(Message(kind=rng.randint(1, 11), group=rng.choice((0, 1, 7, 0xFFFFFFFF)),
                           instance=rng.choice((0, 5, 1 << 40)), ballot=rng.randrange(1 << 20), mark=rng.randrange(9),
                           aux=rng.randrange(3), chain=rng.randrange(1 << 32), value=value, flags=rng.randrange(4),
                           inc=rng.randint(1, 3)))
    return out


class FrameTarget(Target):
    name = "frame"
    errors = (errors.FrameError,)

    def seeds(self):
        rng = random.Random(1)
        out = [codec.encode_frame(CLUSTER, 2, DEST, [])]
        for n in (1, 2, 3, 8):
            out.append(codec.encode_frame(CLUSTER, rng.randint(2, 5), DEST, _messages(rng, n)))
        out.append(codec.encode_frame(CLUSTER + 1, 2, DEST, _messages(rng, 2)))          # another cluster
        return out

    def run(self, data):
        codec.decode_frame(data, CLUSTER, DEST, 1 << 20, 1 << 16)

    def fixup(self, data):
        if len(data) < 28:
            return data
        crc = crc32c(bytes(data[:24]) + bytes(data[28:]))
        return data[:24] + struct.pack("<I", crc) + data[28:]


class EntriesTarget(Target):
    name = "entries"
    errors = (errors.FrameError,)

    def seeds(self):
        rng = random.Random(2)
        return [codec.encode_entries([(rng.randrange(1 << 40), rng.randrange(1 << 20), bytes(rng.randrange(9)))
                                      for _ in range(n)]) for n in (0, 1, 2, 5)]

    def run(self, data):
        codec.decode_entries(data)


class BatchTarget(Target):
    name = "batch"
    errors = (errors.FrameError,)

    def seeds(self):
        rng = random.Random(3)
        return [b""] + [codec.encode_batch([(rng.randrange(1 << 16), rng.randrange(1 << 63),
                                             bytes(rng.randrange(12))) for _ in range(n)]) for n in (0, 1, 3, 6)]

    def run(self, data):
        codec.decode_batch(data)


def _requests():
    put = kv_ops.encode_put(b"key", b"value")
    return [
        rpc.propose_request(1, 0, 1000, 77, 1, put, 3),
        rpc.propose_request(2, 4, 0, 1 << 62, (1 << 63) | 5, b""),
        rpc.read_request(3, 0, rpc.READ_LEASE, 500, kv_ops.encode_get(b"key")),
        rpc.read_request(4, 2, rpc.READ_STALE, 500, kv_ops.encode_get(b"k"), 9),
        rpc.read_request(5, 0, rpc.READ_LINEARIZABLE, 500, kv_ops.encode_get(b"k")),
        rpc.propose_batch_request(6, 0, 1000, 78, 1, [put, kv_ops.encode_delete(b"key"), b""]),
        rpc.propose_batch_request(7, 2, 1000, 79, 1, []),
        rpc.simple_request(rpc.STATUS, 8),
        rpc.simple_request(rpc.SUBSCRIBE, 9),
        rpc.simple_request(rpc.GROUP_INFO, 10, 0),
        rpc.simple_request(rpc.REMOVE_GROUP, 11, 6),
        rpc.add_group_request(12, 4),
        rpc.add_group_request(13, 0xFFFFFFFF)[:13],         # the 13 bytes of issue 10
        rpc.add_group_request(14, 0xFFFFFFFE, 3),
    ]


class RequestTarget(Target):
    name = "request"
    errors = (errors.BadRequest,)

    def seeds(self):
        return _requests()

    def run(self, data):
        rpc.decode_request(data)


def _decode_reply(frame, depth=0):
    status, _req_id, body = rpc.decode_reply(frame)
    if status == rpc.OK:
        # The OK body of each kind of request: which one a reply answers is the client's to know.
        for decode in (rpc.decode_propose_ok, rpc.decode_propose_batch_ok):
            try:
                decode(body)
            except errors.BadRequest:
                pass
    elif status == rpc.BATCH and depth < 3:
        for inner in rpc.split_reply_batch(body):
            _decode_reply(inner, depth + 1)
    elif status == rpc.NOT_MASTER:
        rpc.decode_not_master(body)
    elif status == rpc.EVENT:
        rpc.decode_event(body)
    else:
        try:
            rpc.raise_for(status, body, (1, 2))
        except errors.PaxosError:
            pass


class ReplyTarget(Target):
    name = "reply"
    errors = (errors.BadRequest,)

    def seeds(self):
        one = [rpc.propose_ok(1, 5, b"\x00"), rpc.propose_batch_ok(2, [(5, b"\x00"), (6, b"")]),
               rpc.not_master(3, 2, 7), rpc.master_event(4, 2, 9), rpc.error_reply(rpc.TIMEOUT, 5, "slow"),
               rpc.reply(rpc.OK, 6, b'{"a": 1}')]
        return one + [rpc.reply_batch(one[:3])]

    def run(self, data):
        _decode_reply(data)


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class WorkerTarget(Target):
    """A client request through a worker's whole loop: it is answered (or ignored), never raises."""
    name = "worker"
    errors = ()
    RESET_EVERY = 5000              # a fresh loop now and then: what valid requests write stays bounded

    def __init__(self):
        self.loop = None
        self.used = 0

    def _fresh(self):
        from paxos_core.core.config import CoreConfig
        from paxos_core.replica.loop import LoopSettings, ReplicaLoop
        from paxos_core.statemachine.store import MemoryStore

        self.clock = _Clock()
        core = CoreConfig(node_id=1, members=(1,), n_groups=4, group_offset=0, group_stride=2)
        settings = LoopSettings(node_id=1, index=0, workers=2, tick_s=0.01, lease_ticks=30)
        log = MemoryLog(1)
        self.loop = ReplicaLoop(settings, core, clock=self.clock, log=log, store=MemoryStore(),
                                send=lambda m: None, hosted=[0, 2, 4, 6], recovery=log.recover(),
                                rng=random.Random(5))
        self.used = 0

    def seeds(self):
        return _requests()

    def run(self, data):
        if self.loop is None or self.used >= self.RESET_EVERY:
            self._fresh()
        self.used += 1
        self.used += self.RESET_EVERY       # until the turn is over: a turn that raises leaves a fresh loop next
        loop = self.loop
        loop.poll_timeout()
        self.clock.t += 0.01
        loop.turn((), [(b"fuzz", data)])
        self.used -= self.RESET_EVERY
        for _identity, frame in loop.take_replies():
            rpc.decode_reply(frame)


class PeerTarget(Target):
    """A peer frame through a worker's whole loop (node 1 of 3): a frame that does not decode raises its
    FrameError; one that does is taken in by ``turn`` (the engine refuses what it cannot use), which never
    raises. The seeds are protocol messages with well-formed values, so that mutations reach the handlers."""
    name = "peer"
    errors = (errors.FrameError,)
    RESET_EVERY = 2000

    def __init__(self):
        self.loop = None
        self.used = 0

    def _fresh(self):
        from paxos_core.core.config import CoreConfig
        from paxos_core.replica.loop import LoopSettings, ReplicaLoop
        from paxos_core.statemachine.store import MemoryStore

        self.clock = _Clock()
        core = CoreConfig(node_id=DEST, members=(1, 2, 3), n_groups=4)
        settings = LoopSettings(node_id=DEST, index=0, workers=1, tick_s=0.01, lease_ticks=30)
        log = MemoryLog(DEST)
        self.loop = ReplicaLoop(settings, core, clock=self.clock, log=log, store=MemoryStore(),
                                send=lambda m: None, hosted=[0, 1, 2, 3], recovery=log.recover(),
                                rng=random.Random(6))
        self.used = 0

    def seeds(self):
        from paxos_core.core.ballot import pack
        from paxos_core.wire.message import Kind

        batch = codec.encode_batch([(2, 1, kv_ops.encode_put(b"k", b"v"))])
        entries = codec.encode_entries([(0, pack(1, 2), batch)])
        out = []
        for src in (2, 3):
            b = pack(1, src)
            messages = [Message(Kind.PREPARE, 0, 0, b, 0, 0, 0, b"", src=src),
                        Message(Kind.ACCEPT, 1, 0, b, 0, 0, 0, batch, src=src),
                        Message(Kind.PROMISE, 2, 0, b, 0, 0, 0, entries, src=src),
                        Message(Kind.CATCHUP_REPLY, 3, 0, 0, 1, 1, 0, entries, src=src),
                        Message(Kind.FORWARD, 0, 0, 0, 0, 0, 0, batch, src=src),
                        Message(Kind.CATCHUP_REQ, 1, 0, 0, 0, 64, 0, b"", src=src),
                        Message(Kind.STATE_REQ, 2, 0, 0, 0, 0, 0, b"", src=src)]
            out.append(codec.encode_frame(CLUSTER, src, DEST, messages))
            out.extend(codec.encode_frame(CLUSTER, src, DEST, [m]) for m in messages)
        return out

    def structured(self, rng):
        """A valid frame of protocol messages with fields from the edges and values that may not decode."""
        from paxos_core.core.ballot import pack

        src = rng.choice((2, 3))          # the transport refuses frames from itself and from non-members
        values = [b"", codec.encode_batch([(src, rng.randrange(9), b"v")]),
                  codec.encode_entries([(rng.randrange(4), pack(1, src), b"")])]
        messages = []
        for _ in range(rng.randint(1, 6)):
            value = rng.choice(values)
            if rng.random() < 0.5:
                value = mutate(rng, value, values)
            ballot = pack(rng.choice((0, 1, 2, 1 << 20, (1 << 48) - 1)), rng.choice((src, src, 1, 2, 3, 0xFFFF)))
            field = lambda: rng.choice((0, 1, 2, 5, 63, 64, 1 << 32) + INTERESTING)   # noqa: E731
            messages.append(Message(kind=rng.randint(1, 15), group=rng.choice((0, 1, 2, 3, 3, 4, 0xFFFFFFFF)),
                                    instance=field(), ballot=rng.choice((ballot, ballot, field())), mark=field(),
                                    aux=field(), chain=rng.randrange(1 << 32), value=value,
                                    flags=rng.randrange(256), inc=rng.choice((1, 1, 1, 0, 2, 0xFFFF)), src=src))
        return codec.encode_frame(CLUSTER, src, DEST, messages)

    def run(self, data):
        src, messages = codec.decode_frame(data, CLUSTER, DEST, 1 << 20, 1 << 16)
        if src not in (2, 3):
            return                        # the transport refuses it (runtime/transport.py): not the loop's input
        if self.loop is None or self.used >= self.RESET_EVERY:
            self._fresh()
        self.used += 1 + self.RESET_EVERY   # until the turn is over: a turn that raises leaves a fresh loop next
        self.loop.poll_timeout()
        self.clock.t += 0.01
        try:
            self.loop.turn(messages, ())
        except Exception as exc:          # a FrameError too: only decode_frame may raise one (documented)
            raise RuntimeError("the loop raised %s: %s" % (type(exc).__name__, exc)) from exc
        self.used -= self.RESET_EVERY

    fixup = FrameTarget.fixup


class RecordTarget(Target):
    """14-byte key | value, as a worker's RocksDB hands them to recovery."""
    name = "record"
    errors = (errors.RecordCorrupt, errors.UnknownVersion)

    def seeds(self):
        tuples = [rec.group_record(3, 2), rec.group_record(3, 2, True), rec.chain_record(3, 64, 0xABCDEF),
                  rec.repair_record(3, True), rec.promise_record(3, 1 << 17), rec.low_record(3, 10, 99),
                  rec.node_record(2, CLUSTER),
                  (rec.INSTANCE_RECORD, 3, 7, 1, 1 << 17, 1 << 16, 5, 1234, b"value"),
                  (rec.INSTANCE_RECORD, 0xFFFFFFFF, (1 << 64) - 1, 0, 0, 0, 0, 0, b"")]
        return [key + value for key, value in (rec.encode_record(t) for t in tuples)]

    def run(self, data):
        rec.decode_record(data[:14], data[14:])
        rec.parse_key(data[:14])

    def fixup(self, data):
        if len(data) < 18:
            return data
        return data[:-4] + struct.pack("<I", crc32c(bytes(data[:-4])))


class ConfigTarget(Target):
    """The bytes as a node's TOML file, through load_config (keys directory and all)."""
    name = "config"
    errors = (errors.ConfigError,)

    def __init__(self):
        from paxos_core.config import write_cluster

        # In memory where there is a tmpfs: a file per input is written and read back.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.tmp = tempfile.TemporaryDirectory(prefix="paxos-fuzz-config-", dir=shm)
        cluster = Path(self.tmp.name) / "cluster"
        write_cluster(cluster, nodes=3, workers=2, groups=16, base_port=21000)
        self.files = [p.read_bytes() for p in sorted(cluster.glob("*.toml"))]
        self.path = cluster / "fuzz.toml"
        import tomllib
        self.docs = [tomllib.loads(f.decode()) for f in self.files]

    def seeds(self):
        return list(self.files)

    def run(self, data):
        from paxos_core.config import load_config

        self.path.write_bytes(data)
        load_config(self.path)

    def structured(self, rng):
        """A valid node file with one to three fields changed, removed or added."""
        doc = json.loads(json.dumps(rng.choice(self.docs)))
        for _ in range(rng.randint(1, 3)):
            table, key = _random_field(rng, doc)
            choice = rng.randrange(4)
            if choice == 0:
                table.pop(key, None)
            elif choice == 1:
                table[rng.choice((key, "x" + key, "typo"))] = _random_value(rng)
            else:
                table[key] = _random_value(rng)
        try:
            return tomli_w.dumps(doc).encode()
        except (TypeError, ValueError):
            return None


def _random_field(rng, doc):
    table = doc
    while True:
        key = rng.choice(list(table)) if table else "cluster"
        value = table.get(key)
        if isinstance(value, dict) and rng.random() < 0.8:
            table = value
        elif isinstance(value, list) and value and isinstance(value[0], dict) and rng.random() < 0.8:
            table = rng.choice(value)
        else:
            return table, key


def _random_value(rng):
    kind = rng.randrange(9)
    if kind == 0:
        return rng.choice(INTERESTING) * rng.choice((1, -1))
    if kind == 1:
        return rng.choice((0.5, -1.0, 1e300, float("inf"), float("nan"), 0.0))
    if kind == 2:
        return rng.choice(("", "x", "127.0.0.1", "::1", "/", "../..", "a" * rng.randrange(2000), "\u00e9\u0000"))
    if kind == 3:
        return rng.choice((True, False))
    if kind == 4:
        return [rng.randrange(100) for _ in range(rng.randrange(4))]
    if kind == 5:
        return {"id": rng.randrange(-2, 70000), "host": "127.0.0.1"}
    if kind == 6:
        return [{"id": rng.randrange(1, 4), "host": "127.0.0.1", "peer_port": rng.randrange(70000),
                 "client_port": rng.randrange(70000)} for _ in range(rng.randrange(4))]
    if kind == 7:
        return datetime.date(2024, 1, 1)
    return rng.randrange(-5, 100000)


TARGETS = {t.name: t for t in (FrameTarget, EntriesTarget, BatchTarget, RequestTarget, ReplyTarget, WorkerTarget,
                               PeerTarget, RecordTarget, ConfigTarget)}


# ---------------------------------------------------------------------------------------------- mutation
def mutate(rng, data, seeds):
    """A mutation of `data`: one to eight edits of the kinds listed in the module docstring."""
    data = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        op = rng.randrange(11)
        n = len(data)
        if op == 0 and n:
            pos = rng.randrange(n)
            data[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            data[rng.randrange(n)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2 and n:
            del data[rng.randrange(n):]
        elif op == 3:
            data += rng.randbytes(rng.choice((1, 4, 8, 64)))
        elif op == 4:
            pos = rng.randrange(n + 1)
            data[pos:pos] = rng.randbytes(rng.choice((1, 2, 4, 8, 48)))
        elif op == 5 and n:
            pos = rng.randrange(n)
            del data[pos:pos + rng.choice((1, 4, 8, 48))]
        elif op in (6, 7) and n >= 2:
            # An integer field: an interesting value (huge lengths and counts), or the old value nudged.
            width = rng.choice([w for w in (2, 4, 8) if w <= n] or [1])
            pos = rng.randrange(n - width + 1)
            fmt = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[width]
            mask = (1 << (8 * width)) - 1
            if op == 6:
                value = rng.choice(INTERESTING) & mask
            else:
                (value,) = struct.unpack_from(fmt, data, pos)
                value = (value + rng.choice((-1, 1, -8, 8, 48, 1 << 20))) & mask
            struct.pack_into(fmt, data, pos, value)
        elif op == 8 and seeds:
            other = rng.choice(seeds)
            cut = rng.randrange(n + 1)
            data = data[:cut] + other[rng.randrange(len(other) + 1):]
        elif op == 9 and n:
            pos = rng.randrange(n)
            chunk = data[pos:pos + rng.choice((1, 4, 8, 48))]
            at = rng.randrange(n + 1)
            data[at:at] = chunk
        elif op == 10:
            data = bytearray(rng.randbytes(rng.randrange(80)))
    return bytes(data)


def generate(rng, target, seeds):
    """One input for `target` (the mutate engine)."""
    r = rng.random()
    if r < 0.03:
        return rng.randbytes(rng.randrange(200))
    if r < 0.05:
        return rng.choice(seeds)
    if r < 0.30:
        built = target.structured(rng)
        if built is not None:
            return built if rng.random() < 0.7 else target.fixup(mutate(rng, built, seeds))
    data = mutate(rng, rng.choice(seeds), seeds)
    if rng.random() < 0.5:
        data = target.fixup(data)
    return data


# ---------------------------------------------------------------------------------------------- running
def address_space():
    """This process's address space now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def bound_memory(extra_mb):
    """Cap this process's address space at its size now + `extra_mb` (RLIMIT_AS), once for the whole run: an
    allocation far beyond the input's size raises MemoryError instead of succeeding lazily."""
    limit = address_space() + extra_mb * (1 << 20)
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


def report(target, k, exc, data, out, crash_dir):
    """Print a crash; its input goes to a file in `crash_dir` (and is shown in hex when short)."""
    os.makedirs(crash_dir, exist_ok=True)
    path = os.path.join(crash_dir, "%s-%s.bin" % (target.name, k))
    with open(path, "wb") as f:
        f.write(data)
    shown = data.hex() if len(data) <= 200 else "%d bytes" % len(data)
    out("CRASH %s input %d: %s\n  input: %s\n  reproduce: python tools/fuzz.py --decoder %s --input %s"
        % (target.name, k, str(exc)[:600], shown, target.name, path))


def run_mutate(target, inputs, seed, out, crash_dir, max_report=20):
    rng = random.Random(seed)
    seeds = target.seeds()
    for s in seeds:                      # the seeds themselves, and the fix-up is a no-op on them
        assert target.fixup(s) == s, "fixup changes a valid %s" % target.name
    crashes = 0
    slowest = (0.0, b"")
    for k in range(inputs):
        data = seeds[k] if k < len(seeds) else generate(rng, target, seeds)
        t0 = time.perf_counter()
        try:
            target.check(data)
        except Crash as exc:
            crashes += 1
            if crashes <= max_report:
                report(target, k, exc, data, out, crash_dir)
        dt = time.perf_counter() - t0
        if dt > slowest[0]:
            slowest = (dt, data)
        if k and k % 100000 == 0:
            out("%s: %d inputs, %d crashes" % (target.name, k, crashes))
    return crashes, slowest


def run_atheris(target, inputs, seed, out):
    """libFuzzer's mutator through atheris, in a child process (atheris.Fuzz does not return)."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="paxos-fuzz-corpus-") as corpus:
        for k, s in enumerate(target.seeds()):
            Path(corpus, "seed%d" % k).write_bytes(s)
        cmd = [sys.executable, os.path.abspath(__file__), "--decoder", target.name, "--atheris-child",
               "--", "-runs=%d" % inputs, "-seed=%d" % (seed or 1), "-max_len=4096", "-print_final_stats=1",
               corpus]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        crashes = proc.stderr.count("CRASH ")
        for line in proc.stderr.splitlines():
            if line.startswith(("CRASH", "  input", "  reproduce", "stat::number_of_executed_units", "Done")):
                out(line)
        if proc.returncode not in (0,) and not crashes:
            out(proc.stderr[-3000:])
            crashes = 1
    return crashes, (0.0, b"")


def atheris_child(target, argv, crash_dir):
    import atheris

    atheris.instrument_all()
    seeds = target.seeds()

    def one(data):
        try:
            target.check(data)
        except Crash as exc:
            report(target, "atheris", exc, data, lambda line: sys.stderr.write(line + "\n"), crash_dir)
            raise

    def mutator(data, max_size, seed):
        rng = random.Random(seed)
        if rng.random() < 0.2:
            built = target.structured(rng)
            if built is not None:
                return built[:max_size]
        data = atheris.Mutate(data, max_size) if rng.random() < 0.7 else mutate(rng, data, seeds)[:max_size]
        return target.fixup(data) if rng.random() < 0.5 else data

    atheris.Setup([sys.argv[0]] + argv, one, custom_mutator=mutator)
    atheris.Fuzz()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decoder", required=True, help="one of %s, or all" % ", ".join(TARGETS))
    ap.add_argument("--inputs", type=int, default=100000, help="inputs per decoder (default 100000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the mutate engine (default 0)")
    ap.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    ap.add_argument("--memory-mb", type=int, default=1024,
                    help="address space allowed above the size at start, in MiB (default 1024)")
    ap.add_argument("--hex", help="run this one input (hex) and show what the decoder does with it")
    ap.add_argument("--input", help="run the input in this file (a crash's) and show what the decoder does")
    ap.add_argument("--crash-dir", default=os.path.join(tempfile.gettempdir(), "paxos-fuzz-crashes"),
                    help="where crashing inputs are written (default: %(default)s)")
    ap.add_argument("--atheris-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = list(TARGETS) if args.decoder == "all" else [args.decoder]
    for name in names:
        if name not in TARGETS:
            ap.error("unknown decoder %r (one of %s, or all)" % (name, ", ".join(TARGETS)))
    targets = [TARGETS[n]() for n in names]
    bound_memory(args.memory_mb)
    if args.atheris_child:
        atheris_child(targets[0], args.rest, args.crash_dir)
        return 0
    if args.hex is not None or args.input is not None:
        data = bytes.fromhex(args.hex) if args.hex is not None else Path(args.input).read_bytes()
        try:
            targets[0].check(data)
        except Crash as exc:
            print("CRASH: %s" % exc)
            return 1
        print("handled as documented")
        return 0
    status = 0

    def out(line):
        print(line, file=sys.stderr, flush=True)

    command = "python tools/fuzz.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for target in targets:
        t0 = time.monotonic()
        if args.engine == "atheris":
            crashes, slowest = run_atheris(target, args.inputs, args.seed, out)
        else:
            crashes, slowest = run_mutate(target, args.inputs, args.seed, out, args.crash_dir)
        seconds = time.monotonic() - t0
        status |= bool(crashes)
        print(json.dumps({"decoder": target.name, "engine": args.engine, "inputs": args.inputs, "crashes": crashes,
                          "seconds": round(seconds, 1), "seed": args.seed,
                          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                          "command": command, "slowest_input_ms": round(slowest[0] * 1e3, 2),
                          "package": os.path.dirname(paxos_core.__file__)}), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

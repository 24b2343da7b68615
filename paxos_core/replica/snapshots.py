"""Snapshot transfer, in place: a peer that needs values below this node's truncation mark gets the group's
state instead, streamed in checked chunks, staged beside the live state and swapped in atomically; no
process restarts, and the worker's other groups keep serving (docs/design/checkpoints.md, section 4).

Sans-I/O like the rest of the replica loop. The loop calls, each turn:

* :meth:`Snapshots.before_cycle` in step 4a: it builds sender files a bounded amount, sends granted chunks,
  stages received chunks and swaps verified stagings in. It returns the log records and the state machine
  writes that go into the cycle's ONE synced write (and may call ``engine.install``, whose records and
  range deletes go into the same write);
* :meth:`Snapshots.after_write` once that write is durable and before anything is applied: a swapped group's
  caches are dropped and its master state re-read, credit is granted for durably staged bytes, and the
  engine's ``offers`` and ``foreign`` messages of the cycle are queued for the next turn.

The protocol (message kinds in wire/message.pxd):

    holder                                   receiver (behind the holder's truncation mark)
      <- CATCHUP_REQ(first < low)
      build a file of the state at A (A = the applied mark at a turn boundary, at most the chosen mark)
      SNAP_OFFER(A, id, size, chain at A, header) ->
                                             accept if A is ahead of what it learned and applied;
                                             clear the inactive half, CHECKPOINT(STAGING) record: one write
      <- SNAP_REQ(id, next offset, credit)   (after the write: credit only for durably staged bytes)
      SNAP_CHUNK(id, offset, crc, payload) ->
                                             check the crc; stage the entries into the inactive half and the
                                             progress into the CHECKPOINT record: one write; ask for more
      ... SNAP_CHUNK(trailer, FLAG_LAST) ->  check entries, digest, size; then read the staged half back and
                                             check its digest again; then ONE write: engine.install (LOW = A,
                                             range deletes below A), the state machine's swap (meta names
                                             the new half, the old half deleted), the master state, and
                                             CHECKPOINT(INSTALLED)
                                             then catch up from A by the log, as usual

Stream: a file of frames (storage/snapfiles.py); frame 0 is the header (group, incarnation, A, chain and
value bytes at A, the master state at A, the snapshot id), then entry frames (``b"E"`` and whole entries
``tag u8 | key length u32 | key | value length u32 | value``, in key order), then the trailer (entry count,
crc32c over every entry's bytes, bytes of entries). Equal states give identical entry bytes on any node.

A crash anywhere leaves the old state or the new one: staging writes only the inactive half, the swap is one
batch. After a restart the receiver resumes from its CHECKPOINT record (SNAP_REQ at the next offset); the
sender's complete files survive its restart. A damaged chunk is asked for again (three times, then the
transfer is dropped); a damaged file at the sender is deleted and the transfer aborted; a staging whose
trailer or read-back does not check is discarded, never swapped in.

Only state machines built on SessionStateMachine (the KV, UserStateMachine, the object layer) have keyed
checkpoints; for others this module sends no offers (and retention keeps their logs).
"""
import logging
import struct
import time

from ..errors import RecordCorrupt
from ..statemachine.store import merge_store_ops
from ..core.engine import GROUP_STOPPED
from ..core.voters import BadAdopt, state_configs
from ..storage.records import BYTES_UNKNOWN, CHECKPOINT_RECORD, checkpoint_record
from ..storage.snapfiles import FRAME_HEADER
from ..wire.checksum import crc32c
from ..wire.message import FLAG_LAST, SNAP_ABORT, SNAP_CHUNK, SNAP_OFFER, SNAP_REQ, Message
from .applier import master_key
from .cycle import chain_at

log = logging.getLogger("paxos_core.snapshots")

HEADER = struct.Struct("<4sBBIHQIQB28sHQ")   # magic, version, kind, group, incarnation, A, chain at A, bytes
                                             # below A, has master, master state, source node, snapshot id
HEADER_MAGIC = b"PXSN"
# Version 2 of the header (a group that left its first membership configuration) is followed by the
# configuration state at A (core/voters.pyx VoterTable.state()): u16 length, then the bytes. Version 1 has none.
_CONFIG_LEN = struct.Struct("<H")
TRAILER = struct.Struct("<4sQIQ")            # magic, entries, digest, entry bytes
TRAILER_MAGIC = b"PXSE"
KEYED = 1
ENTRY_CHUNK = b"E"
_ENTRY_HEAD = struct.Struct("<cI")
_U32 = struct.Struct("<I")
_MASTER_NONE = bytes(28)

# CHECKPOINT record (instance 0) flags and body.
STAGING = 1
STAGED = 2          # the trailer checked and is durable: the read-back and the swap come next
INSTALLED = 4
PROGRESS = struct.Struct("<BBHQQIQQQIQB28s")  # version, half, source, id, A, chain, bytes below A, size,
                                              # next offset, digest, entries, has master, master state;
                                              # version 2: then the configuration state at A, as the header's

ABORT_UNKNOWN, ABORT_BUSY, ABORT_DAMAGED_AT_SOURCE, ABORT_DAMAGED_AT_RECEIVER, ABORT_NOT_NEEDED = 1, 2, 3, 4, 5
# A staging whose source sent nothing for this many retry intervals gives way to another peer's offer.
SOURCE_SILENCE_RETRIES = 4
ABORT_REASONS = {ABORT_UNKNOWN: "unknown snapshot", ABORT_BUSY: "busy", ABORT_DAMAGED_AT_SOURCE: "damaged at source",
                 ABORT_DAMAGED_AT_RECEIVER: "damaged at receiver", ABORT_NOT_NEEDED: "not needed"}
MAX_REFETCH = 3


class SnapshotSettings:
    """Budgets and limits (config.py's [snapshot] table)."""

    def __init__(self, chunk_bytes=256 << 10, window_bytes=2 << 20, build_bytes_per_turn=256 << 10,
                 send_bytes_per_turn=4 << 20, stage_bytes_per_turn=512 << 10, max_outgoing=4, max_incoming=4,
                 idle_timeout_s=30.0, retry_s=0.5):
        self.chunk_bytes = chunk_bytes
        self.window_bytes = window_bytes
        self.build_bytes_per_turn = build_bytes_per_turn
        self.send_bytes_per_turn = send_bytes_per_turn
        self.stage_bytes_per_turn = stage_bytes_per_turn
        self.max_outgoing = max_outgoing
        self.max_incoming = max_incoming
        self.idle_timeout_s = idle_timeout_s
        self.retry_s = retry_s


def encode_entries(entries):
    """The bytes of `(tag, key, value)` entries in the stream."""
    out = []
    for tag, key, value in entries:
        out.append(_ENTRY_HEAD.pack(tag, len(key)))
        out.append(key)
        out.append(_U32.pack(len(value)))
        out.append(value)
    return b"".join(out)


def decode_entries(data):
    """[(tag, key, value)] of an entry chunk's body; RecordCorrupt if it does not parse whole."""
    entries = []
    pos, n = 0, len(data)
    try:
        while pos < n:
            tag, klen = _ENTRY_HEAD.unpack_from(data, pos)
            pos += _ENTRY_HEAD.size
            key = bytes(data[pos:pos + klen])
            pos += klen
            (vlen,) = _U32.unpack_from(data, pos)
            pos += 4
            value = bytes(data[pos:pos + vlen])
            pos += vlen
            if len(key) != klen or len(value) != vlen:
                raise RecordCorrupt("snapshot entry runs past its chunk")
            entries.append((tag, key, value))
    except struct.error:
        raise RecordCorrupt("snapshot entry chunk is cut short") from None
    return entries


class Outgoing:
    """A snapshot file this node builds or holds for one group."""
    __slots__ = ("group", "incarnation", "snap_id", "applied", "key", "view", "after", "entries", "digest",
                 "entry_bytes", "complete", "waiters", "grants", "used", "started", "bytes_sent", "size")

    def __init__(self, group, incarnation, snap_id, applied, now):
        self.group = group
        self.incarnation = incarnation
        self.snap_id = snap_id
        self.applied = applied
        self.key = (group, incarnation, applied, snap_id)
        self.view = None
        self.after = None
        self.entries = 0
        self.digest = 0
        self.entry_bytes = 0
        self.complete = False
        self.waiters = set()          # peers to offer it to once it is complete
        self.grants = {}              # peer -> [next offset, end of credit]
        self.used = now
        self.started = now
        self.bytes_sent = 0
        self.size = 0                 # bytes of the complete file


class Incoming:
    """A snapshot this node is receiving for one group (mirrored in the group's CHECKPOINT record)."""
    __slots__ = ("group", "src", "snap_id", "applied", "chain", "bytes_below", "size", "next", "digest",
                 "entries", "half", "master", "state", "chunks", "refetches", "asked", "ask_after", "fresh",
                 "started", "entry_bytes", "requested", "config", "heard")

    def __init__(self, group, src, snap_id, applied, chain, bytes_below, size, next_offset, half, master, now):
        self.group = group
        self.src = src
        self.snap_id = snap_id
        self.applied = applied
        self.chain = chain
        self.bytes_below = bytes_below
        self.size = size
        self.next = next_offset
        self.digest = 0
        self.entries = 0
        self.entry_bytes = 0
        self.half = half
        self.master = master          # raw master state at A, or None
        self.state = STAGING
        self.chunks = {}              # offset -> (payload, last) received, not yet staged
        self.refetches = {}           # offset -> bad checksums seen there
        self.asked = now              # when the last SNAP_REQ left
        self.requested = next_offset  # the end of the bytes asked for so far (a new ask goes on from there)
        self.ask_after = False        # send SNAP_REQ once this turn's write is durable
        self.fresh = True             # accepted this turn: clear the half and write the record first
        self.started = now
        self.heard = now              # when its source last sent us a chunk of it
        self.config = b""             # the membership configuration state at A (empty: the first one)

    def progress_record(self, flags):
        body = PROGRESS.pack(2 if self.config else 1, self.half, self.src, self.snap_id, self.applied, self.chain,
                             self.bytes_below, self.size, self.next, self.digest, self.entries,
                             self.master is not None, self.master or _MASTER_NONE)
        if self.config:
            body += _CONFIG_LEN.pack(len(self.config)) + self.config
        return checkpoint_record(self.group, 0, flags, body)


def decode_progress(record):
    """The fields of a CHECKPOINT record's body as a dict; RecordCorrupt if it does not parse."""
    body = record[8]
    if len(body) < PROGRESS.size:
        raise RecordCorrupt("checkpoint record body of %d bytes" % len(body))
    (version, half, src, snap_id, applied, chain, bytes_below, size, next_offset, digest, entries, has_master,
     master) = PROGRESS.unpack(body[:PROGRESS.size])
    if version not in (1, 2) or half not in (0, 1):
        raise RecordCorrupt("checkpoint record version %d, half %d" % (version, half))
    config = _config_tail(body, PROGRESS.size, version)
    if config is None:
        raise RecordCorrupt("checkpoint record body of %d bytes does not fit its version %d" % (len(body), version))
    return dict(half=half, src=src, snap_id=snap_id, applied=applied, chain=chain, bytes_below=bytes_below,
                size=size, next=next_offset, digest=digest, entries=entries,
                master=master if has_master else None, flags=record[3], config=config)


def _config_tail(data, at, version):
    """The configuration state after a fixed part of `at` bytes: empty for version 1 (nothing may follow),
    the length-prefixed bytes for version 2 (well formed: core/voters.pyx state_configs); None if it does not
    fit."""
    if version == 1:
        return b"" if len(data) == at else None
    if len(data) < at + _CONFIG_LEN.size:
        return None
    (n,) = _CONFIG_LEN.unpack_from(data, at)
    config = bytes(data[at + _CONFIG_LEN.size:])
    if n == 0 or len(config) != n:
        return None
    try:
        state_configs(config)
    except BadAdopt:
        return None
    return config


class Snapshots:
    """Both sides of snapshot transfer for one worker's groups. Ports: see the module docstring."""

    def __init__(self, node_id, engine, sm, store, log_port, files, send, rng, settings=None, clock=time.monotonic,
                 applier=None, plant=""):
        """`store`: the state machine's Store underneath the loop's StagedStore (its views are frozen
        reads); `files`: storage/snapfiles.py; `clock()`: seconds (the loop's clock)."""
        self.node_id = node_id
        self.engine = engine
        self.sm = sm
        self.store = store
        self.log = log_port
        self.files = files
        self.send = send
        self.rng = rng
        self.settings = settings or SnapshotSettings()
        self.clock = clock
        self.applier = applier
        self.plant = plant
        self.keyed = hasattr(sm, "checkpoint_entries")
        self.outgoing = {}            # group -> Outgoing (one file per group at a time)
        self.incoming = {}            # group -> Incoming
        self.queue = []               # ("offer", dest, group, first) and ("msg", Message), for the next turn
        self.swapped = []             # groups swapped in by this turn's write
        self.discards = []            # stagings dropped outside step 4a: cleared in the next write
        self.writes = 0               # turns whose write carried staging, a swap or a discard (the simulator
                                      # aims crashes at them)
        self.plant_cleared = {}       # plant "install-non-atomic": group -> when its old state was deleted
        self.stats = {"snapshots_sent": 0, "snapshot_bytes_sent": 0, "snapshots_installed": 0,
                      "snapshot_bytes_installed": 0, "snapshot_chunks_refetched": 0, "snapshots_aborted": 0,
                      "snapshot_chunks_duplicate": 0, "snapshot_sources_switched": 0,
                      "snapshot_install_seconds": 0.0, "snapshot_send_seconds": 0.0, "stagings_discarded": 0}
        self.install_hook = None      # the simulator's oracle: called (group, A, chain) after a durable swap
        now = clock()
        if files is not None:
            for key in files.complete():
                group, incarnation, applied, snap_id = key
                if not engine.hosts(group) or engine.incarnation_of(group) != incarnation or group in self.outgoing:
                    files.delete(key)
                    continue
                out = Outgoing(group, incarnation, snap_id, applied, now)
                out.complete = True
                out.size = files.size(key)
                self.outgoing[group] = out

    # ------------------------------------------------------------------ start-up
    def resume(self, recovery):
        """Pick up stagings that a restart interrupted (their CHECKPOINT records); returns (records, store
        ops) for the first write: stagings that cannot resume are discarded (their half cleared)."""
        records, ops = [], []
        now = self.clock()
        for group, state in recovery.groups.items():
            if not self.engine.hosts(group):
                continue
            if state.checkpoint_damaged:
                records.append(checkpoint_record(group, 0, 0, b""))
                if self.keyed:
                    ops.append(self.sm.clear_half_ops(group, self.sm.inactive_half(group)))
                self.stats["stagings_discarded"] += 1
                continue
            rec = state.checkpoint
            if rec is None or not rec[3] & (STAGING | STAGED) or not self.keyed:
                continue
            try:
                p = decode_progress(rec)
            except RecordCorrupt:
                p = None
            if (p is None or p["half"] != self.sm.inactive_half(group)
                    or p["applied"] <= self.engine.learned(group)[0]):
                records.append(checkpoint_record(group, 0, 0, b""))
                ops.append(self.sm.clear_half_ops(group, self.sm.inactive_half(group)))
                self.stats["stagings_discarded"] += 1
                continue
            inc = Incoming(group, p["src"], p["snap_id"], p["applied"], p["chain"], p["bytes_below"], p["size"],
                           p["next"], p["half"], p["master"], now)
            inc.digest, inc.entries = p["digest"], p["entries"]
            inc.config = p["config"]
            inc.state = STAGED if rec[3] & STAGED else STAGING
            inc.fresh = False
            inc.ask_after = inc.state == STAGING
            self.incoming[group] = inc
        return records, merge_store_ops(*ops) if ops else None

    # ------------------------------------------------------------------ step 4a
    def pending(self):
        """True while there is snapshot work for the next turn (the loop then polls without waiting)."""
        if self.queue:
            return True
        for out in self.outgoing.values():
            if not out.complete or any(g[0] < min(g[1], out.size) for g in out.grants.values()):
                return True
        for inc in self.incoming.values():
            if (inc.fresh or (inc.state == STAGED and inc.group not in self.plant_cleared)
                    or (inc.chunks and inc.next in inc.chunks)):
                return True
        return False

    def _prune(self):
        """Forget transfers of groups this worker no longer hosts (removed while a transfer ran: the group's
        records, CHECKPOINT record included, and both its halves went with it)."""
        hosts = self.engine.hosts
        for group in [g for g in self.incoming if not hosts(g)]:
            del self.incoming[group]
        for out in [o for o in self.outgoing.values() if not hosts(o.group)
                    or self.engine.incarnation_of(o.group) != o.incarnation]:
            self._drop_outgoing(out)
        self.discards = [inc for inc in self.discards if hosts(inc.group)]

    def before_cycle(self):
        """Step 4a. Returns (log records, store ops or None) for this cycle's write."""
        self._prune()
        now = self.clock()
        queue, self.queue = self.queue, []
        out_msgs = []
        for item in queue:
            if item[0] == "offer":
                self._on_offer_effect(item[1], item[2], item[3], now, out_msgs)
            else:
                self._on_message(item[1], now, out_msgs)
        self._build(now, out_msgs)
        self._serve(out_msgs)
        records, ops = [], []
        discards, self.discards = self.discards, []
        for inc in discards:
            records.append(checkpoint_record(inc.group, 0, 0, b""))
            ops.append(self.sm.clear_half_ops(inc.group, inc.half))
        self._stage(now, out_msgs, records, ops)
        if records or ops:
            self.writes += 1
        self._expire(now, out_msgs)
        if out_msgs:
            self.send(out_msgs)
        return records, merge_store_ops(*ops) if ops else None

    def after_write(self, fx, ticks):
        """The cycle's write is durable: finish swaps, grant credit, queue the cycle's offers and messages."""
        for group in self.swapped:
            self.sm.forget_cached(group)
            if self.applier is not None:
                self.applier.restore(group, ticks)
            inc = self.incoming.pop(group, None)
            if inc is not None:
                self.stats["snapshots_installed"] += 1
                self.stats["snapshot_bytes_installed"] += inc.entry_bytes
                self.stats["snapshot_install_seconds"] += self.clock() - inc.started
                log.info("node %d: group %d: installed a snapshot at %d from node %d (%d entries)",
                         self.node_id, group, inc.applied, inc.src, inc.entries)
            if self.install_hook is not None:
                self.install_hook(group, inc.applied if inc else None, inc.chain if inc else None)
        self.swapped = []
        self._prune()
        asks = []
        now = self.clock()
        for inc in self.incoming.values():
            if inc.ask_after:
                inc.ask_after = False
                inc.asked = now
                self._ask(inc, asks)
        if asks:
            self.send(asks)
        if self.keyed:
            for dest, group, first in fx.offers:
                self.queue.append(("offer", dest, group, first))
        for m in fx.foreign:
            self.queue.append(("msg", m))

    # ------------------------------------------------------------------ sender
    def _msg(self, kind, group, instance, ballot, mark, aux, chain, value, flags=0):
        m = Message(kind, group, instance, ballot, mark, aux, chain, value, flags)
        m.inc = self.engine.incarnation_of(group)
        return m

    def _on_offer_effect(self, dest, group, first, now, out_msgs):
        if not self.engine.hosts(group) or self.files is None:
            return
        out = self.outgoing.get(group)
        if out is not None and out.complete and out.applied < self.engine.low(group):
            self._drop_outgoing(out)           # older than our log: of no use to anyone
            out = None
        if out is None:
            if sum(1 for o in self.outgoing.values() if self._busy(o, now)) >= self.settings.max_outgoing:
                return                          # it asks again; an offer comes when a slot is free
            idle = sorted((o.used, o.group) for o in self.outgoing.values() if not self._busy(o, now))
            while idle and len(self.outgoing) >= 2 * self.settings.max_outgoing:
                self._drop_outgoing(self.outgoing[idle.pop(0)[1]])     # the least recently used idle file
            out = self._start_build(group, now)
            if out is None:
                return
        out.used = now
        if out.complete:
            self._send_offer(out, dest, out_msgs)
        else:
            out.waiters.add(dest)

    def _start_build(self, group, now):
        view = self.store.snapshot()
        try:
            applied = self.sm.checkpoint_applied(view, group)
            found = chain_at(self.log, group, applied, with_config=True)
            if found is None or applied == 0:
                view.close()
                return None
            chain, nbytes, base_config, adopts = found
            config = self.engine.config_state_after(group, base_config, adopts, applied)
            master = view.get(master_key(group))
        except Exception:
            view.close()
            raise
        out = Outgoing(group, self.engine.incarnation_of(group), self.rng.getrandbits(63) or 1, applied, now)
        out.view = view
        self.files.begin(out.key)
        has_master = master is not None and len(master) == 28
        header = HEADER.pack(HEADER_MAGIC, 2 if config else 1, KEYED, group, out.incarnation, applied, chain,
                             nbytes, has_master, master if has_master else _MASTER_NONE, self.node_id, out.snap_id)
        if config:
            header += _CONFIG_LEN.pack(len(config)) + config
        self.files.append(out.key, header)
        self.outgoing[group] = out
        return out

    def _build(self, now, out_msgs):
        budget = self.settings.build_bytes_per_turn
        chunk_bytes = self.settings.chunk_bytes
        for out in list(self.outgoing.values()):
            if out.complete or budget <= 0:
                continue
            entries = self.sm.checkpoint_entries(out.view, out.group, out.after)
            chunk, size, done = [], 0, True
            for entry in entries:
                chunk.append(entry)
                size += 9 + len(entry[1]) + len(entry[2])
                if size >= chunk_bytes:
                    budget -= self._append_chunk(out, chunk)
                    chunk, size = [], 0
                    if budget <= 0:
                        done = False
                        break
            if chunk:
                budget -= self._append_chunk(out, chunk)
            if done:
                self.files.append(out.key, TRAILER.pack(TRAILER_MAGIC, out.entries, out.digest, out.entry_bytes))
                self.files.finish(out.key)
                out.size = self.files.size(out.key)
                out.view.close()
                out.view = None
                out.complete = True
                for dest in sorted(out.waiters):
                    self._send_offer(out, dest, out_msgs)
                out.waiters.clear()

    def _append_chunk(self, out, chunk):
        body = encode_entries(chunk)
        out.digest = crc32c(body, out.digest)
        out.entries += len(chunk)
        out.entry_bytes += len(body)
        out.after = chunk[-1][:2]
        self.files.append(out.key, ENTRY_CHUNK + body)
        return len(body)

    def _send_offer(self, out, dest, out_msgs):
        try:
            header, _ = self.files.read_frame(out.key, 0)
        except (RecordCorrupt, OSError, KeyError):
            self._drop_outgoing(out)
            return
        found = HEADER.unpack(header[:HEADER.size])
        out_msgs.append((dest, self._msg(SNAP_OFFER, out.group, out.applied, out.snap_id, self.files.size(out.key),
                                         self.engine.low(out.group), found[6], header)))

    def _serve(self, out_msgs):
        budget = self.settings.send_bytes_per_turn
        for out in list(self.outgoing.values()):
            if not out.complete:
                continue
            size = out.size
            for dest, grant in list(out.grants.items()):
                while grant[0] < grant[1] and grant[0] < size and budget > 0:
                    try:
                        payload, end = self.files.read_frame(out.key, grant[0])
                    except (RecordCorrupt, OSError, KeyError) as exc:
                        log.error("node %d: snapshot file of group %d is damaged (%s): deleted", self.node_id,
                                  out.group, exc)
                        for peer in out.grants:
                            out_msgs.append((peer, self._msg(SNAP_ABORT, out.group, out.applied, out.snap_id, 0,
                                                             ABORT_DAMAGED_AT_SOURCE, 0, b"")))
                        self._drop_outgoing(out)
                        break
                    last = end >= size
                    m = self._msg(SNAP_CHUNK, out.group, out.applied, out.snap_id, grant[0], size if last else 0,
                                  crc32c(payload), payload, FLAG_LAST if last else 0)
                    out_msgs.append((dest, m))
                    out.bytes_sent += len(payload)
                    self.stats["snapshot_bytes_sent"] += len(payload)
                    budget -= len(payload)
                    if last:
                        self.stats["snapshots_sent"] += 1
                        self.stats["snapshot_send_seconds"] += self.clock() - out.started
                    grant[0] = end
                if out.group not in self.outgoing:
                    break

    def _busy(self, out, now):
        """A file being built, or being streamed to a peer that has not asked for its last byte yet and asked
        for something within idle_timeout, counts against max_outgoing and is never evicted; a complete one
        that nobody is in the middle of is a cache. (A receiver waiting for its staging write before it asks
        for more is in the middle: evicting its file made it start over from nothing.) A peer has had the
        whole file once we sent its last byte: chunks go whole, so what was sent may run past what was
        granted, and a file counted busy for the grant alone held the only slot while other groups waited for
        an offer (soak seed 2,200,787)."""
        if not out.complete:
            return True
        return (any(g[0] < out.size for g in out.grants.values())
                and now - out.used <= self.settings.idle_timeout_s)

    def _drop_outgoing(self, out):
        if out.view is not None:
            out.view.close()
            out.view = None
        self.files.delete(out.key)
        if self.outgoing.get(out.group) is out:
            del self.outgoing[out.group]

    def _expire(self, now, out_msgs):
        timeout = self.settings.idle_timeout_s
        for out in list(self.outgoing.values()):
            if out.complete and now - out.used > timeout:
                self._drop_outgoing(out)
        retry = self.settings.retry_s
        for inc in self.incoming.values():
            if inc.state == STAGING and not inc.fresh and not inc.ask_after and now - inc.asked > retry:
                inc.asked = now               # silence: what was in flight is lost; ask again from the first gap
                self._ask(inc, out_msgs, again=True)

    def pins(self):
        """group -> the applied mark of its snapshot file: the log keeps its values from there (a receiver
        catches up from A out of this node's log)."""
        return {g: out.applied for g, out in self.outgoing.items()}

    # ------------------------------------------------------------------ messages
    def _on_message(self, m, now, out_msgs):
        kind = m.kind
        group = m.group
        if not self.engine.hosts(group):
            return
        if kind == SNAP_REQ:
            out = self.outgoing.get(group)
            if out is None or out.snap_id != m.ballot or not out.complete:
                out_msgs.append((m.src, self._msg(SNAP_ABORT, group, m.instance, m.ballot, 0, ABORT_UNKNOWN, 0, b"")))
                return
            out.used = now
            grant = out.grants.get(m.src)
            if m.aux == 0 or m.mark >= out.size:
                out.grants.pop(m.src, None)
            elif grant is not None and m.mark == grant[1]:
                grant[1] = min(m.mark + m.aux, out.size)      # more credit: the grant goes on
            else:
                out.grants[m.src] = [m.mark, min(m.mark + m.aux, out.size)]   # (again) from this offset
        elif kind == SNAP_OFFER:
            self._on_offer(m, now, out_msgs)
        elif kind == SNAP_CHUNK:
            inc = self.incoming.get(group)
            if inc is None or inc.snap_id != m.ballot or inc.src != m.src or inc.state != STAGING:
                return
            if crc32c(m.value) != m.chain:
                self.stats["snapshot_chunks_refetched"] += 1
                count = inc.refetches[m.mark] = inc.refetches.get(m.mark, 0) + 1
                if count > MAX_REFETCH:
                    self._abandon(inc, ABORT_DAMAGED_AT_RECEIVER, out_msgs)
                elif m.mark == inc.next:
                    inc.asked = now
                    self._ask(inc, out_msgs, again=True)
                return
            inc.heard = now
            if m.mark < inc.next or m.mark in inc.chunks:
                self.stats["snapshot_chunks_duplicate"] += 1      # sent twice: wasted bytes
            elif m.mark < inc.next + self.settings.window_bytes:
                inc.chunks[m.mark] = (m.value, bool(m.flags & FLAG_LAST))
        elif kind == SNAP_ABORT:
            inc = self.incoming.get(group)
            if inc is not None and inc.snap_id == m.ballot and inc.src == m.src:
                self._abandon(inc, 0, out_msgs)
            out = self.outgoing.get(group)
            if out is not None and out.snap_id == m.ballot:
                out.grants.pop(m.src, None)
                if (m.aux == ABORT_NOT_NEEDED and not self._busy(out, now)
                        and self.sm.applied_next(group) > out.applied):
                    # The peer's state is at or past this file's mark (e.g. its log was lost but not its
                    # state machine): the next offer builds a file at our newer mark. Kept, it was offered
                    # and refused forever (soak seed 2,104,741: a node never rebuilt its group).
                    self._drop_outgoing(out)

    def _on_offer(self, m, now, out_msgs):
        group = m.group
        applied = m.instance
        if not self.keyed:
            return
        inc = self.incoming.get(group)
        silent = None
        if inc is not None:
            if inc.snap_id == m.ballot and inc.src == m.src:
                if (inc.state == STAGING and not inc.fresh and now - inc.asked > self.settings.retry_s):
                    # Offered again after a silence (the sender lost our request): ask again from the first
                    # gap. A repeated offer while chunks flow (the engine offers at every catch-up request of
                    # ours) changes nothing: starting over then sent the chunks in flight twice.
                    inc.asked = now
                    self._ask(inc, out_msgs, again=True)
                return
            if (inc.state != STAGING or inc.fresh or now - inc.heard <= SOURCE_SILENCE_RETRIES * self.settings.retry_s
                    or self.plant == "stage-silent-source"):     # planted bug: a silent source is waited for ever
                return
            # Another peer offers while our source has sent nothing through several asks: it may be gone for
            # good (crashed, replaced, removed from the cluster). Asked again for ever, it kept the group
            # rebuilding to the end (simulator seed 1,666: a wiped node staged from a removed node). This
            # offer replaces it, below, if it is one we take.
            silent = inc
        if self.engine.group_status(group) == GROUP_STOPPED:
            return
        if applied <= self.engine.learned(group)[0] or applied < self.sm.applied_next(group):
            out_msgs.append((m.src, self._msg(SNAP_ABORT, group, applied, m.ballot, 0, ABORT_NOT_NEEDED, 0, b"")))
            return
        if silent is None and len(self.incoming) >= self.settings.max_incoming:
            return
        try:
            head = HEADER.unpack(m.value[:HEADER.size])
        except struct.error:
            return
        (magic, version, kind, hgroup, incarnation, happlied, chain, nbytes, has_master, master, src,
         snap_id) = head
        config = _config_tail(m.value, HEADER.size, version) if version in (1, 2) else None
        if (magic != HEADER_MAGIC or config is None or kind != KEYED or hgroup != group or happlied != applied
                or chain != m.chain or snap_id != m.ballot or src != m.src
                or incarnation != self.engine.incarnation_of(group)):
            log.warning("node %d: group %d: a snapshot offer from node %d does not match its header: ignored",
                        self.node_id, group, m.src)
            return
        if silent is not None:
            # Dropped here and now: the new staging's first write clears the half and rewrites the record.
            del self.incoming[group]
            self.stats["snapshot_sources_switched"] += 1
            out_msgs.append((silent.src, self._msg(SNAP_ABORT, group, silent.applied, silent.snap_id, 0, ABORT_UNKNOWN,
                                                   0, b"")))
            log.info("node %d: group %d: node %d sent nothing of its snapshot for %.1f s; staging node %d's instead",
                     self.node_id, group, silent.src, now - silent.heard, m.src)
        inc = Incoming(group, m.src, snap_id, applied, chain, nbytes, m.mark, FRAME_HEADER + len(m.value),
                       self.sm.inactive_half(group), master if has_master else None, now)
        inc.config = config
        self.incoming[group] = inc

    def _ask(self, inc, out_msgs, again=False):
        """SNAP_REQ for what the window has room for: the bytes from the end of what was asked before (the
        sender appends them to its grant) or, `again`, from the first byte not received in order (the sender
        starts over there: a silence, a damaged chunk, a repeated offer). Asking again from the first gap for
        every turn's credit would make the sender send the chunks in flight a second time."""
        want = inc.next
        while want in inc.chunks:
            want += FRAME_HEADER + len(inc.chunks[want][0])
        start = want if again else max(want, inc.requested)
        end = min(inc.next + self.settings.window_bytes, inc.size)
        if end > start:
            out_msgs.append((inc.src, self._msg(SNAP_REQ, inc.group, inc.applied, inc.snap_id, start, end - start,
                                                0, b"")))
            inc.requested = end

    # ------------------------------------------------------------------ receiver: staging and swap
    def _stage(self, now, out_msgs, records, ops):
        budget = self.settings.stage_bytes_per_turn
        for inc in list(self.incoming.values()):
            group = inc.group
            if inc.fresh:
                inc.fresh = False
                ops.append(self.sm.clear_half_ops(group, inc.half))
                records.append(inc.progress_record(STAGING))
                inc.ask_after = True
                continue
            if inc.state == STAGED:
                self._swap(inc, records, ops, out_msgs)
                continue
            staged = False
            while inc.next in inc.chunks and budget > 0 and inc.state == STAGING:
                payload, last = inc.chunks.pop(inc.next)
                end = inc.next + FRAME_HEADER + len(payload)
                if last:
                    if not self._trailer_checks(inc, payload, end):
                        self._abandon(inc, ABORT_DAMAGED_AT_RECEIVER, out_msgs, records, ops)
                        break
                    inc.next = end
                    inc.state = STAGED
                    records.append(inc.progress_record(STAGED))
                    break
                if payload[:1] != ENTRY_CHUNK:
                    self._abandon(inc, ABORT_DAMAGED_AT_RECEIVER, out_msgs, records, ops)
                    break
                body = payload[1:]
                try:
                    entries = decode_entries(body)
                    ops.append(self.sm.stage_ops(group, inc.half, entries))
                except RecordCorrupt:
                    self._abandon(inc, ABORT_DAMAGED_AT_RECEIVER, out_msgs, records, ops)
                    break
                inc.digest = crc32c(body, inc.digest)
                inc.entries += len(entries)
                inc.entry_bytes += len(body)
                inc.next = end
                budget -= len(payload)
                staged = True
            if staged and inc.state == STAGING and group in self.incoming:
                records.append(inc.progress_record(STAGING))
                inc.ask_after = True

    def _trailer_checks(self, inc, payload, end):
        try:
            magic, entries, digest, entry_bytes = TRAILER.unpack(payload)
        except struct.error:
            return False
        return magic == TRAILER_MAGIC and entries == inc.entries and digest == inc.digest and end == inc.size

    def _swap(self, inc, records, ops, out_msgs):
        group = inc.group
        if inc.applied <= self.engine.learned(group)[0] or inc.applied < self.sm.applied_next(group):
            self._abandon(inc, ABORT_NOT_NEEDED, out_msgs, records, ops)   # caught up meanwhile
            return
        # Read the staged half back: staging bugs and damage at rest are caught before anything is swapped.
        view = self.store.snapshot()
        try:
            digest, count = 0, 0
            for entry in self.sm.staged_entries(view, group, inc.half):
                digest = crc32c(encode_entries([entry]), digest)
                count += 1
        finally:
            view.close()
        if digest != inc.digest or count != inc.entries:
            log.error("node %d: group %d: the staged snapshot from node %d reads back wrong (%d entries, digest "
                      "%08x; expected %d, %08x): discarded", self.node_id, group, inc.src, count, digest,
                      inc.entries, inc.digest)
            self._abandon(inc, ABORT_DAMAGED_AT_RECEIVER, out_msgs, records, ops)
            return
        if self.plant == "install-non-atomic":
            # Planted bug: a naive install that deletes the old state first, in a write of its own, and swaps
            # the new one in some 20 ms later; a crash in between leaves the group with neither state.
            cleared = self.plant_cleared.get(group)
            if cleared is None:
                self.plant_cleared[group] = self.clock()
                ops.append(([], [], self.sm.swap_ops(group, inc.applied, inc.half)[2]))
                return
            if self.clock() - cleared < 0.02:
                return
            del self.plant_cleared[group]
        nbytes = 0 if inc.bytes_below == BYTES_UNKNOWN else inc.bytes_below
        self.engine.install(group, inc.applied, inc.chain, nbytes, inc.src, inc.config)
        swap = self.sm.swap_ops(group, inc.applied, inc.half)
        ops.append(swap)
        if inc.master is not None:
            ops.append(([(master_key(group), inc.master)], [], []))
        records.append(inc.progress_record(INSTALLED))
        self.swapped.append(group)

    def _abandon(self, inc, reason, out_msgs, records=None, ops=None):
        """Drop a staging: its half is cleared and its record emptied (in this turn's write, or the next)."""
        if self.incoming.get(inc.group) is not inc:
            return
        del self.incoming[inc.group]
        self.stats["snapshots_aborted"] += 1
        if reason:
            out_msgs.append((inc.src, self._msg(SNAP_ABORT, inc.group, inc.applied, inc.snap_id, 0, reason, 0, b"")))
        if inc.fresh:
            return                            # nothing of it was written
        if records is None:
            self.discards.append(inc)         # its cleanup rides the next write
            return
        records.append(checkpoint_record(inc.group, 0, 0, b""))
        ops.append(self.sm.clear_half_ops(inc.group, inc.half))

    def status(self):
        return {
            "outgoing": [{"group": o.group, "applied": o.applied, "complete": o.complete, "sent": o.bytes_sent,
                          "peers": sorted(o.grants)} for o in self.outgoing.values()],
            "incoming": [{"group": i.group, "src": i.src, "applied": i.applied, "bytes": i.next, "size": i.size,
                          "phase": {STAGING: "staging", STAGED: "verify"}.get(i.state, "?")}
                         for i in self.incoming.values()],
            "file_bytes": self.files.bytes_total() if self.files is not None else 0,
            **self.stats,
        }


__all__ = ["Snapshots", "SnapshotSettings", "CHECKPOINT_RECORD"]

"""One simulated node: the production replica loop (replica/loop.py) behind simulated ports.

The node is a process with its own clock and its own idea of time. A turn of its loop runs when input
arrives or a timer is due, and takes EVERYTHING that arrived since the last turn (a burst), as a worker's
poll does. Time passes inside a turn: a synced write takes the disk's latency (sometimes a long stall), and
a paused process (SIGSTOP, a GC pause, a VM freeze) stops between any two calls the loop makes into its
ports; input that arrives meanwhile waits for the next turn. A crash can strike at any of those calls, even
in the middle of a synced write.

Ports given to the loop (the same ones the worker gives it, simulated):
  clock()           the node's clock: its own rate (bounded drift) and offset; pauses show up in it
  log               SimLog: records in the simulated disk, one synced write per cycle
  store             SimStore: the state machine's keys in the same disk, written unsynced; snapshot() copies
  send(messages)    frames through the real codec into the simulated network
"""
from ..statemachine.store import CopiedStoreView, Store
from ..storage.records import (CHECKPOINT_RECORD, GROUP_RECORD, encode_records, group_key, log_range_deletes,
                               read_chain, read_chain_bytes, read_chosen, read_low)
from ..storage.recovery import Recovery, recover
from ..storage.snapfiles import MemorySnapshotFiles
from .disk import DELETE_RANGE

STORE_PREFIX = b"S"          # the state machine's keys, next to the log's ("G...", "N...") in one disk


class SimCrash(Exception):
    """The node's process died at this point (kill -9, power cut)."""


class SimNode:
    def __init__(self, sim, node_id):
        self.sim = sim
        self.id = node_id
        self.loop = None
        self.incarnation = 0
        self.rate = 1.0              # clock rate (skew)
        self.offset = 0.0            # clock value at simulated time 0, seconds
        self.local_now = 0           # µs: where this node's process is in simulated time
        self.busy_until = 0          # µs: when its current turn ends
        self.inbox = []              # frames arrived since the last turn
        self.client_inbox = []       # (identity, frame) client requests arrived since the last turn
        self.next_wake = None        # µs of the pending wake-up event, None if none
        self.crash_times = []        # planned crashes (µs), ascending
        self.pause = None            # (from µs, length µs): a pause that strikes at a port call after `from`
        self.down_since = None
        self.left = False            # removed from the cluster, it left (stopped for good, as production's does)
        self.marker_pending = False  # the identity marker is written back after the first synced write
        self.lost_state = False      # its storage was damaged or wiped and it has not rebuilt yet
        self.ever_lost = False       # ... at any time in the run
        self.seen_rebuilding = set()  # group incarnations seen rebuilding here since it last lost its state
        self.regroup_ops = []        # admin operations for it: ("remove" | "add", group), done at its next turn
        self.regrouped = set()       # groups removed here by the operator (regroup): put back if it loses them
        from .disk import SimDisk
        self.disk = SimDisk()
        self.snapfiles = MemorySnapshotFiles()    # snapshot files for peers (not fsynced: checked on read)

    @property
    def up(self):
        return self.loop is not None

    # -------------------------------------------------------------- the process: time, pauses, crashes
    def step(self):
        """Called at every port call: a planned crash or a pending pause strikes here."""
        if self.crash_times and self.local_now >= self.crash_times[0]:
            raise SimCrash()
        pause = self.pause
        if pause is not None and self.local_now >= pause[0] and self.sim.rng.random() < 0.35:
            self.pause = None
            self.sim.stats["pauses"] += 1
            resume = self.local_now + pause[1]
            if self.crash_times and resume >= self.crash_times[0]:
                self.local_now = self.crash_times[0]      # killed while it stood still
                raise SimCrash()
            self.local_now = resume

    def clock(self):
        self.step()
        return self.clock_at(self.local_now)

    def clock_at(self, time_us):
        return self.offset + self.rate * time_us / 1e6

    def send(self, messages):
        self.step()
        self.sim.transmit(self, messages)


class SimLog:
    """The log port over the simulated disk: one synced write per call, as RocksLog.write."""

    def __init__(self, node):
        self.node = node
        self.disk = node.disk
        self.last_write_seconds = 0.0
        self.syncs = 0

    def write(self, records, deletes=None, store_ops=None):
        """One batch (records, then the log's range deletes, then the store's ops, as RocksLog.write), one
        synced write."""
        node = self.node
        node.step()
        if not records and not deletes and not store_ops:
            return 0
        batch = encode_records(records)
        if deletes:
            batch += [(DELETE_RANGE, begin, end) for begin, end in log_range_deletes(deletes)]
        if store_ops:
            batch += store_batch(*store_ops)
        self.disk.write(batch)
        self._sync()
        return len(records)

    def _sync(self):
        node = self.node
        latency = node.sim.fsync_latency()
        end = node.local_now + latency
        if node.crash_times and node.crash_times[0] < end:
            node.local_now = node.crash_times[0]
            raise SimCrash()          # the batch is written, not synced: the crash decides its fate
        node.local_now = end
        self.disk.sync()
        self.syncs += 1
        self.last_write_seconds = latency / 1e6
        if node.marker_pending:
            node.marker_pending = False
            self.disk.marker = True   # the rebuild is on record: the marker can come back
        if node.sim.rng.random() < 0.05:
            self.disk.flush()

    def read_chosen(self, group, first, end):
        self.node.step()
        return read_chosen(self.disk.get, group, first, end)

    def read_chain(self, group, instance):
        self.node.step()
        return read_chain(self.disk.get, group, instance)

    def read_chain_bytes(self, group, instance, with_config=False):
        self.node.step()
        return read_chain_bytes(self.disk.get, group, instance, with_config)

    def read_low(self, group, with_config=False):
        self.node.step()
        return read_low(self.disk.get, group, with_config)

    def recover(self):
        return recover([(k, v) for k, v in self.disk.items(durable=True) if not k.startswith(STORE_PREFIX)])

    def set_aside(self, finding):
        """As RocksLog.set_aside: the whole disk (log and store) is synced damage; the node starts empty.
        Returns the empty Recovery with ``amnesia`` set and the one-line ``report``."""
        self.disk.set_aside()
        return Recovery(amnesia=True, report="synced state damaged: %s; set aside, an empty log started in its "
                                             "place" % finding)

    def delete_group(self, group):
        """Every record of the group but its GROUP record (the tombstone), as RocksLog.delete_group."""
        begin = group_key(0, group, 0)
        end = group_key(GROUP_RECORD, group, 0)
        self.node.step()
        self.disk.write([(DELETE_RANGE, begin, end), (DELETE_RANGE, group_key(CHECKPOINT_RECORD, group, 0),
                                                      group_key(CHECKPOINT_RECORD + 1, group, 0))])
        self._sync()


class SimStore(Store):
    """The state machine's Store over the same disk, written unsynced (the next synced write covers it)."""

    def __init__(self, node):
        self.node = node
        self.disk = node.disk

    def get(self, key):
        self.node.step()
        return self.disk.get(STORE_PREFIX + key)

    def scan(self, prefix):
        self.node.step()
        full = STORE_PREFIX + prefix
        n = len(STORE_PREFIX)
        for key, value in self.disk.range(full, _prefix_end(full)):
            yield key[n:], value

    def write(self, puts, deletes, delete_ranges=()):
        self.node.step()
        batch = store_batch(puts, deletes, delete_ranges)
        if batch:
            self.disk.write(batch)

    def snapshot(self):
        """A copy of the store's keys as reads see them now (unsynced writes included, as a RocksDB snapshot
        includes the memtable); every read of the view is a port call, where a crash or pause may strike."""
        self.node.step()
        n = len(STORE_PREFIX)
        items = [(key[n:], value) for key, value in self.disk.range(STORE_PREFIX, _prefix_end(STORE_PREFIX))]
        return CopiedStoreView(items, on_read=self.node.step)


def store_batch(puts, deletes, delete_ranges=()):
    """A Store.write's operations as one disk batch under STORE_PREFIX, in that write's order."""
    p = STORE_PREFIX
    batch = [(DELETE_RANGE, p + begin, p + end) for begin, end in delete_ranges]
    batch += [(DELETE_RANGE, p + key, p + key + b"\x00") for key in deletes]
    batch += [(p + key, value) for key, value in puts]
    return batch


def _prefix_end(prefix):
    """The smallest key above every key that starts with `prefix`."""
    body = prefix.rstrip(b"\xff")
    return body[:-1] + bytes([body[-1] + 1]) if body else b"\xff" * (len(prefix) + 1)

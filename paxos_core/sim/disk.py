"""A simulated disk with the failure behaviour of a RocksDB: a write-ahead log, flushed tables, a marker file.

Writes arrive as atomic batches (a WriteBatch). A batch is durable once a sync completes after it was
written; a sync covers every batch before it (one write-ahead log). Reads see unsynced writes too, as a
memtable does. Now and then synced batches are flushed into the table (an SST), as RocksDB flushes memtables.

Failures, each as RocksDB (with paranoid checks) and our open policy (storage/log.pyx) meet them:

* ``crash(tear)``: a power cut. Unsynced batches are lost; with `tear`, the first of them reached the medium
  damaged. That torn tail was never synced, so opening drops it whole (never half-applied).
* ``damage_wal()``: one bit flipped in a SYNCED batch of the write-ahead log. Opening finds it; the data
  after it cannot be trusted to be complete, so the node must not recover point-in-time over it: the open
  reports synced damage (``open() -> (items, "...")``) and the node rebuilds from its peers.
* ``damage_table()``: one bit flipped in a flushed record's value: the record's own checksum catches it when
  recovery decodes it (the group rebuilds from its peers).
* ``damage_block()``: a table block no longer reads (RocksDB's block checksum): synced damage, as above.
* ``lose_file()``: a table file vanished: synced damage, as above.
* ``wipe()``: the whole data directory is gone, its identity marker with it.
* ``set_aside()``: what the node does with synced damage: it starts on an empty log (RocksLog moves the DB
  aside); also used when recovery finds a damaged GROUP record (``Recovery.registry_damage``).

With the planted bug "wal-rollback" a damaged synced batch is instead recovered point-in-time: it and every
batch after it are silently dropped.
"""
from ..wire.checksum import crc32c

DELETE_RANGE = object()


class SimDisk:
    def __init__(self):
        self.table = {}            # flushed records (key -> value)
        self.wal = []              # [batch]: synced batches not yet flushed (in order)
        self.damaged_wal = None    # index in self.wal of a batch with a flipped bit
        self.unsynced = []         # [(batch, checksum)] written, not yet synced
        self.view = {}             # what reads see: table + wal + unsynced
        self.marker = True         # the identity marker `paxos-core init` writes
        self.broken = ""           # damage that opening will find (synced damage)
        self.syncs = 0
        self.batches = 0
        self.records = 0
        self.torn_batches = 0

    # -------------------------------------------------------------- writes
    def write(self, batch):
        """Append one atomic batch: a list of (key, value) or (DELETE_RANGE, begin, end)."""
        self.batches += 1
        self.records += len(batch)
        self.unsynced.append((batch, _batch_crc(batch)))
        _apply(self.view, batch)

    def sync(self):
        """Make every batch written so far durable."""
        for batch, _ in self.unsynced:
            self.wal.append(batch)
        self.unsynced = []
        self.syncs += 1

    def flush(self):
        """Move the synced write-ahead log into the table (a memtable flush)."""
        if self.damaged_wal is not None:
            return               # a damaged log is found at the next open, not flushed over
        for batch in self.wal:
            _apply(self.table, batch)
        self.wal = []

    # -------------------------------------------------------------- failures
    def crash(self, tear=False, rng=None):
        """Power cut: unsynced batches are lost; with `tear`, the first of them was partly written (and is
        dropped at open, being an incomplete tail). Returns how many batches were lost."""
        lost = len(self.unsynced)
        if tear and self.unsynced:
            batch, crc = self.unsynced[0]
            if _batch_crc(_tear(batch, rng)) == crc:    # the tear left it intact: it made it to the medium
                self.wal.append(batch)
                lost -= 1
            else:
                self.torn_batches += 1
        self.unsynced = []
        self._rebuild_view()
        return lost

    def damage_wal(self, rng):
        """Flip a bit in a synced, unflushed batch. False if there is none."""
        if not self.wal:
            return False
        self.damaged_wal = rng.randrange(len(self.wal))
        return True

    def damage_table(self, rng, accept=lambda key: True):
        """Flip a bit in a flushed record whose key `accept`s. Returns the key, or None."""
        keys = sorted(k for k in self.table if accept(k))
        if not keys:
            return None
        key = keys[rng.randrange(len(keys))]
        value = bytearray(self.table[key])
        if not value:
            return None
        value[rng.randrange(len(value))] ^= 1 << rng.randrange(8)
        self.table[key] = bytes(value)
        self._rebuild_view()
        return key

    def damage_block(self):
        self.broken = "a table block fails its checksum"

    def lose_file(self):
        self.broken = "a table file is missing"

    def wipe(self):
        self.__init__()
        self.marker = False

    # -------------------------------------------------------------- opening
    def open(self, plant=""):
        """What a node finds when it opens its storage: the durable records, and one line about synced
        damage ("" when none). With synced damage the node sets the old data aside and starts empty, as the
        real log does (storage/log.pyx); with the plant "wal-rollback" it silently keeps what lies before the
        damaged batch instead."""
        damage = self.broken
        if self.damaged_wal is not None:
            if plant == "wal-rollback":
                del self.wal[self.damaged_wal:]
                self.damaged_wal = None
                self._rebuild_view()
            else:
                damage = damage or "a synced write-ahead log batch fails its checksum"
        if damage:
            self.set_aside()
            return damage
        return ""

    def set_aside(self):
        """Synced damage: the old data is set aside and the node starts empty; until the rebuild is on record
        (the node's first synced write) the marker stays away, so a crash before then finds the same amnesia
        again."""
        self.__init__()
        self.marker = False

    # -------------------------------------------------------------- reads
    def get(self, key):
        return self.view.get(key)

    def items(self, durable=False):
        """All (key, value) pairs in key order (durable: as a restart would find them)."""
        if durable:
            store = dict(self.table)
            for batch in self.wal:
                _apply(store, batch)
            return sorted(store.items())
        return sorted(self.view.items())

    def range(self, begin, end):
        """(key, value) pairs with begin <= key < end, in key order, from the live view."""
        return sorted((k, v) for k, v in self.view.items() if begin <= k < end)

    def _rebuild_view(self):
        view = dict(self.table)
        for batch in self.wal:
            _apply(view, batch)
        for batch, _ in self.unsynced:
            _apply(view, batch)
        self.view = view


def _apply(store, batch):
    for item in batch:
        if item[0] is DELETE_RANGE:
            begin, end = item[1], item[2]
            for key in [k for k in store if begin <= k < end]:
                del store[key]
        else:
            store[item[0]] = item[1]


def _batch_crc(batch):
    crc = 0
    for item in batch:
        if item[0] is DELETE_RANGE:
            crc = crc32c(b"\x00" + item[1] + item[2], crc)
        else:
            crc = crc32c(item[0], crc)
            crc = crc32c(item[1], crc)
    return crc


def _tear(batch, rng):
    """The batch as a torn write leaves it: a suffix of its bytes replaced with garbage."""
    if not batch:
        return batch
    k = rng.randrange(len(batch)) if rng else len(batch) - 1
    torn = list(batch[:k])
    item = batch[k]
    if item[0] is DELETE_RANGE:
        torn.append((DELETE_RANGE, item[1], b""))
        return torn
    key, value = item
    cut = rng.randrange(len(value) + 1) if rng else len(value) // 2
    torn.append((key, value[:cut] + bytes([0xA5]) * (len(value) - cut + 1)))
    return torn

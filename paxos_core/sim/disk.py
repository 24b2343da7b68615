"""A simulated disk with the failure behaviour of a write-ahead-logged key-value store.

Writes arrive as atomic batches (like a RocksDB WriteBatch). A batch is durable only once a sync has
completed after it was written. A crash loses every batch not yet synced; the oldest of those may be torn
(partly on the medium). Like RocksDB's WAL replay, the disk finds a torn batch by its checksum and drops it
whole, so a torn write never half-applies.

Reads see unsynced writes too (as a memtable does), which is what a live node reads.
"""

from ..wire.checksum import crc32c


DELETE_RANGE = object()


class SimDisk:
    def __init__(self):
        self.durable = {}          # key -> value, as a restart would find it
        self.unsynced = []         # [(batch, checksum)] written, not yet synced
        self.view = {}             # what reads see: durable + unsynced
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

    def pending_batches(self):
        return len(self.unsynced)

    def sync(self, count=None):
        """Make the first `count` unsynced batches (default: all) durable."""
        if count is None:
            count = len(self.unsynced)
        for batch, _ in self.unsynced[:count]:
            _apply(self.durable, batch)
        del self.unsynced[:count]
        self.syncs += 1

    # -------------------------------------------------------------- failures
    def crash(self, tear=False, rng=None):
        """Power cut: unsynced batches are lost; with `tear`, the first of them was partly written.

        The torn batch reaches the medium with damaged bytes; replay (as RocksDB's WAL recovery does) checks
        each batch's checksum and drops the damaged one, so it never applies. Returns how many batches were
        lost.
        """
        lost = len(self.unsynced)
        if tear and self.unsynced:
            batch, crc = self.unsynced[0]
            damaged = _tear(batch, rng)
            if _batch_crc(damaged) == crc:      # the tear happened to leave it intact: it is durable
                _apply(self.durable, batch)
                lost -= 1
            else:
                self.torn_batches += 1
        self.unsynced = []
        self.view = dict(self.durable)
        return lost

    # -------------------------------------------------------------- reads
    def get(self, key):
        return self.view.get(key)

    def items(self, durable=False):
        """All (key, value) pairs in key order."""
        source = self.durable if durable else self.view
        return sorted(source.items())

    def range(self, begin, end):
        """(key, value) pairs with begin <= key < end, in key order, from the live view."""
        return sorted((k, v) for k, v in self.view.items() if begin <= k < end)

    def damage(self, key, position, xor=0xFF):
        """Flip bits of a durable record in place (bit rot): for corruption tests."""
        value = bytearray(self.durable[key])
        value[position % len(value)] ^= xor
        self.durable[key] = bytes(value)
        if not self.unsynced:
            self.view[key] = self.durable[key]


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

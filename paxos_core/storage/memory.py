"""A log kept in a dict: the RocksLog interface without a disk, for tests and examples.

It has no crash semantics of its own (everything written is "durable"); the simulator's SimDisk models
crashes, and RocksLog is the real thing.
"""
from .records import (BYTES_UNKNOWN, CHECKPOINT_RECORD, GROUP_RECORD, INSTANCE_RECORD, LOW_RECORD, decode_record,
                      encode_record, group_key, read_chain, read_chain_bytes, read_chosen, read_low)
from .recovery import recover


class MemoryLog:
    """`sm_store` (a MemoryStore, optional) receives the `store_ops` of :meth:`write`, as RocksLog writes them
    into the state machine's column family of the same DB."""

    def __init__(self, node_id=0, cluster_id=0, sm_store=None):
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.sm_store = sm_store
        self.store = {}
        self.syncs = 0
        self.writes = 0
        self.records_written = 0
        self.last_write_seconds = 0.0       # no disk: writes take no time worth measuring

    def write(self, records, deletes=None, store_ops=None):
        """As RocksLog.write: the records, then the range deletes, then the store's ops, all at once."""
        if not records and not deletes and not store_ops:
            return 0
        if store_ops and self.sm_store is None:
            raise ValueError("MemoryLog.write got store_ops but has no sm_store")
        for record in records:
            key, value = encode_record(record)
            self.store[key] = value
        for rtype, group, first, end in deletes or ():
            begin, stop = group_key(rtype, group, first), group_key(rtype, group, end)
            for key in [k for k in self.store if begin <= k < stop]:
                del self.store[key]
        if store_ops:
            self.sm_store.write(*store_ops)
        self.writes += 1
        self.syncs += 1
        self.records_written += len(records)
        return len(records)

    def get(self, key):
        return self.store.get(key)

    def read_chosen(self, group, first, end):
        return read_chosen(self.store.get, group, first, end)

    def read_chain(self, group, instance):
        return read_chain(self.store.get, group, instance)

    def read_chain_bytes(self, group, instance, with_config=False):
        return read_chain_bytes(self.store.get, group, instance, with_config)

    def read_low(self, group, with_config=False):
        return read_low(self.store.get, group, with_config)

    def items(self):
        return sorted(self.store.items())

    def recover(self):
        return recover(self.items())

    def truncate(self, group, below):
        from ..core.learner import chain_next

        low_key = group_key(LOW_RECORD, group, 0)
        low, chain = 0, 0
        if low_key in self.store:
            rec = decode_record(low_key, self.store[low_key])
            low, chain = rec[6], rec[7]
        if below <= low:
            return 0
        entries = self.read_chosen(group, low, below)
        if len(entries) != below - low:
            raise ValueError("group %d: cannot truncate below %d, the records stop at %d"
                             % (group, below, low + len(entries)))
        for instance, _, value in entries:
            chain = chain_next(chain, instance, value)
            del self.store[group_key(INSTANCE_RECORD, group, instance)]
        key, value = encode_record((LOW_RECORD, group, 0, 0, 0, BYTES_UNKNOWN, below, chain, b""))
        self.store[key] = value
        return below - low

    def delete_group(self, group):
        """Every record of the group but its GROUP record (the tombstone the caller wrote first)."""
        begin, end = group_key(0, group, 0), group_key(GROUP_RECORD, group, 0)
        begin2, end2 = group_key(CHECKPOINT_RECORD, group, 0), group_key(CHECKPOINT_RECORD + 1, group, 0)
        for key in [k for k in self.store if begin <= k < end or begin2 <= k < end2]:
            del self.store[key]
        self.writes += 1
        self.syncs += 1

    def close(self):
        pass

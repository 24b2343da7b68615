"""Writes for the one-batch power-cut test (tests/test_powercut.py): log records, log range deletes and state
machine writes in ONE RocksLog.write per step, then a check after the cut that they came back together.

    powercut_batch.py DB load      step i writes: INSTANCE record (group 0, instance i), a range delete of
                                   the instances below i - 8, and into the "sm" column family: meta = i,
                                   key "k<i>", a range delete of the keys below "k<i - 8>"; prints "ACK i"
                                   once the write returned (synced)
    powercut_batch.py DB load-split  the control: the same, the log's part and the state machine's part as two
                                   writes
    powercut_batch.py DB verify    prints one JSON object: the highest instance, the meta, and both sides'
                                   key sets, as found after the cut
"""
import json
import sys

from paxos_core.storage.log import RocksLog
from paxos_core.storage.records import INSTANCE_RECORD, decode_record, parse_key
from paxos_core.statemachine.store import RocksStore

KEEP = 8


def _key(i):
    return b"k%010d" % i


def load(path, split=False):
    """`split`: the control, the same writes as two (the log's synced, then the store's unsynced), which a
    power cut can separate."""
    log = RocksLog(path, 1, 7)
    store = RocksStore(log.rdict)
    state = log.recover()
    group = state.groups.get(0)
    start = group.top if group else 0
    for i in range(start, start + 10_000_000):
        record = (INSTANCE_RECORD, 0, i, 0, 1, 1, 0, 0, b"v%d" % i)
        deletes = [(INSTANCE_RECORD, 0, 0, i - KEEP)] if i >= KEEP else []
        store_ops = ([(b"meta", b"%d" % i), (_key(i), b"x" * 100)], [],
                     [(_key(0), _key(i - KEEP))] if i >= KEEP else [])
        if split:
            log.write([record], deletes)
            store.write(*store_ops)
        else:
            log.write([record], deletes, store_ops)
        print("ACK", i, flush=True)


def verify(path):
    log = RocksLog(path, 1, 7)
    state = log.recover()
    group = state.groups.get(0)
    store = RocksStore(log.rdict)
    meta = store.get(b"meta")
    keys = sorted(int(k[1:]) for k, _ in store.scan(b"k"))
    instances = []
    for key, value in log.items():
        rtype, g, instance = parse_key(key)
        if rtype == INSTANCE_RECORD:
            decode_record(key, value)
            instances.append(instance)
    print(json.dumps({"top": group.top if group else 0, "meta": int(meta) if meta is not None else None,
                      "keys": keys, "instances": sorted(instances), "damage": log.damage}))
    store.close()
    log.close()


if __name__ == "__main__":
    {"load": load, "load-split": lambda path: load(path, split=True), "verify": verify}[sys.argv[2]](sys.argv[1])

"""The RocksDB log: group commit, node identity, durability settings, truncation, damaged records, WAL tails."""
import glob
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from paxos_core.errors import ConfigError, UnknownVersion
from paxos_core.sim.loopback import LoopbackCluster
from paxos_core.storage.log import RocksLog
from paxos_core.storage.memory import MemoryLog
from paxos_core.storage.records import (INSTANCE_RECORD, NODE_KEY, decode_record, encode_record, group_key,
                                       node_record)
from paxos_core.wire.checksum import crc32c
from paxos_core.wire.codec import decode_batch

CLUSTER = 0xABC


def record(group, instance, value=b"v"):
    return (INSTANCE_RECORD, group, instance, 0, 65537, 65537, instance, 0, value)


def test_one_synced_write_per_cycle_for_all_groups(tmp_path):
    log = RocksLog(tmp_path / "db", 1, CLUSTER)
    syncs = log.syncs
    assert log.write([record(g, 0) for g in range(500)]) == 500
    assert log.syncs == syncs + 1 and log.writes >= 1
    assert log.write([]) == 0 and log.syncs == syncs + 1
    assert [e[0] for e in log.read_chosen(7, 0, 1)] == [0]
    log.close()


def test_node_identity_is_checked_on_open(tmp_path):
    RocksLog(tmp_path / "db", 1, CLUSTER).close()
    with pytest.raises(ConfigError, match="belongs to node 1"):
        RocksLog(tmp_path / "db", 2, CLUSTER)
    with pytest.raises(ConfigError, match="cluster"):
        RocksLog(tmp_path / "db", 1, CLUSTER + 1)
    log = RocksLog(tmp_path / "db", 1, CLUSTER)
    key, value = encode_record(node_record(1, CLUSTER))
    body = bytes([7]) + value[1:-4]                        # a future format version, correctly checksummed
    log.put_raw(NODE_KEY, body + crc32c(body, crc32c(NODE_KEY)).to_bytes(4, "little"))
    log.close()
    with pytest.raises(UnknownVersion):
        RocksLog(tmp_path / "db", 1, CLUSTER)


def test_durability_setting(tmp_path, caplog):
    with pytest.raises(ConfigError, match="durability"):
        RocksLog(tmp_path / "a", 1, CLUSTER, "fast")
    with caplog.at_level(logging.WARNING):
        log = RocksLog(tmp_path / "b", 1, CLUSTER, "unsafe-no-sync")
    assert any("NOT synced" in r.getMessage() for r in caplog.records)
    syncs = log.syncs
    log.write([record(0, 0)])
    assert log.syncs == syncs, "the unsafe mode does not sync"
    log.close()


def _cluster(tmp_path, **kw):
    return LoopbackCluster(nodes=3, groups=2, window=1,
                           log_factory=lambda n: RocksLog(tmp_path / ("node-%d" % n), n, CLUSTER), **kw)


def _history(cluster, n=12):
    for k in range(n):
        cluster.propose(1, 0, b"val-%02d" % k)
    cluster.tick(3)


def _mutate(log, key, how):
    value = bytearray(log.get(key))
    if how == "key":          # the record found under another key: move it one instance up
        rtype, group, instance = key[5], int.from_bytes(key[1:5], "big"), int.from_bytes(key[6:], "big")
        other = group_key(rtype, group, instance + 1)
        log.put_raw(other, bytes(value))
        log.delete_raw(key)
        return other
    offsets = {"version": 0, "flags": 2, "promise": 6, "ballot": 14, "mark": 22, "chain": 29, "length": 33,
               "value": 40, "checksum": len(value) - 1}
    if how == "truncated":
        log.put_raw(key, bytes(value[: len(value) // 2]))
        return key
    value[offsets[how]] ^= 0x21
    log.put_raw(key, bytes(value))
    return key


REGIONS = ["key", "version", "flags", "promise", "ballot", "mark", "chain", "length", "value", "checksum",
           "truncated"]


@pytest.mark.parametrize("region", REGIONS)
def test_damaged_record_is_detected_never_applied_and_repaired_from_peers(tmp_path, region):
    cluster = _cluster(tmp_path)
    _history(cluster)
    leader_values = {i: v for g, i, v in cluster.chosen[1] if g == 0}
    cluster.crash(2)
    key = group_key(INSTANCE_RECORD, 0, 4)
    _mutate(cluster.logs[2], key, region)
    recovery = cluster.restart(2)
    assert recovery.corrupt_records >= 1, "the damage went unnoticed"
    assert any(g == 0 and i in (4, 5) for g, i, _ in recovery.problems())
    assert cluster.engines[2].group_view(0)["status"] == "repairing"
    cluster.propose(1, 0, b"after")
    cluster.tick(cluster.configs[2].repair_wait_ticks + 10)
    # Never applied: everything node 2 learned after the restart is exactly what the leader chose.
    for g, i, v in cluster.chosen[2]:
        if g == 0 and i in leader_values:
            assert v == leader_values[i]
    assert cluster.engines[2].group_view(0)["status"] == "ok"
    assert cluster.engines[2].learned(0) == cluster.engines[1].learned(0)
    # Repaired: the records at the damaged places decode and hold the chosen values.
    for instance in (4, 5):
        k = group_key(INSTANCE_RECORD, 0, instance)
        rec = decode_record(k, cluster.logs[2].get(k))
        assert rec[8] == leader_values[instance]
    for log in cluster.logs.values():
        log.close()


WRITER = textwrap.dedent("""
    import sys
    from paxos_core.storage.log import RocksLog
    log = RocksLog(sys.argv[1], 1, %d)
    for batch in range(200):
        log.write([(1, g, batch, 0, 65537, 65537, batch, 0, b"x" * 50) for g in range(10)])
        print(batch, flush=True)
    sys.stdin.read()      # wait to be killed: the log is never closed
""" % CLUSTER)


@pytest.mark.parametrize("cut", [1, 17, 200])
def test_truncated_wal_tail_is_detected_and_the_partial_batch_never_applied(tmp_path, cut):
    path = str(tmp_path / "db")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "199":
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    wal = max(glob.glob(os.path.join(path, "*.log")), key=os.path.getmtime)
    size = os.path.getsize(wal)
    assert size > cut
    with open(wal, "r+b") as f:
        f.truncate(size - cut)
    log = RocksLog(path, 1, CLUSTER)
    assert log.wal_tail_damaged and "dropped" in log.open_report
    recovery = log.recover()
    assert recovery.corrupt_records == 0
    present = {}
    for g, state in recovery.groups.items():
        for batch in range(200):
            k = group_key(INSTANCE_RECORD, g, batch)
            present.setdefault(batch, set()).add(log.get(k) is not None)
    complete = [b for b, seen in present.items() if seen == {True}]
    partial = [b for b, seen in present.items() if len(seen) > 1]
    assert not partial, "a batch was applied in part: %s" % partial
    assert complete == list(range(len(complete))), "only a tail is dropped"
    assert 150 < len(complete) < 200
    log.close()


class BatchLog(MemoryLog):
    """A MemoryLog that remembers its batches, to drop the last one as WAL point-in-time recovery does."""

    def __init__(self, node):
        super().__init__(node)
        self.batches = []

    def write(self, records, deletes=None, store_ops=None):
        if records:
            self.batches.append([encode_record(r)[0] for r in records])
        return super().write(records, deletes, store_ops)

    def drop_last_batches(self, n):
        for keys in self.batches[-n:]:
            for key in keys:
                self.store.pop(key, None)
        del self.batches[-n:]


def test_node_that_lost_its_wal_tail_relearns_from_peers():
    cluster = LoopbackCluster(nodes=3, groups=1, window=2, log_factory=BatchLog)
    for k in range(30):
        cluster.propose(1, 0, b"w%d" % k)
    cluster.crash(3)
    cluster.logs[3].drop_last_batches(3)
    cluster.restart(3)
    cluster.propose(1, 0, b"after")
    cluster.tick(3)
    assert cluster.engines[3].learned(0) == cluster.engines[1].learned(0)
    end = cluster.engines[1].learned(0)[0]
    mine = cluster.logs[3].read_chosen(0, 0, end)
    theirs = cluster.logs[1].read_chosen(0, 0, end)
    assert [v for _, _, v in mine] == [v for _, _, v in theirs]


def test_truncation_deletes_a_prefix_and_keeps_the_chain(tmp_path):
    cluster = _cluster(tmp_path)
    _history(cluster, 30)
    log = cluster.logs[1]
    before = cluster.engines[1].learned(0)
    assert log.truncate(0, 20) == 20
    assert log.read_chosen(0, 0, 20) == []
    assert log.get(group_key(INSTANCE_RECORD, 0, 19)) is None
    assert log.truncate(0, 10) == 0, "below the current low: nothing to do"
    with pytest.raises(ValueError):
        log.truncate(0, 10_000)
    cluster.crash(1)
    recovery = cluster.restart(1)
    state = recovery.groups[0]
    assert state.low == 20 and state.stop_reason == ""
    assert (state.chosen_next, state.chain) == before or state.chosen_next == before[0] - 1
    cluster.propose(1, 0, b"after-truncation")
    cluster.tick(3)
    assert cluster.engines[1].learned(0) == cluster.engines[2].learned(0)
    payloads = [p for _, _, v in log.read_chosen(0, 20, cluster.engines[1].learned(0)[0]) for _, _, p in decode_batch(v)]
    assert b"after-truncation" in payloads

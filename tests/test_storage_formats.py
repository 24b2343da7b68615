"""Record formats and the one-batch write that checkpoints and truncation build on (docs/design/checkpoints.md,
step 1): LOW and CHAIN records version 2 (with the value bytes below them), version-1 records still read,
the CHECKPOINT record, and `log.write(records, deletes, store_ops)` on every log (RocksLog, MemoryLog, the
simulator's SimLog) as one atomic write."""
import random
import struct

import pytest

from paxos_core.core.learner import chain_next
from paxos_core.errors import RecordCorrupt, UnknownVersion
from paxos_core.statemachine.store import MemoryStore, RocksStore
from paxos_core.storage.log import RocksLog
from paxos_core.storage.memory import MemoryLog
from paxos_core.storage.records import (BYTES_UNKNOWN, CHAIN_RECORD, CHECKPOINT_RECORD, GROUP_RECORD,
                                       INSTANCE_RECORD, LOW_RECORD, PROMISE_RECORD, chain_record,
                                       checkpoint_record, decode_record, encode_record, group_key, group_record,
                                       low_record, parse_key, promise_record, read_low)
from paxos_core.storage.recovery import recover
from paxos_core.wire.checksum import crc32c


def _v1(key, body):
    """A version-1 record as an older build wrote it: the body, then crc32c over key and body."""
    return body + struct.pack("<I", crc32c(body, crc32c(key)))


def instance(group, i, value=b"v", mark=0, chain=0):
    return (INSTANCE_RECORD, group, i, 0, 65537, 65537, mark, chain, value)


def test_low_and_chain_records_carry_the_bytes_below_them():
    for rec in (low_record(3, 640, 0xDEADBEEF, 123456789), chain_record(3, 640, 0xCAFEF00D, 1 << 40)):
        key, value = encode_record(rec)
        assert value[0] == 2
        assert decode_record(key, value) == rec
    key, value = encode_record(low_record(3, 64, 7))
    assert decode_record(key, value)[5] == BYTES_UNKNOWN, "a writer that does not count says so"


def test_version_1_low_and_chain_records_still_read_with_the_bytes_unknown():
    low_key = group_key(LOW_RECORD, 9, 0)
    old_low = _v1(low_key, bytes([1, LOW_RECORD, 0, 0]) + struct.pack("<QI", 128, 0x1234))
    assert decode_record(low_key, old_low) == (LOW_RECORD, 9, 0, 0, 0, BYTES_UNKNOWN, 128, 0x1234, b"")
    chain_key = group_key(CHAIN_RECORD, 9, 64)
    old_chain = _v1(chain_key, bytes([1, CHAIN_RECORD, 0, 0]) + struct.pack("<I", 0x55AA))
    assert decode_record(chain_key, old_chain) == (CHAIN_RECORD, 9, 64, 0, 0, BYTES_UNKNOWN, 0, 0x55AA, b"")
    # Recovery counts bytes from 0 when the LOW record does not know them.
    state = recover(sorted([(low_key, old_low), encode_record(instance(9, 128, b"abcd"))])).groups[9]
    assert state.low == 128 and state.low_bytes == 0


def test_version_2_is_read_only_for_low_and_chain_records():
    key = group_key(PROMISE_RECORD, 1, 0)
    body = bytes([2, PROMISE_RECORD, 0, 0]) + struct.pack("<Q", 5)
    with pytest.raises(UnknownVersion):
        decode_record(key, _v1(key, body))
    key = group_key(LOW_RECORD, 1, 0)
    with pytest.raises(UnknownVersion):
        decode_record(key, _v1(key, bytes([4, LOW_RECORD, 0, 0]) + bytes(20)))
    key, value = encode_record(low_record(1, 64, 5, 10))
    with pytest.raises(RecordCorrupt):
        decode_record(key, value[:-5] + value[-4:])          # a v2 record one byte short


def test_low_and_chain_records_carry_a_membership_configuration_in_version_3_only_when_there_is_one():
    from paxos_core.core.voters import VoterTable
    table = VoterTable(1, 8, 1, (1, 2, 3))
    table.learned(0, 40, __import__("paxos_core.core.voters", fromlist=["x"]).encode_adopt(2, (1, 2, 4)))
    config = table.state(0)
    for rec in (low_record(3, 640, 0xDEADBEEF, 99, config), chain_record(3, 640, 0xCAFEF00D, 1 << 40, config)):
        key, value = encode_record(rec)
        assert value[0] == 3
        assert decode_record(key, value) == rec
        with pytest.raises(RecordCorrupt):
            decode_record(key, value[:-5] + value[-4:])      # the configuration one byte short
    for rec in (low_record(3, 640, 1, 99), chain_record(3, 640, 1, 99)):
        assert encode_record(rec)[1][0] == 2, "no configuration: the format an older build reads"


def test_checkpoint_record_round_trips_and_is_checked():
    rec = checkpoint_record(5, 0, 3, b"progress" * 10)
    key, value = encode_record(rec)
    assert parse_key(key) == (CHECKPOINT_RECORD, 5, 0)
    assert decode_record(key, value) == rec
    piece = checkpoint_record(5, 4096, 0, b"")
    assert decode_record(*encode_record(piece)) == piece
    damaged = bytearray(value)
    damaged[12] ^= 1
    with pytest.raises(RecordCorrupt):
        decode_record(key, bytes(damaged))
    with pytest.raises(RecordCorrupt):
        decode_record(group_key(CHECKPOINT_RECORD, 6, 0), value), "under another group's key"


def test_recovery_reports_the_checkpoint_record_bytes_learned_and_a_damaged_checkpoint():
    values = [b"x" * k for k in range(1, 11)]
    records = [low_record(2, 5, 0, 1000)]          # chain 0 at the low mark: the walk starts from there
    chain = 0
    for i in range(5, 15):
        chain = chain_next(chain, i, values[i - 5])
    records += [instance(2, i, values[i - 5], mark=15, chain=chain) for i in range(5, 15)]
    records.append(checkpoint_record(2, 0, 1, b"staging"))
    items = sorted(encode_record(r) for r in records)
    state = recover(items).groups[2]
    assert state.low == 5 and state.low_bytes == 1000
    assert state.chosen_next == 15 and state.learned_bytes == 1000 + sum(map(len, values))
    assert state.checkpoint == checkpoint_record(2, 0, 1, b"staging")
    assert not state.checkpoint_damaged and not state.repair and not state.stop_reason
    key = group_key(CHECKPOINT_RECORD, 2, 0)
    damaged = [(k, v if k != key else v[:-1] + bytes([v[-1] ^ 1])) for k, v in items]
    result = recover(damaged)
    state = result.groups[2]
    assert state.checkpoint is None and state.checkpoint_damaged
    assert result.corrupt_records == 1
    assert not state.repair and not state.stop_reason, "the log itself is intact"


def _logs(tmp_path):
    rocks = RocksLog(tmp_path / "db", 1, 0xABC)
    yield "rocks", rocks, RocksStore(rocks.rdict)
    memory_store = MemoryStore()
    yield "memory", MemoryLog(1, 0xABC, sm_store=memory_store), memory_store


def test_one_write_puts_records_deletes_ranges_and_writes_the_state_machine(tmp_path):
    for name, log, store in _logs(tmp_path):
        log.write([instance(4, i) for i in range(10)] + [chain_record(4, 64, 1, 2)],
                  store_ops=([(b"a1", b"1"), (b"a2", b"2"), (b"b1", b"3")], [], []))
        syncs = log.syncs
        assert log.write([low_record(4, 6, 0, 6)], [(INSTANCE_RECORD, 4, 0, 6), (CHAIN_RECORD, 4, 0, 65)],
                         ([(b"c", b"4")], [b"b1"], [(b"a", b"a\xff")])) == 1
        assert log.syncs == syncs + 1, name + ": one synced write"
        assert [e[0] for e in log.read_chosen(4, 0, 10)] == [], name
        assert [e[0] for e in log.read_chosen(4, 6, 10)] == [6, 7, 8, 9], name
        assert log.read_chain(4, 64) is None, name
        assert log.read_low(4) == (6, 0, 6), name
        assert sorted(store.scan(b"")) == [(b"c", b"4")], name
        assert log.write([], [], None) == 0 and log.syncs == syncs + 1, name + ": nothing, no write"
        # Range deletes come after the records of the same write: a record put below the new low is gone.
        log.write([instance(4, 3)], [(INSTANCE_RECORD, 4, 0, 6)])
        assert log.get(group_key(INSTANCE_RECORD, 4, 3)) is None, name
        if name == "rocks":
            store.close()
            log.close()


def test_delete_group_also_deletes_checkpoint_records(tmp_path):
    for name, log, store in _logs(tmp_path):
        log.write([group_record(8, 2), promise_record(8, 9), instance(8, 0), checkpoint_record(8, 0, 1, b"p"),
                   checkpoint_record(8, 512, 0, b"piece"), checkpoint_record(9, 0, 1, b"other")])
        log.delete_group(8)
        kinds = {parse_key(k)[:2] for k, _ in log.items()} - {(3, 0)}        # (3, 0): the node record
        assert kinds == {(GROUP_RECORD, 8), (CHECKPOINT_RECORD, 9)}, (name, kinds)
        if name == "rocks":
            store.close()
            log.close()


def test_read_low_without_a_record_and_with_a_damaged_one():
    log = MemoryLog()
    assert log.read_low(1) == (0, 0, 0)
    log.write([low_record(1, 64, 9, 100)])
    assert log.read_low(1) == (64, 9, 100)
    key = group_key(LOW_RECORD, 1, 0)
    log.store[key] = log.store[key][:-1] + bytes([log.store[key][-1] ^ 1])
    assert log.read_low(1) is None
    assert read_low(log.store.get, 1) is None


def test_simulated_log_writes_the_same_one_batch():
    from paxos_core.sim.disk import SimDisk
    from paxos_core.sim.node import SimLog, SimStore

    class _Sim:
        def fsync_latency(self):
            return 100

        class rng:
            @staticmethod
            def random():
                return 1.0

    class _Node:
        def __init__(self):
            self.sim = _Sim()
            self.disk = SimDisk()
            self.local_now = 0
            self.crash_times = []
            self.marker_pending = False

        def step(self):
            pass

    node = _Node()
    log, store = SimLog(node), SimStore(node)
    log.write([instance(1, i) for i in range(8)], store_ops=([(b"k1", b"1"), (b"k2", b"2")], [], []))
    log.write([low_record(1, 4, 0, 4)], [(INSTANCE_RECORD, 1, 0, 4)], ([(b"k3", b"3")], [b"k1"], []))
    assert [e[0] for e in log.read_chosen(1, 0, 8)] == []
    assert [e[0] for e in log.read_chosen(1, 4, 8)] == [4, 5, 6, 7]
    assert log.read_low(1) == (4, 0, 4)
    assert list(store.scan(b"k")) == [(b"k2", b"2"), (b"k3", b"3")]
    # The batch is one unit on the disk: a crash before the sync loses all of it.
    node.disk.write([])          # (nothing)
    node.crash_times = [0]
    from paxos_core.sim.node import SimCrash
    with pytest.raises(SimCrash):
        log.write([instance(1, 8)], [(INSTANCE_RECORD, 1, 4, 6)], ([(b"k4", b"4")], [], []))
    node.disk.crash()
    assert [e[0] for e in log.read_chosen(1, 4, 9)] == [4, 5, 6, 7]
    assert store.get(b"k4") is None


def _bottom_level_log(path):
    """A log whose group 1 holds 5,000 values of 1 KB in its bottom level (as an old log's do)."""
    log = RocksLog(path, 1, 0xABC)
    for start in range(0, 5000, 1000):
        log.write([instance(1, i, random.randbytes(1000)) for i in range(start, start + 1000)])
    log.rdict.flush()
    log.rdict.compact_range(None, None)
    return log


def test_truncated_ranges_are_compacted_and_the_disk_space_comes_back(tmp_path):
    """Truncation range-deletes values that sit in old table files; nothing makes RocksDB rewrite those
    files soon, so the space stays taken (the control) until the log compacts the truncated span, in a thread
    of its own, once enough instances were deleted."""
    sizes = {}
    for name, compact in (("control", False), ("compacted", True)):
        log = _bottom_level_log(tmp_path / name)
        log.compact_after_instances = 1000
        log.write([low_record(1, 4936, 0, 0)], [(INSTANCE_RECORD, 1, 0, 4936)])
        log.rdict.flush()
        if compact:
            assert log.compact_if_due()
            log.wait_compaction()
            assert log.compactions == 1 and not log.compact_if_due(), "the counter starts again"
        assert [e[0] for e in log.read_chosen(1, 4936, 5000)] == list(range(4936, 5000))
        sizes[name] = log.rdict.property_int_value("rocksdb.total-sst-files-size")
        log.close()
    assert sizes["control"] > 4 << 20, sizes
    assert sizes["compacted"] < 512 << 10, sizes


def test_a_damaged_truncation_record_makes_the_group_rebuild_not_stop():
    """Soak seeds 1,600,150, 1,600,996 and 1,601,707 (at d253ca0): a flipped bit in a LOW record stopped the
    group for good. The values below the mark live in the peers' logs and checkpoints: it rebuilds instead."""
    from paxos_core.sim.simulation import FAULT_KINDS, SimConfig, run_seed

    items = sorted([encode_record(low_record(3, 64, 5, 100)), encode_record(instance(3, 64, b"x", mark=65))])
    key, value = items[1] if parse_key(items[1][0])[0] == LOW_RECORD else items[0]
    damaged = [(k, v if k != key else v[:-1] + bytes([v[-1] ^ 1])) for k, v in items]
    state = recover(damaged).groups[3]
    assert state.repair and "truncation record" in state.repair_reason and not state.stop_reason
    result = run_seed(SimConfig(seed=1600150, nodes=3, groups=1, faults=FAULT_KINDS))
    assert result.violations == [], result.violations[:3]


def test_group_records_of_a_handover_carry_the_mark_in_version_2_and_recovery_reads_them():
    """A group handed over to the nodes it is placed on (GROUP_VACATED, with the chosen mark of the handover)
    is not recovered as held; one held again (a pending REPAIR flagged as a re-entry, the GROUP record with
    the mark) learns up to that mark before it votes, without the rebuild rule; any other pending repair, or
    a damaged REPAIR record, is a full rebuild."""
    from paxos_core.storage.records import GROUP_VACATED, REPAIR_RECORD, repair_record

    plain = group_record(5, 3)
    key, value = encode_record(plain)
    assert value[0] == 1 and decode_record(key, value) == plain, "no mark: version 1, as older builds read"
    handed = group_record(5, 3, vacated=True, mark=1 << 40)
    key, value = encode_record(handed)
    assert value[0] == 2 and decode_record(key, value) == handed and handed[3] == GROUP_VACATED
    with pytest.raises(RecordCorrupt):
        decode_record(key, value[:-5] + value[-4:])
    promise_key = group_key(PROMISE_RECORD, 1, 0)
    with pytest.raises(UnknownVersion):       # version 2 is read for GROUP records, not for others
        decode_record(promise_key, _v1(promise_key, bytes([2, PROMISE_RECORD, 0, 0]) + struct.pack("<Q", 5)))

    result = recover(sorted(encode_record(r) for r in (handed, promise_record(5, 9), instance(5, 0))))
    assert result.vacated == {5: (3, 1 << 40)} and 5 not in result.groups

    reentering = [group_record(5, 3, mark=40), repair_record(5, True, True), instance(5, 0, mark=1)]
    state = recover(sorted(encode_record(r) for r in reentering)).groups[5]
    assert not state.repair and state.reenter_upto == 40 and state.incarnation == 3
    done = [group_record(5, 3, mark=40), repair_record(5, False), instance(5, 0, mark=1)]
    state = recover(sorted(encode_record(r) for r in done)).groups[5]
    assert not state.repair and state.reenter_upto == 0
    lost = [group_record(5, 3, mark=40), repair_record(5, True), instance(5, 0, mark=1)]
    state = recover(sorted(encode_record(r) for r in lost)).groups[5]
    assert state.repair and state.reenter_upto == 0, "a loss of memory is rebuilt by the rule"
    items = sorted(encode_record(r) for r in reentering)
    rkey = group_key(REPAIR_RECORD, 5, 0)
    damaged = [(k, v if k != rkey else v[:-1] + bytes([v[-1] ^ 1])) for k, v in items]
    state = recover(damaged).groups[5]
    assert state.repair and state.reenter_upto == 0, "a damaged REPAIR record: rebuilt by the rule"


def test_a_chain_record_at_a_mark_makes_that_mark_durable():
    """A node that learned instances from a leader's notice (values it had accepted) has them in records whose
    mark is older; the CHAIN record it writes when a peer asks how far it learned (STATE_REQ, for a handover)
    makes recovery find that mark again. Without it, recovery stops at the records' mark."""
    chain, values = 0, [b"a", b"bb", b"ccc", b"dddd"]
    at_one = chain_next(0, 0, values[0])
    records = []
    for i, value in enumerate(values):
        # Accepted while the node knew only instance 0 chosen (the records carry that mark and its chain).
        records.append(instance(4, i, value, mark=1, chain=at_one))
        chain = chain_next(chain, i, value)
    state = recover(sorted(encode_record(r) for r in records)).groups[4]
    assert state.chosen_next == 1
    records.append(chain_record(4, 4, chain, sum(map(len, values))))
    state = recover(sorted(encode_record(r) for r in records)).groups[4]
    assert state.chosen_next == 4 and not state.repair and not state.stop_reason
    wrong = records[:-1] + [chain_record(4, 4, chain ^ 1, 10)]
    assert recover(sorted(encode_record(r) for r in wrong)).groups[4].stop_reason, "a chain that does not match"


def test_group_records_carry_the_first_configuration_of_a_group_added_on_other_voters():
    """A group added at run time on the voters its ADD_GROUP named (soak seed 4,910,844) keeps them in its
    GROUP record (version 3), held or handed over: recovery gives them back, and a restart or a re-entry
    starts the incarnation there again. Without one, the record is the version older builds read."""
    from paxos_core.core.voters import config_state

    first = config_state(3, (3, 4, 5))
    held = group_record(5, 2, first=first)
    key, value = encode_record(held)
    assert value[0] == 3 and decode_record(key, value) == held
    assert encode_record(group_record(5, 2))[1][0] == 1
    handed = group_record(6, 2, vacated=True, mark=77, first=first)
    key6, value6 = encode_record(handed)
    assert decode_record(key6, value6) == handed
    for cut in (value[:-5] + value[-4:], value[:18] + value[-4:]):
        with pytest.raises(RecordCorrupt):
            decode_record(key, cut)
    result = recover(sorted(encode_record(r) for r in (held, handed, instance(5, 0), group_record(7, 2))))
    assert result.groups[5].first == first and result.groups[5].incarnation == 2
    assert result.vacated == {6: (2, 77)} and result.vacated_first == {6: first}
    assert result.groups[7].first == b""

"""Regression tests for what `paxos-core nemesis` found in paxos-core itself (docs/RELIABILITY.md, "Nemesis
runs"): each drives the engine into the situation a real cluster met."""
import random

import pytest

from paxos_core.core.config import CoreConfig
from paxos_core.core.engine import Engine
from paxos_core.core.learner import chain_of
from paxos_core.core.ballot import pack
from paxos_core.replica.cycle import run_cycle
from paxos_core.storage.memory import MemoryLog
from paxos_core.wire.codec import decode_batch, decode_entries, encode_batch, encode_entries
from paxos_core.wire.message import Kind, Message


def _engine(node_id=2, members=(1, 2, 3), **config):
    return Engine(CoreConfig(node_id=node_id, members=members, n_groups=1, **config), random.Random(node_id))


def _forwards(fx, dest=None):
    return [m for d, m in fx.send_now + fx.send_after if m.kind == Kind.FORWARD and (dest is None or d == dest)]


def _copies(engine, key):
    pg = engine.proposer.groups[0]
    return sum(1 for e in pg.pending + pg.forwarded if (e[0], e[1]) == key)


def test_nemesis_finding_a_proposal_relayed_back_while_mastership_moves_is_held_once():
    """Seed 116 (5 nodes): workers died on 77-125 MB messages. A proposal forwarded from node 3 to the master
    (node 2) was relayed on to the next master when mastership moved, and relayed back when it moved again;
    node 2 then held it twice, and every further move doubled it."""
    engine = _engine(node_id=2, election_backoff_ticks=(5, 5))
    relayed = (3, 7, b"a client's put, proposed at node 3")
    forward = Message(Kind.FORWARD, 0, 0, 0, 0, 0, 0, encode_batch([relayed]), src=3)
    engine.prefer(0, 2)                       # node 2 is master: it prepares, and takes node 3's forward
    engine.receive([forward])
    engine.take_effects()
    assert _copies(engine, (3, 7)) == 1
    engine.prefer(0, 1)                       # mastership moves to node 1: node 2 relays the proposal there
    assert [decode_batch(m.value) for m in _forwards(engine.take_effects(), 1)] == [[relayed]]
    engine.prefer(0, 2)                       # ... and back (node 2 backs off before it prepares again)
    back = Message(Kind.FORWARD, 0, 0, 0, 0, 0, 0, encode_batch([relayed]), src=1)
    engine.receive([back, back])              # node 1 relays it back, twice (a retransmission)
    assert _copies(engine, (3, 7)) == 1
    for now in range(1, 40):                  # forward timeouts: taken back and sent on, still once
        engine.tick(now)
        engine.take_effects()
        assert _copies(engine, (3, 7)) <= 1


def test_nemesis_finding_a_long_queue_is_forwarded_in_messages_of_bounded_size():
    """A follower forwards its whole queue at once when it takes it back; in one message it grew past any
    frame. Each FORWARD now carries at most max_batch_bytes of proposals (one bigger proposal goes alone)."""
    engine = _engine(node_id=2, max_batch_bytes=1000)
    engine.prefer(0, 1)
    engine.receive([Message(Kind.ACCEPT, 0, 5, pack(1, 1), 0, 0, 0, encode_batch([(1, 1, b"x")]), src=1)])
    engine.take_effects()
    payloads = [bytes([65 + k]) * 300 for k in range(10)] + [b"B" * 1500]
    for p in payloads:
        engine.propose(0, p)
    sent = []
    for now in range(1, 30):
        engine.tick(now)
        sent.extend(_forwards(engine.take_effects(), 1))
    whole = [m for m in sent if len(decode_batch(m.value)) > 1]
    assert whole, "the queue was taken back and forwarded again"
    for m in sent:
        batch = decode_batch(m.value)
        assert len(batch) == 1 or sum(len(e[2]) for e in batch) <= 1000
    again = [e[2] for m in sent[len(payloads):] for e in decode_batch(m.value)]
    assert again[:len(payloads)] == payloads, "in order, each once"


def test_nemesis_finding_a_burst_from_a_lagging_peer_gets_one_catchup_reply_per_group():
    """Seed 116 again: a rebuilt node's catch-up request, retransmitted Accepts and more, drained in one poll,
    were each answered with a full catch-up reply (10.5 MB each, six in one frame). One reply per peer and
    group per cycle, from the lowest instance asked for, to the chosen mark at the last ask (values learned
    between the asks included)."""
    engine = _engine(node_id=2)
    log = MemoryLog(2)
    values = [encode_batch([(1, k, b"v%d" % k)]) for k in range(8)]
    entries = [(i, pack(1, 1), v) for i, v in enumerate(values)]
    engine.receive([Message(Kind.CATCHUP_REPLY, 0, 0, 0, 6, 6, chain_of(values[:6]), encode_entries(entries[:6]),
                            src=1)])
    run_cycle(engine, log, lambda messages: None)
    assert engine.learned(0)[0] == 6
    burst = [Message(Kind.CATCHUP_REQ, 0, 2, 0, 0, 64, 0, b"", src=3),
             Message(Kind.ACCEPT, 0, 3, pack(1, 3), 0, 0, 0, values[3], src=3),
             Message(Kind.CATCHUP_REQ, 0, 1, 0, 0, 64, 0, b"", src=3),
             Message(Kind.CATCHUP_REPLY, 0, 6, 0, 8, 8, chain_of(values), encode_entries(entries[6:]), src=1),
             Message(Kind.ACCEPT, 0, 4, pack(1, 3), 0, 0, 0, values[4], src=3),
             Message(Kind.CATCHUP_REQ, 0, 2, 0, 0, 64, 0, b"", src=3)]
    engine.receive(burst)
    sent = []
    run_cycle(engine, log, sent.extend)
    replies = [m for d, m in sent if m.kind == Kind.CATCHUP_REPLY]
    assert len(replies) == 1 and [d for d, m in sent if m.kind == Kind.CATCHUP_REPLY] == [3]
    assert [v for _, _, v in decode_entries(replies[0].value)] == values[1:]
    assert replies[0].chain == chain_of(values)


CLUSTER = 0xC0FFEE


def _make_loop(log, clock=lambda: 0.0):
    from paxos_core.replica.loop import LoopSettings, ReplicaLoop
    from paxos_core.statemachine.store import RocksStore

    def make(recovery, amnesia):
        core = CoreConfig(node_id=1, members=(1, 2, 3), n_groups=4)
        settings = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30)
        return ReplicaLoop(settings, core, clock=clock, log=log, store=RocksStore(log.rdict, "sm"),
                           send=lambda m: None, hosted=range(4), recovery=recovery, rng=random.Random(3),
                           amnesia=amnesia)
    return make


def _first_start(tmp_path):
    """Node 1's worker 0 started for the first time on a RocksLog, its identity marker written: (data_dir, DB
    path, log, loop)."""
    from paxos_core.runtime.worker import start_loop
    from paxos_core.storage import identity
    from paxos_core.storage.log import RocksLog

    data_dir = tmp_path / "node1"
    identity.write_marker(data_dir, 1, CLUSTER)
    path = str(data_dir / "worker-0")
    log = RocksLog(path, 1, CLUSTER)
    loop, amnesia = start_loop(log, data_dir, 0, _make_loop(log))
    assert not amnesia
    return data_dir, path, log, loop


def _stop(loop, log):
    loop.close()
    loop.store.close()
    log.close()


def test_nemesis_finding_a_flipped_bit_in_the_state_machines_tables_makes_the_worker_rebuild(tmp_path):
    """Seed 211 (3 nodes): the corrupt fault flipped a bit in a table of the state machine's column family
    (the log's own tables were intact). The log opened clean, then building the replica loop read a group's
    master record from that table, RocksDB said "Corruption: block checksum mismatch", and the worker failed
    to start at every restart: the node stayed down. That is synced damage like the log's: the DB goes
    aside, the worker starts on a fresh one, and its groups rebuild from their peers."""
    from paxos_core.replica.applier import master_key
    from paxos_core.runtime.worker import start_loop
    from paxos_core.statemachine.store import RocksStore
    from paxos_core.storage.log import RocksLog

    from tests.helpers import rocks_damage

    data_dir, path, log, loop = _first_start(tmp_path)
    loop.close()
    loop.store.close()
    store = RocksStore(log.rdict, "sm")
    before = set(rocks_damage.sst_files(path))
    store.write([(master_key(g), b"m" * 40) for g in range(4)] + [(b"k%04d" % k, b"v" * 60) for k in range(50)], [])
    store._cf.flush(True)
    tables = sorted(set(rocks_damage.sst_files(path)) - before)
    assert len(tables) == 1, "the state machine's family flushed into one table"
    store.close()
    log.close()
    rocks_damage.flip_bit(tables[0], 40)          # in its one data block

    log = RocksLog(path, 1, CLUSTER)
    assert not log.amnesia, "the log's own records are intact: its open finds nothing"
    loop, amnesia = start_loop(log, data_dir, 0, _make_loop(log))
    assert amnesia and "state machine" in amnesia and "Corruption" in amnesia, amnesia
    assert {loop.engine.group_view(g)["status"] for g in range(4)} == {"repairing"}
    assert [p for p in data_dir.iterdir() if p.name.startswith("worker-0.damaged")], "set aside, never deleted"
    loop.close()
    loop.store.close()
    log.close()
    # A restart before the rebuild finishes: no crash, and the groups still rebuild.
    log = RocksLog(path, 1, CLUSTER)
    loop, amnesia = start_loop(log, data_dir, 0, _make_loop(log))
    assert {loop.engine.group_view(g)["status"] for g in range(4)} == {"repairing"}
    loop.close()
    loop.store.close()
    log.close()


def test_nemesis_finding_damage_met_by_a_read_while_running_sets_the_db_aside_at_the_next_start(tmp_path):
    """The other half of seed 211's finding: a flipped bit in a table of the state machine that building the
    loop does not read (only the group's data), met by a client's read while the worker runs. RocksDB raises
    "Corruption" out of the turn and the worker dies; restarted as it was, it starts cleanly and dies again at
    the next read of that table: a crash loop. worker_main now records the damage (note_damage_met) before the
    worker exits, and the next start sets the DB aside and rebuilds, as for damage met while starting."""
    from paxos_core.replica.loop import LoopSettings, ReplicaLoop
    from paxos_core.runtime.worker import note_damage_met, start_loop
    from paxos_core.statemachine import kv
    from paxos_core.statemachine.store import RocksStore
    from paxos_core.storage import identity
    from paxos_core.storage.log import RocksLog
    from paxos_core.wire import rpc

    from tests.helpers import rocks_damage

    now = [0.0]

    def make(log):
        def build(recovery, amnesia):
            core = CoreConfig(node_id=1, members=(1,), n_groups=1)
            settings = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30)
            return ReplicaLoop(settings, core, clock=lambda: now[0], log=log, store=RocksStore(log.rdict, "sm"),
                               send=lambda m: None, hosted=[0], recovery=recovery, rng=random.Random(3),
                               amnesia=amnesia)
        return build

    def turns(loop, frames, n=3):
        replies = []
        for k in range(n):
            now[0] += 0.01
            loop.turn([], frames if k == 0 else [])
            replies += loop.take_replies()
        return replies

    def put(loop, k, value):
        frame = rpc.propose_request(k + 1, 0, 5000, 7, k + 1, kv.encode_put(b"key%02d" % k, value))
        assert [rpc.decode_reply(f)[0] for _, f in turns(loop, [(b"c", frame, True)], n=20)] == [rpc.OK]

    def flush_sm(log):
        store = RocksStore(log.rdict, "sm")
        store._cf.flush(True)
        store.close()

    data_dir = tmp_path / "node1"
    identity.write_marker(data_dir, 1, CLUSTER)
    path = str(data_dir / "worker-0")
    log = RocksLog(path, 1, CLUSTER)
    loop, _ = start_loop(log, data_dir, 0, make(log))
    for k in range(40):
        put(loop, k, b"v" * 80)
    assert [rpc.decode_reply(f)[0] for _, f in turns(loop, [(b"c", rpc.read_request(98, 0, rpc.READ_STALE, 5000,
                                                                                   kv.encode_get(b"key05")), True)])
            ] == [rpc.OK], "a group up to date serves a stale read"
    before = set(rocks_damage.sst_files(path))
    flush_sm(log)
    old_table = sorted(set(rocks_damage.sst_files(path)) - before)
    assert len(old_table) == 1, "the state machine's family flushed into one table"
    for k in range(40, 45):                  # newer group records (applied mark, sessions) in a newer table
        put(loop, k, b"w" * 80)
    flush_sm(log)
    loop.close()
    loop.store.close()
    log.close()
    rocks_damage.flip_bit(old_table[0], 40)  # in the block holding key00..: only a read of those meets it

    read = rpc.read_request(99, 0, rpc.READ_STALE, 5000, kv.encode_get(b"key05"))
    for start in range(2):                   # as before the fix: every start is clean, every read dies
        log = RocksLog(path, 1, CLUSTER)
        loop, amnesia = start_loop(log, data_dir, 0, make(log))
        assert not amnesia, "building the loop does not read the damaged block"
        with pytest.raises(Exception) as raised:
            turns(loop, [(b"c", read, True)])
        if start == 0:
            loop.close()
            loop.store.close()
            log.close()
    finding = note_damage_met(data_dir, 0, raised.value)
    assert finding and "Corruption" in finding
    assert note_damage_met(data_dir, 0, RuntimeError("a bug of ours")) is None, "only damage is recorded"
    loop.close()
    loop.store.close()
    log.close()

    log = RocksLog(path, 1, CLUSTER)
    loop, amnesia = start_loop(log, data_dir, 0, make(log))
    assert amnesia and "Corruption" in amnesia, amnesia
    assert loop.engine.group_view(0)["status"] == "repairing", "rebuilds from its peers before it votes"
    assert identity.damage_found(data_dir, 0) is None and identity.rebuilding(data_dir, 0)
    assert [p for p in data_dir.iterdir() if p.name.startswith("worker-0.damaged")], "set aside, never deleted"
    # The damaged table is gone: no crash; and a rebuilding group serves no stale read (the stated bound of a
    # stale read, paxos.max_stale_lag: NotMaster, the client asks the master).
    assert [rpc.decode_reply(f)[0] for _, f in turns(loop, [(b"c", read, True)])] == [rpc.NOT_MASTER]
    loop.close()
    loop.store.close()
    log.close()


def _restore_many(data_dir, times, start):
    from paxos_core.storage import identity
    start.wait()
    for _ in range(times):
        identity.write_marker(data_dir, 3, CLUSTER)


def test_a_nodes_workers_restoring_its_identity_marker_at_once_both_start(tmp_path):
    """Found by a full test run (tests/test_cluster.py, a wiped node): after a wipe, every worker of the node
    restores the node's identity marker when it starts, all at the same time. They shared one temporary file
    name, so one worker's rename found the file already renamed away: "No such file or directory:
    IDENTITY.tmp -> IDENTITY", and the node did not start. Each process now writes a temporary file of its
    own."""
    import multiprocessing

    from paxos_core.storage import identity

    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_restore_many, args=(str(tmp_path), 300, start)) for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert identity.check_marker(str(tmp_path), 3, CLUSTER) == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["IDENTITY"], "no temporary file left"


def test_soak_finding_a_damaged_group_record_sets_the_log_aside_and_every_group_rebuilds(tmp_path):
    """Soak seed 6,016,081 (the simulator's side is in tests/test_simulator.py): a flipped bit in a GROUP record
    (the one a handover wrote: the group was not held there any more) stopped that group on the node for good:
    whether the log holds the group at all, in which incarnation, on which first voters, was unknown. The log
    can no longer say what it holds, so start_loop sets it aside as synced damage (as for a damaged table of the
    state machine) and every group of the worker rebuilds from its peers; the old DB is kept aside."""
    from paxos_core.runtime.worker import start_loop
    from paxos_core.storage import identity
    from paxos_core.storage.log import RocksLog
    from paxos_core.storage.records import GROUP_RECORD, group_key, group_record

    data_dir, path, log, loop = _first_start(tmp_path)
    log.write([group_record(2, 1, vacated=True, mark=9)])     # group 2 handed over, as in the seed
    _stop(loop, log)

    log = RocksLog(path, 1, CLUSTER)
    loop, amnesia = start_loop(log, data_dir, 0, _make_loop(log))
    assert not amnesia and not loop.engine.hosts(2), "intact: the record says group 2 is handed over"
    key = group_key(GROUP_RECORD, 2, 0)
    damaged = bytearray(log.rdict[key])
    damaged[6] ^= 0x10
    log.rdict[key] = bytes(damaged)
    _stop(loop, log)

    log = RocksLog(path, 1, CLUSTER)
    recovery = log.recover()
    assert "group 2's GROUP record" in recovery.registry_damage and "checksum" in recovery.registry_damage
    assert recovery.groups[2].stop_reason, "a caller that kept this log would have to stop the group"
    log.close()
    log = RocksLog(path, 1, CLUSTER)
    loop, amnesia = start_loop(log, data_dir, 0, _make_loop(log))
    assert amnesia and "group 2's GROUP record" in amnesia, amnesia
    assert {loop.engine.group_view(g)["status"] for g in range(4)} == {"repairing"}, "no group is stopped"
    assert [p for p in data_dir.iterdir() if p.name.startswith("worker-0.damaged")], "set aside, never deleted"
    assert identity.rebuilding(data_dir, 0)
    _stop(loop, log)
    # A restart before the rebuild is done finds the rebuild again, on the fresh log.
    log = RocksLog(path, 1, CLUSTER)
    loop, amnesia = start_loop(log, data_dir, 0, _make_loop(log))
    assert amnesia and {loop.engine.group_view(g)["status"] for g in range(4)} == {"repairing"}
    _stop(loop, log)

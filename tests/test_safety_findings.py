"""One regression test per safety finding against 1cd0ad7 (issue 9), named after it.

Each test drives the production code (the engine behind the real effect cycle, or the replica loop the worker
runs) into the situation that broke, and checks the fixed behaviour. Where the old behaviour is kept as a
planted bug, the test also switches it on and sees the failure, so it cannot pass by not looking.
"""
import random

import pytest

from paxos_core.core.ballot import pack
from paxos_core.core.config import CoreConfig
from paxos_core.core.voters import config_state
from paxos_core.core.engine import Engine
from paxos_core.core.learner import chain_of
from paxos_core.errors import GroupStopped
from paxos_core.replica.cycle import run_cycle
from paxos_core.replica.loop import LoopSettings, ReplicaLoop, Request
from paxos_core.wire import rpc
from paxos_core.sim.loopback import LoopbackCluster
from paxos_core.statemachine import kv
from paxos_core.statemachine.store import MemoryStore
from paxos_core.storage.memory import MemoryLog
from paxos_core.storage.records import GROUP_REMOVED, INSTANCE_RECORD, decode_record, group_key
from paxos_core.wire.codec import decode_batch, decode_entries, encode_batch, encode_entries
from paxos_core.wire.message import Kind, Message

from loop_harness import run_turns


def _engine(node_id=2, members=(1, 2, 3), **config):
    return Engine(CoreConfig(node_id=node_id, members=members, n_groups=1, **config), random.Random(node_id))


def _sent(messages, kind):
    return [(dest, m) for dest, m in messages if m.kind == kind]


class _Capture:
    def __init__(self):
        self.messages = []

    def __call__(self, messages):
        self.messages.extend(messages)


# ---------------------------------------------------------------------------------------------------- 1
def test_finding_1_catchup_served_in_the_cycle_that_learned_it_sends_the_chosen_value_not_the_old_vote():
    """Node 2 voted for a value that lost at instance 0, then learns the chosen one by catch-up in the same
    poll in which node 3 asks it for instance 0. The reply must carry the chosen value (the old worker read the
    log before writing the cycle's records, and served the losing vote as chosen)."""
    for serve_before_write in (False, True):
        engine = _engine()
        log = MemoryLog(2)
        capture = _Capture()
        losing = encode_batch([(1, 1, b"loses")])
        chosen = encode_batch([(3, 7, b"wins")])
        engine.receive([Message(Kind.ACCEPT, 0, 0, pack(1, 1), 0, 0, 0, losing, src=1)])
        run_cycle(engine, log, capture)
        assert decode_record(group_key(INSTANCE_RECORD, 0, 0), log.store[group_key(INSTANCE_RECORD, 0, 0)])[8] == losing
        # One poll: the chosen value (with the sender's chain at the end of its range) and node 3's request.
        reply = Message(Kind.CATCHUP_REPLY, 0, 0, 0, 1, 1, chain_of([chosen]), encode_entries([(0, pack(2, 3), chosen)]),
                        src=3)
        request = Message(Kind.CATCHUP_REQ, 0, 0, 0, 0, 64, 0, b"", src=3)
        engine.receive([reply, request])
        capture.messages = []
        run_cycle(engine, log, capture, serve_before_write=serve_before_write)
        served = _sent(capture.messages, Kind.CATCHUP_REPLY)
        values = [v for _, m in served for _, _, v in decode_entries(m.value)]
        if serve_before_write:
            assert values != [chosen], "the planted old order must show the bug this test is about"
        else:
            assert values == [chosen]
            assert served[0][1].chain == chain_of([chosen]), "the reply carries the sender's chain at its end"


def test_finding_1_a_catchup_reply_whose_values_do_not_give_the_senders_chain_is_refused_whole():
    engine = _engine()
    log = MemoryLog(2)
    good = [encode_batch([(1, k, b"v%d" % k)]) for k in range(3)]
    bad = list(good)
    bad[1] = encode_batch([(1, 9, b"a vote that lost")])
    entries = [(i, pack(1, 1), v) for i, v in enumerate(bad)]
    engine.receive([Message(Kind.CATCHUP_REPLY, 0, 0, 0, 3, 3, chain_of(good), encode_entries(entries), src=1)])
    fx, _ = run_cycle(engine, log, _Capture())
    assert not fx.chosen, "nothing of a reply that fails its chain is learned"
    assert engine.learned(0)[0] == 0
    assert engine.counters_dict()["catchup_rejected"] == 1
    entries = [(i, pack(1, 1), v) for i, v in enumerate(good)]
    engine.receive([Message(Kind.CATCHUP_REPLY, 0, 0, 0, 3, 3, chain_of(good), encode_entries(entries), src=3)])
    fx, _ = run_cycle(engine, log, _Capture())
    assert [v for _, _, v in fx.chosen] == good


def test_finding_1_a_group_that_stops_in_a_cycle_applies_and_acknowledges_nothing_of_that_cycle():
    """A divergence found in the same batch that learned values: the stop is handled first, so none of them
    reaches the state machine or a client."""
    cluster = LoopbackCluster(nodes=3, groups=1, window=1)
    for k in range(3):
        cluster.propose(1, 0, b"v%d" % k)
    engine = cluster.engines[3]
    chosen_next, _ = engine.learned(0)
    view = engine.group_view(0)
    assert chosen_next in view["accepted"], "node 3 holds the last vote, not yet learned"
    # A leader's Accept whose mark says that instance is chosen, with a chain that is not ours at the mark:
    # learning it (from our own vote) and the chain check happen in the same receive.
    value = encode_batch([(1, 99, b"next")])
    engine.receive([Message(Kind.ACCEPT, 0, chosen_next + 1, view["promised"], chosen_next + 1, 0, 0xDEADBEEF,
                            value, src=1)])
    fx = engine.take_effects()
    assert fx.stopped and fx.stopped[0][0] == 0
    assert engine.learned(0)[0] == chosen_next + 1, "it did learn the instance in this very batch"
    assert not [c for c in fx.chosen if c[0] == 0] and not [a for a in fx.acks if a[1] == 0]
    with pytest.raises(GroupStopped):
        engine.propose(0, b"x", b"x")


# ---------------------------------------------------------------------------------------------------- 2
class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _one_node_loop(clock, plant=""):
    core = CoreConfig(node_id=1, members=(1,), n_groups=1, sticky_ticks=30, plant=plant if plant in (
        "requeue-reverse", "amnesia-votes", "readd-amnesia") else "")
    settings = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30, lease_margin=0.3, plant=plant)
    log = MemoryLog(1)
    return ReplicaLoop(settings, core, clock=clock, log=log, store=MemoryStore(), send=lambda m: None,
                       hosted=[0], recovery=log.recover(), rng=random.Random(7))


_turns = run_turns


class _StallingLog(MemoryLog):
    """A log whose next synced write takes `stall` seconds of the loop's clock (an fsync stall)."""

    def __init__(self, clock):
        super().__init__(1)
        self.clock = clock
        self.stall = 0.0

    def write(self, records, deletes=None, store_ops=None):
        self.clock.t += self.stall
        self.stall = 0.0
        return super().write(records, deletes, store_ops)


def _lease_read_during_a_stall(plant):
    """(instances chosen since the stall when the lease read was answered, the loop)."""
    clock = _Clock()
    loop = _one_node_loop(clock, plant)
    log = _StallingLog(clock)
    loop = ReplicaLoop(loop.settings, loop.engine.config, clock=clock, log=log, store=MemoryStore(),
                       send=lambda m: None, hosted=[0], recovery=log.recover(), rng=random.Random(7))
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    assert [r[0] for r in _turns(loop, clock, [(b"c", put)], n=20)] == [rpc.OK]
    # One poll brings a write and a lease read; the cycle's synced write stalls for 5 s (the lease is 0.3 s).
    # The turn started with a valid lease; by the time the read is decided, it has long run out.
    log.stall = 5.0
    put = rpc.propose_request(2, 0, 20000, 77, 2, kv.encode_put(b"k", b"v2"))
    read = rpc.read_request(3, 0, rpc.READ_LEASE, 20000, kv.encode_get(b"k"))
    chosen_before = loop.engine.counters_dict()["chosen"]
    frames = [(b"c", put), (b"c", read)]
    for _ in range(10):
        loop.poll_timeout()
        clock.t += 0.01
        loop.turn((), frames)
        frames = ()
        answered = dict(item for _, f in loop.take_replies() for item in _reply_ids(f))
        if 3 in answered:
            assert answered[3] == rpc.OK
            return loop.engine.counters_dict()["chosen"] - chosen_before, loop
    raise AssertionError("the lease read was never answered")


def _reply_ids(frame):
    """[(req_id, status)] of a reply frame (a batch of replies, or one)."""
    status, req_id, body = rpc.decode_reply(frame)
    if status == rpc.BATCH:
        return [rpc.decode_reply(inner)[1::-1] for inner in rpc.split_reply_batch(body)]
    return [(req_id, status)]


def test_finding_2_a_lease_read_is_decided_on_the_clock_read_at_the_decision_not_before_the_poll():
    # The write of the stalled poll is one instance; the lease is renewed by a claim, a second one, and only
    # then is the read answered.
    since, loop = _lease_read_during_a_stall("")
    assert since >= 2
    assert loop.masters.has_lease(0, loop.now_ticks())
    # (The planted old behaviour, deciding on the tick read before the poll, is caught by the simulator:
    # tests/test_simulator.py runs the plant "stale-lease-clock".)


def test_finding_2_a_worker_that_resumes_late_drops_its_leases():
    clock = _Clock()
    loop = _one_node_loop(clock)
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    _turns(loop, clock, [(b"c", put)], n=20)
    read = rpc.read_request(2, 0, rpc.READ_LEASE, 1000, kv.encode_get(b"k"))
    assert [r[0] for r in _turns(loop, clock, [(b"c", read)], n=3)] == [rpc.OK]
    assert loop.masters.has_lease(0, loop.now_ticks())
    loop.poll_timeout()            # the poll is meant to last a tick ...
    clock.t += 0.2                 # ... and the process resumes 200 ms later (within the lease, by its clock)
    loop.turn((), ())
    assert loop.stats["late_resumes"] == 1 and loop.stats["leases_dropped"] == 1
    assert not loop.masters.has_lease(0, loop.now_ticks())


def test_finding_2_a_lease_reply_is_withdrawn_if_the_lease_ran_out_before_it_left():
    clock = _Clock()
    loop = _one_node_loop(clock)
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    _turns(loop, clock, [(b"c", put)], n=20)
    read = rpc.read_request(2, 0, rpc.READ_LEASE, 1000, kv.encode_get(b"k"))
    frames = [(b"c", read)]
    for _ in range(10):
        loop.poll_timeout()
        clock.t += 0.01
        loop.turn((), frames)
        frames = ()
        if loop.lease_outbox:
            break                        # decided: the answer waits to leave
        assert not loop.take_replies()
    clock.t += 5.0                       # paused after the decision, before the reply left
    replies = loop.take_replies()
    assert len(replies) == 1 and rpc.decode_reply(replies[0][1])[0] == rpc.NOT_MASTER
    assert loop.stats["lease_replies_withdrawn"] == 1


# ---------------------------------------------------------------------------------------------------- 3
def test_finding_3_lease_reads_mixed_with_linearizable_reads_are_linearizable_without_faults():
    """The simulator runs the production loop with clients mixing lease, linearizable and stale reads with
    writes, and checks every operation against the chosen log and real time."""
    from paxos_core.sim.simulation import SimConfig, run_seed

    for seed in range(8):
        result = run_seed(SimConfig(seed=900 + seed, nodes=3, groups=2, faults=(), clients=8))
        assert result.ok, result.violations[:3]
        assert result.acked > 50


# ---------------------------------------------------------------------------------------------------- 5
def test_finding_5_a_leader_that_steps_down_requeues_one_sessions_operations_in_instance_order():
    for plant in ("", "requeue-reverse"):
        engine = _engine(node_id=1, window=4, max_batch_count=1, plant=plant)
        ops = [b"op%d" % k for k in range(4)]
        for op in ops:
            engine.propose(0, op, op)
        ballot = engine.group_view(0)["ballot"]
        engine.persisted(engine.take_effects().token)
        engine.receive([Message(Kind.PROMISE, 0, 0, ballot, 0, 0, 0, b"", src=2)])
        engine.persisted(engine.take_effects().token)
        assert engine.group_view(0)["inflight"] == 4
        # Node 2 has promised a higher ballot: it rejects the first Accept, and the leader steps down.
        engine.receive([Message(Kind.REJECT, 0, 0, ballot + (1 << 16), 0, ballot, 0, b"", src=2)])
        pending = engine.proposer.groups[0].pending
        order = [payload for _, _, payload in pending]
        if plant:
            assert order != ops, "the planted bug must reorder them"
        else:
            assert order == ops


# ---------------------------------------------------------------------------------------------------- 6
def test_finding_6_a_group_removed_and_added_again_is_a_new_incarnation_that_ignores_the_old_one():
    cluster = LoopbackCluster(nodes=3, groups=1, window=1)
    for k in range(5):
        cluster.propose(1, 0, b"v%d" % k)
    old = cluster.engines[2]
    # Node 1 removes the group and adds it again: it remembers nothing of it, as a new incarnation.
    engine = cluster.engines[1]
    engine.remove_group(0)
    engine.add_group(0, 2)
    assert engine.incarnation_of(0) == 2 and engine.learned(0)[0] == 0
    # Its messages are not for the old incarnation (and the old one's are not for it): no vote of the forgetful
    # acceptor can join a quorum of the old incarnation, nor the other way round.
    before = old.counters_dict()["wrong_incarnation"]
    engine.propose(0, b"new", b"new")
    fx = engine.take_effects()
    prepares = [m for _, m in fx.send_after if m.kind == Kind.PREPARE]
    assert prepares and all(m.inc == 2 for m in prepares)
    old.receive([Message(m.kind, m.group, m.instance, m.ballot, m.mark, m.aux, m.chain, m.value, src=1, inc=m.inc)
                 for m in prepares])
    assert old.counters_dict()["wrong_incarnation"] == before + len(prepares)
    assert not old.take_effects().send_after, "the old incarnation answers nothing to the new one"


def test_finding_6_the_loop_keeps_a_durable_tombstone_and_re_adds_a_newer_incarnation():
    clock = _Clock()
    loop = _one_node_loop(clock)
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    _turns(loop, clock, [(b"c", put)], n=20)
    log = loop.log
    loop.remove_group(0)
    tomb = decode_record(group_key(6, 0, 0), log.store[group_key(6, 0, 0)])
    assert tomb[3] & GROUP_REMOVED and tomb[4] == 1
    recovery = log.recover()
    assert recovery.removed == {0: 1} and 0 not in recovery.groups
    assert loop.add_group(0) == 2
    again = ReplicaLoop(loop.settings, loop.engine.config, clock=clock, log=log, store=MemoryStore(),
                        send=lambda m: None, hosted=[0], recovery=log.recover(), rng=random.Random(8))
    assert again.engine.incarnation_of(0) == 2 and again.engine.learned(0)[0] == 0


def test_finding_6_a_removal_that_crashed_after_its_tombstone_never_hands_old_records_to_a_new_incarnation():
    from paxos_core.storage.records import group_record

    clock = _Clock()
    loop = _one_node_loop(clock)
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    _turns(loop, clock, [(b"c", put)], n=20)
    log = loop.log
    assert loop.engine.learned(0)[0] > 0
    log.write([group_record(0, 1, True)])      # the removal's first step, then the process died
    restart = lambda: ReplicaLoop(loop.settings, loop.engine.config, clock=clock, log=log, store=MemoryStore(),
                                  send=lambda m: None, hosted=[0], recovery=log.recover(), rng=random.Random(9))
    again = restart()
    assert not again.engine.hosts(0), "the tombstone wins over the records it left"
    assert again.add_group(0) == 2
    third = restart()
    assert third.engine.incarnation_of(0) == 2 and third.engine.learned(0)[0] == 0, \
        "the new incarnation starts empty: the old records were deleted before it was recorded"


@pytest.mark.parametrize("plant", ["", "remove-keeps-state"])
def test_soak_finding_a_removal_that_crashed_after_its_tombstone_leaves_no_state_machine_data_to_the_next(plant):
    """Soak seed 2,214,954: a node crashed inside REMOVE_GROUP, after the tombstone and before its state machine
    data was deleted. Re-added as incarnation 2, its state machine was still at incarnation 1's applied mark
    (110), so it skipped every value incarnation 2 chose below that and never answered those clients. The add
    now finishes the removal first. The plant (a removal that keeps the state machine's data) shows the check."""
    from paxos_core.storage.records import group_record

    clock = _Clock()
    loop = _one_node_loop(clock, plant)
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    _turns(loop, clock, [(b"c", put)], n=20)
    log, store = loop.log, loop.store
    applied = loop.sm.applied_next(0)
    held = loop.sm.read(0, kv.encode_get(b"k"))
    assert applied > 0
    log.write([group_record(0, 1, True)])      # the removal's first step, then the process died
    again = ReplicaLoop(loop.settings, loop.engine.config, clock=clock, log=log, store=store,
                        send=lambda m: None, hosted=[0], recovery=log.recover(), rng=random.Random(9))
    assert again.add_group(0) == 2
    if plant:
        assert again.sm.applied_next(0) == applied      # the bug the simulator now catches at the add
        return
    assert again.sm.applied_next(0) == 0 and again.sm.read(0, kv.encode_get(b"k")) != held
    put2 = rpc.propose_request(1, 0, 1001, 78, 1, kv.encode_put(b"k", b"v2"))
    replies = _turns(again, clock, [(b"c", put2)], n=20)
    assert [r[0] for r in replies] == [rpc.OK], "the new incarnation applies (and answers) from instance 0"
    assert again.sm.read(0, kv.encode_get(b"k")) == loop.sm.read(0, kv.encode_get(b"k")).replace(b"v1", b"v2")


# ---------------------------------------------------------------------------------------------------- 7
def test_finding_7_exactly_once_holds_past_the_session_bound_a_late_retry_is_refused_not_applied():
    sm = kv.KVStateMachine(MemoryStore(), max_sessions=3)
    sm.apply_batch(0, [(0, [(1, 1, kv.encode_put(b"a", b"1")), (1, 2, kv.encode_put(b"a", b"2"))])])
    # Three newer sessions evict session 1.
    sm.apply_batch(0, [(1, [(c, 1, kv.encode_put(b"x", b"%d" % c)) for c in (2, 3, 4)])])
    late = sm.apply_batch(0, [(2, [(1, 2 | kv.RETRY_FLAG, kv.encode_put(b"a", b"2")),
                                   (1, 1 | kv.RETRY_FLAG, kv.encode_put(b"a", b"1")),
                                   (1, 2, kv.encode_put(b"a", b"2"))])])[0]
    assert [kv.decode_result(r).status for r in late] == [kv.SESSION_UNKNOWN] * 3
    assert kv.decode_result(sm.read(0, kv.encode_get(b"a"))).value == b"2"


# ---------------------------------------------------------------------------------------------------- 4, 8
def _worker_start(data_dir, clock):
    """What a worker does at start (runtime/worker.py), minus its sockets: open the log, decide whether its
    state was lost, build the replica loop. Returns (loop, log, reason)."""
    from paxos_core.runtime.worker import lost_state_reason
    from paxos_core.statemachine.store import RocksStore
    from paxos_core.storage import identity
    from paxos_core.storage.log import RocksLog

    identity.check_marker(data_dir, 1, CLUSTER)
    log = RocksLog(str(data_dir / "worker-0"), 1, CLUSTER)
    recovery = log.recover()
    reason = lost_state_reason(data_dir, 0, log, recovery)
    core = CoreConfig(node_id=1, members=(1, 2, 3), n_groups=4)
    settings = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30)
    loop = ReplicaLoop(settings, core, clock=clock, log=log, store=RocksStore(log.rdict, "sm"),
                       send=lambda m: None, hosted=range(4), recovery=recovery, rng=random.Random(3),
                       amnesia=reason)
    if reason:
        identity.restore_marker(data_dir, 1, CLUSTER)
        identity.write_worker_flag(data_dir, 0)
    return loop, log, reason


CLUSTER = 0xC0FFEE


def _history_on_disk(tmp_path):
    """A node's worker log holding promises and votes: node 1 votes for 40 instances of 4 groups, proposed
    by node 2 (ballot round 9), and flushes part of them into a table."""
    from paxos_core.storage import identity

    data_dir = tmp_path / "node1"
    identity.write_marker(data_dir, 1, CLUSTER)
    clock = _Clock()
    loop, log, reason = _worker_start(data_dir, clock)
    assert not reason
    ballot = pack(9, 2)
    for i in range(40):
        messages = [Message(Kind.ACCEPT, g, i, ballot, 0, 0, 0, b"value-%d-%d" % (g, i), src=2) for g in range(4)]
        clock.t += 0.01
        loop.turn(messages, ())
        if i == 20:
            log.rdict.flush(True)
    promised = {g: loop.engine.group_view(g)["promised"] for g in range(4)}
    assert set(promised.values()) == {ballot}
    # What a crash leaves on disk right after the last synced write (a clean close would flush the WAL).
    import shutil

    from tests.helpers import rocks_damage

    crashed = tmp_path / "crashed"
    shutil.copytree(data_dir, crashed, ignore=shutil.ignore_patterns("worker-0"))
    rocks_damage.crash_copy(str(data_dir / "worker-0"), str(crashed / "worker-0"))
    loop.close()
    loop.store.close()
    log.close()
    return crashed, clock, ballot


def test_finding_4_damaged_synced_wal_makes_the_groups_rebuild_never_rolls_back_promises_or_votes(tmp_path):
    from tests.helpers import rocks_damage

    data_dir, clock, ballot = _history_on_disk(tmp_path)
    rocks_damage.flip_in_middle_record(str(data_dir / "worker-0"))
    loop, log, reason = _worker_start(data_dir, clock)
    assert log.damage == "synced" and reason, reason
    # Nothing of the damaged log is used, and no group answers as if nothing happened (1cd0ad7 recovered
    # point-in-time: the promise went back and the group reported OK).
    for g in range(4):
        view = loop.engine.group_view(g)
        assert view["status"] == "repairing", view
        assert view["promised"] < ballot
    # It answers no Prepare and no Accept while it rebuilds.
    loop.turn([Message(Kind.PREPARE, 0, 0, pack(5, 3), 0, 0, 0, b"", src=3),
               Message(Kind.ACCEPT, 1, 0, pack(5, 3), 0, 0, 0, b"x", src=3)], ())
    # The rebuild is on record: a restart (before it finishes) rebuilds again.
    loop.close()
    loop.store.close()
    log.close()
    loop, log, reason = _worker_start(data_dir, clock)
    assert not reason, "the log itself now says so"
    assert {loop.engine.group_view(g)["status"] for g in range(4)} == {"repairing"}
    log.close()


def test_finding_8_a_flipped_bit_in_an_sst_makes_the_worker_rebuild_not_crash_loop(tmp_path):
    from tests.helpers import rocks_damage

    data_dir, clock, ballot = _history_on_disk(tmp_path)
    rocks_damage.flip_in_sst_data_block(str(data_dir / "worker-0"))
    for attempt in range(2):          # and again: no crash loop
        loop, log, reason = _worker_start(data_dir, clock)
        assert {loop.engine.group_view(g)["status"] for g in range(4)} == {"repairing"}
        if attempt == 0:
            assert log.amnesia and reason
        loop.close()
        loop.store.close()
        log.close()


def test_finding_8_a_group_record_whose_first_configuration_does_not_parse_stops_that_group_not_the_worker():
    """A GROUP record whose checksum holds but whose first configuration is not one (only a bug can write it)
    made Engine.add_group raise ConfigError in ReplicaLoop._open: the worker could not start at all. Recovery now
    counts it as a damaged record, so the group stops with its reason and the worker's other groups serve."""
    from paxos_core.storage.records import group_record

    clock = _Clock()
    core = CoreConfig(node_id=1, members=(1,), n_groups=2, sticky_ticks=30)
    settings = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30, lease_margin=0.3)
    log = MemoryLog(1)
    log.write([group_record(1, 1, first=b"\x07not a configuration")])
    recovery = log.recover()
    assert recovery.corrupt_records == 1 and recovery.groups[1].first == b""
    # The worker's start sets such a log aside (runtime/worker.py start_loop: every group rebuilds); a caller
    # that keeps it, as here, gets the group stopped and the others serving.
    assert "group 1's GROUP record" in recovery.registry_damage
    loop = ReplicaLoop(settings, core, clock=clock, log=log, store=MemoryStore(), send=lambda m: None,
                       hosted=[0, 1], recovery=recovery, rng=random.Random(7))
    view = loop.engine.group_view(1)
    assert view["status"] == "stopped"
    assert "first configuration is not well formed" in loop.engine.stop_reasons[1]
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    assert [r[0] for r in _turns(loop, clock, [(b"c", put)], n=20)] == [rpc.OK], "group 0 serves"
    put1 = rpc.propose_request(1, 1, 1001, 78, 1, kv.encode_put(b"k", b"v1"))
    assert [r[0] for r in _turns(loop, clock, [(b"c", put1)], n=20)] == [rpc.GROUP_STOPPED]


# ---------------------------------------------------------------------------------------------------- 9
class _ProposeRecorder:
    """The loop's engine, with every propose() call recorded as (turn, request seq of each op proposed)."""

    def __init__(self, engine):
        self._engine = engine
        self.turn = 0
        self.calls = []

    def propose(self, group, payload, tag):
        if isinstance(tag, Request):
            seqs = ([tag.request_seq + k for k in range(len(tag.ops))] if tag.ops is not None
                    else [tag.request_seq])
            self.calls.append((self.turn, seqs))
        return self._engine.propose(group, payload, tag)

    def __getattr__(self, name):
        return getattr(self._engine, name)


@pytest.mark.parametrize("envelope", [False, True])
def test_soak_finding_a_batch_of_several_entries_is_proposed_one_entry_after_another(envelope):
    """Found by the 100,000-seed soak (seed 1000272, batch envelopes off): a PROPOSE_BATCH proposed as several
    entries at once had them chosen out of order (a pipelined window across a leader change). Its session's
    second command was refused SESSION_UNKNOWN ahead of the first, then applied after it by a duplicate of
    itself: the client was told "nothing applied" for a command that was applied. Each entry is now proposed
    once the one before it is applied here, so no copy of entry k+1 exists before entry k landed."""
    for plant in ("", "batch-together"):
        clock = _Clock()
        core = CoreConfig(node_id=1, members=(1,), n_groups=1, sticky_ticks=30, window=8)
        # With envelopes on, entries of at most max_value_bytes: ~3 ops of 400 bytes per entry here.
        settings = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30, lease_margin=0.3, plant=plant,
                                batch_envelope=envelope, max_value_bytes=1400)
        log = MemoryLog(1)
        loop = ReplicaLoop(settings, core, clock=clock, log=log, store=MemoryStore(), send=lambda m: None,
                           hosted=[0], recovery=log.recover(), rng=random.Random(7))
        recorder = loop.engine = _ProposeRecorder(loop.engine)
        ops = [kv.encode_put(b"k%d" % k, b"%03d" % k * 130) for k in range(8)]
        frame = rpc.propose_batch_request(1, 0, 5000, 77, 1, ops)
        replies = []
        for turn in range(60):
            recorder.turn = turn
            replies += _turns(loop, clock, [(b"c", frame)] if turn == 0 else ())
        assert [r[0] for r in replies] == [rpc.OK]
        results = rpc.decode_propose_batch_ok(replies[0][2])
        assert [kv.decode_result(r).status for _, r in results] == [kv.OK] * 8
        proposed = [seq for _, seqs in recorder.calls for seq in seqs]
        assert proposed == list(range(1, 9)), "every op proposed once, in order"
        turns = [turn for turn, _ in recorder.calls]
        assert len(turns) > (2 if envelope else 7), "several entries"
        if plant:
            assert len(set(turns)) == 1, "the planted bug proposes them all at once"
        else:
            assert len(set(turns)) == len(turns), "one entry per turn at most: each after the one before applied"
            instances = [instance for instance, _ in results]
            assert instances == sorted(instances)


def test_soak_finding_a_rebuilt_node_is_held_only_to_the_promises_a_quorum_backed():
    """Soak seed 1,013,554: node 3 promised ballot 196610 alone, lost its disk, rebuilt (floor 65537 from its
    peers) and the oracle called the lower promise a regression. The rebuild rule keeps only what a quorum
    counted; a promise a majority backed must still never go back."""
    from paxos_core.sim.oracle import Oracle
    from paxos_core.sim.simulation import FAULT_KINDS, SimConfig, run_seed

    oracle = Oracle(3)
    oracle.on_promise_reply(3, 8, 196610)          # only node 3 promised it
    oracle.on_promise_reply(3, 9, 131074)          # node 3 and node 1 promised it: a majority
    oracle.on_promise_reply(1, 9, 131074)
    oracle.on_amnesia(3)
    oracle.on_restart_state(3, 8, 65537, [], 0)
    assert not oracle.violations
    oracle.on_restart_state(3, 9, 65537, [], 0)
    assert oracle.violations and "promise went back from 131074" in oracle.violations[0]
    result = run_seed(SimConfig(seed=1013554, nodes=3, groups=64, faults=FAULT_KINDS))
    assert result.violations == [], result.violations[:3]


def test_soak_finding_votes_a_rebuild_forgot_are_not_held_against_a_later_restart():
    """Soak seeds 1,412,865, 1,417,271 and 1,420,063 (at 277c49c): node 2 led with ballot 65538, voted for
    instances 10-12, lost its disk before any quorum took them, rebuilt (target 10: no peer had them), and
    at a later plain restart the oracle held it to those votes ("accepted ballot went back ... to nothing").
    The rebuild rule may forget a vote no quorum took (a chosen one it learns again); after a rebuild the
    node is held to the votes it gives from then on. A vote given after the rebuild still never goes back."""
    from paxos_core.sim.oracle import Oracle
    from paxos_core.sim.simulation import FAULT_KINDS, SimConfig, run_seed

    oracle = Oracle(5)
    oracle.on_vote(2, 0, 10, 65538)
    oracle.on_amnesia(2)
    oracle.on_restart_state(2, 0, 65538, {}, 10)
    assert not oracle.violations
    oracle.on_vote(2, 0, 11, 131074)
    oracle.on_restart_state(2, 0, 131074, {}, 10)
    assert oracle.violations and "instance 11: accepted ballot went back from 131074" in oracle.violations[0]
    result = run_seed(SimConfig(seed=1420063, nodes=5, groups=1, faults=tuple(f for f in FAULT_KINDS if f != "member")))
    assert result.violations == [], result.violations[:3]


def test_soak_finding_a_group_removed_during_a_snapshot_transfer_does_not_crash_the_worker():
    """Soak seed 1,602,033 (at d253ca0): a group was removed (regroup) while a snapshot of it was coming in;
    the next credit request asked the engine for the removed group's incarnation and the worker died
    (UnknownGroup). Transfers of groups no longer hosted are now forgotten."""
    from paxos_core.sim.simulation import FAULT_KINDS, SimConfig, run_seed

    result = run_seed(SimConfig(seed=1602033, nodes=5, groups=1, faults=tuple(f for f in FAULT_KINDS if f != "member")))
    assert not any("exception" in v for v in result.violations), result.violations[:3]


def _node_1_leading(plant=""):
    """Node 1's engine, leading group 0 of a three-node loopback cluster (with a planted bug, if given)."""
    cluster = LoopbackCluster(nodes=3, groups=1, seed=1, **({"plant": plant} if plant else {}))
    cluster.propose(1, 0, b"first")
    cluster.tick(30)
    engine = cluster.engines[1]
    assert engine.group_view(0)["role"] == "leading"
    return engine


def _relay_back(engine, entries):
    """Node 2, a former leader, relays `entries` [(origin, seq, payload)] to node 1 (a FORWARD)."""
    engine.receive([Message(Kind.FORWARD, 0, 0, engine.group_view(0)["promised"], 0, 0, 0, encode_batch(entries),
                            src=2)])


def test_soak_finding_our_own_proposal_relayed_back_while_in_flight_here_is_not_proposed_again():
    """Soak seed 1,417,060 (at 277c49c, "its own proposals are queued out of order"): a former leader relayed
    back to node 3 one of node 3's own proposals, which node 3 had in flight in an instance it led. It was
    queued again behind later proposals and proposed a second time (exactly-once made the copy STALE, so
    nothing was applied twice, but the order of the queue broke and the copy cost an instance). A proposal of
    ours that is in flight here is now dropped from a FORWARD."""
    engine = _node_1_leading()
    seq = engine.propose(0, b"x", b"x")
    engine.take_effects()          # the leader puts this input's proposals into an instance (its Accept is
                                   # not delivered: the FORWARD below comes while it is in flight)
    pg = engine.proposer.groups[0]
    flying = {i: decode_batch(f.value) for i, f in pg.inflight.items()}
    assert [e[1] for entries in flying.values() for e in entries] == [seq]
    _relay_back(engine, [(1, seq, b"x")])
    assert {i: decode_batch(f.value) for i, f in pg.inflight.items()} == flying and not pg.pending, \
        "proposed once only"


@pytest.mark.parametrize("plant", ["", "relay-appends"])
def test_soak_finding_our_own_older_proposal_relayed_back_is_queued_before_our_later_ones(plant):
    """Soak seed 3,154,073 (at 7fa4005, "its own proposals are queued out of order"): node 3 forwarded a
    proposal to the leader of the time, then led the group itself and queued a newer proposal of its own; the
    former leader relayed the older one back, and it was queued AFTER the newer one. A node's own proposals
    must reach instances in the order it made them (a session's commands reach the log in order, which
    exactly-once leans on): one of ours relayed back now goes before our own later ones."""
    engine = _node_1_leading(plant)
    older = engine.propose(0, b"older", b"older")
    newer = engine.propose(0, b"newer", b"newer")
    pg = engine.proposer.groups[0]
    assert [e[1] for e in pg.pending] == [older, newer]
    away = pg.pending.pop(0)            # as if it had gone to the former leader: only its relay brings it back
    pg.pending_bytes -= len(away[2])
    _relay_back(engine, [(1, older, b"older")])
    order = [e[1] for i in sorted(pg.inflight) for e in decode_batch(pg.inflight[i].value) if e[0] == 1]
    order += [e[1] for e in pg.pending if e[0] == 1]
    assert order == ([newer, older] if plant else [older, newer]), order     # the plant: the check sees it


# ---------------------------------------------------------------------------------------------------- soak
def _three_node_loop(clock, plant=""):
    core = CoreConfig(node_id=1, members=(1, 2, 3), n_groups=1, sticky_ticks=30)
    settings = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30, lease_margin=0.3, plant=plant)
    log = MemoryLog(1)
    sent = _Capture()
    loop = ReplicaLoop(settings, core, clock=clock, log=log, store=MemoryStore(), send=sent, hosted=[0],
                       recovery=log.recover(), rng=random.Random(7))
    return loop, sent


@pytest.mark.parametrize("plant", ["", "claim-while-rebuilding"])
@pytest.mark.parametrize("master", [0, 1], ids=["no-master", "master-by-the-table"])
def test_soak_finding_a_node_rebuilding_a_group_neither_claims_nor_serves_its_mastership(master, plant):
    """Soak seed 4,100,239 (at 8eaf429): node 3 of five was rebuilding group 6 (a damaged record) when a client
    write came to it and no master's lease was alive in its view. It claimed mastership, the leader got the
    claim chosen, and leadership followed mastership to a node that votes nowhere until its rebuild ends: the
    leader resigned, the rebuild waited for instances nobody drove, and no write was accepted for the 4 s
    after the heal. A node rebuilding a group now never claims it, and as its master by the table it serves
    nothing (its lease runs out) and sends clients to a voter. With the plant claim-while-rebuilding (the code
    before c3abbdb) the checks below see the bug."""
    clock = _Clock()
    loop, sent = _three_node_loop(clock, plant)
    slot = loop.slot_of(0)
    loop.masters.master[slot] = master
    loop.engine.begin_repair(0, "storage damaged (test)")
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    read = rpc.read_request(2, 0, rpc.READ_LEASE, 1000, kv.encode_get(b"k"))
    replies = _turns(loop, clock, [(b"c", put), (b"c", read)], n=5)
    checks = {
        "both sent elsewhere": sorted((status, req_id) for status, req_id, _ in replies) == [
            (rpc.NOT_MASTER, 1), (rpc.NOT_MASTER, 2)],
        "sent to another voter": all(rpc.decode_not_master(body)[0] in (2, 3) for status, _, body in replies
                                     if status == rpc.NOT_MASTER),
        "no claim proposed": not loop.masters.pending.get(slot),
        "nobody waits for this node to lead": loop.preferred[slot] == 0,
        "no ballot of its own": not [m for _, m in sent.messages if m.kind in (Kind.PREPARE, Kind.ACCEPT)],
    }
    if plant:
        assert not all(checks.values()), "the planted bug must be seen"
    else:
        assert all(checks.values()), checks


@pytest.mark.parametrize("plant", ["", "redirect-without-catchup"])
def test_soak_finding_a_node_that_sends_a_client_to_a_voter_asks_whether_it_is_behind(plant):
    """Simulator seed 4,100,027 (with the fix above): node 3, master by the table of a group that no longer
    counted it as a voter, sent a client to node 2; node 2, 19 instances behind (cut off while a configuration
    made it a voter), took itself for a learner and sent the client back to node 3, until the run ended: in a
    group with no leader nobody sent node 2 anything that showed it was behind. A node that sends a client to a
    voter now also asks a peer for what it misses (with the plant redirect-without-catchup it does not, and the
    last check sees it)."""
    clock = _Clock()
    core = CoreConfig(node_id=1, members=(1, 2, 3, 4), voters=(2, 3, 4), n_groups=1, sticky_ticks=30)
    settings = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30, lease_margin=0.3, plant=plant)
    log = MemoryLog(1)
    sent = _Capture()
    loop = ReplicaLoop(settings, core, clock=clock, log=log, store=MemoryStore(), send=sent, hosted=[0],
                       recovery=log.recover(), rng=random.Random(7))
    _turns(loop, clock, n=3)             # the start's catch-up pass
    clock.t += 5.0
    _turns(loop, clock, n=3)
    sent.messages.clear()
    _turns(loop, clock, n=3)
    assert not _sent(sent.messages, Kind.CATCHUP_REQ), "a quiet node asks nothing"
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    replies = _turns(loop, clock, [(b"c", put)])
    assert [(status, rpc.decode_not_master(body)[0] in (2, 3, 4)) for status, _, body in replies] == [
        (rpc.NOT_MASTER, True)]
    assert bool(_sent(sent.messages, Kind.CATCHUP_REQ)) == (not plant), "it asks a peer whether it is behind"


def _snapshot_offer(loop, src, snap_id, applied=100, size=10_000):
    from paxos_core.replica import snapshots as S
    incarnation = loop.engine.incarnation_of(0)
    header = S.HEADER.pack(S.HEADER_MAGIC, 1, S.KEYED, 0, incarnation, applied, 0xABC, 0, False, S._MASTER_NONE,
                           src, snap_id)
    m = Message(Kind.SNAP_OFFER, 0, applied, snap_id, size, 0, 0xABC, header, 0)
    m.src, m.inc = src, incarnation
    return m


@pytest.mark.parametrize("plant", ["", "stage-silent-source"])
def test_soak_finding_a_snapshot_staging_whose_source_went_silent_gives_way_to_another_peers_offer(plant):
    """Simulator seed 1,666 (found with 026824a): a wiped node rebuilding a group staged a snapshot offered by a
    node that was then removed from the cluster; it asked that node again every 500 ms until the run ended and
    turned down every other peer's offer, so the group stayed rebuilding. A staging whose source has sent
    nothing through four asks now gives way to another peer's offer; a source that sends is kept (with the
    plant stage-silent-source it never gives way, and the last checks see it)."""
    from paxos_core.wire.checksum import crc32c
    clock = _Clock()
    loop, sent = _three_node_loop(clock, plant)
    snaps = loop.snapshots

    def deliver(m):
        snaps.queue.append(("msg", m))
        snaps.before_cycle()

    deliver(_snapshot_offer(loop, 2, 11))
    assert snaps.incoming[0].src == 2
    clock.t += 1.0
    deliver(_snapshot_offer(loop, 3, 22))
    assert snaps.incoming[0].src == 2, "a source silent for a moment is kept"
    clock.t += 1.5
    inc = snaps.incoming[0]
    chunk = b"\x00" * 64
    m = Message(Kind.SNAP_CHUNK, 0, 100, 11, inc.next + 4096, 0, crc32c(chunk), chunk, 0)
    m.src, m.inc = 2, loop.engine.incarnation_of(0)
    deliver(m)
    clock.t += 1.5
    deliver(_snapshot_offer(loop, 3, 22))
    assert snaps.incoming[0].src == 2, "a source that sends is kept"
    sent.messages.clear()
    clock.t += 2.5
    deliver(_snapshot_offer(loop, 3, 22))
    if plant:
        assert snaps.incoming[0].src == 2 and not snaps.stats["snapshot_sources_switched"], "the plant is seen"
        return
    assert snaps.incoming[0].src == 3 and snaps.incoming[0].snap_id == 22
    assert snaps.stats["snapshot_sources_switched"] == 1
    assert [(dest, m.ballot) for dest, m in _sent(sent.messages, Kind.SNAP_ABORT)] == [(2, 11)]


@pytest.mark.parametrize("plant", ["", "renew-own-non-voter"])
def test_finding_a_master_renews_its_own_lease_only_where_it_votes(plant):
    """Simulator seed 1,686: the others' views of a master's lease are renewed by its commands only where it
    votes (replica/applier.py), so its own lease must follow the same rule, or it outlives every other view of
    it and another node claims while it still serves lease reads (with the plant renew-own-non-voter, a command
    chosen where the master votes no more renews its own lease anyway, and the check below sees it)."""
    clock = _Clock()
    loop = _one_node_loop(clock, plant)
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    assert [r[0] for r in _turns(loop, clock, [(b"c", put)], n=20)] == [rpc.OK]
    assert loop.masters.has_lease(0, loop.now_ticks())
    held = int(loop.masters.lease_until[0])
    # From here on, the configuration of every instance leaves this node out (as a node that learned an ADOPT
    # of other voters would answer); the lease it holds runs out, and a later write renews nothing.
    first = loop.engine.learned(0)[0]
    votes_at = loop._votes_at
    loop._votes_at = lambda group, instance, node: votes_at(group, instance, node) if instance < first else False
    _turns(loop, clock, (), n=40)
    put = rpc.propose_request(2, 0, 1000, 77, 2, kv.encode_put(b"k", b"v2"))
    _turns(loop, clock, [(b"c", put)], n=20)
    assert loop.engine.learned(0)[0] > first
    if plant:
        assert int(loop.masters.lease_until[0]) > held, "the plant must renew the lease, or this test sees nothing"
    else:
        assert int(loop.masters.lease_until[0]) <= held


@pytest.mark.parametrize("plant", ["", "stale-preference"])
def test_soak_finding_a_node_no_client_uses_forgets_a_master_whose_lease_ran_out(plant):
    """Soak seed 4,704,713 (at 24266cc; 5 nodes, 64 groups, every fault): node 3, master of group 52, lost its
    disk; rebuilding, it needed its peers' unfinished instances chosen, and forwarded its barrier to node 4,
    the other voter up. Node 4, removed from the cluster (clients no longer used it), still preferred node 3 as
    its leader: only client requests and master changes set the preference, and a lapsed lease is neither. It
    dropped every FORWARD meant for whoever leads, and nobody led group 52 until its ADOPT came up, too late
    for the heal. A preference now goes once the master's lease runs out. With the plant stale-preference (the
    code before) node 1 below keeps node 2's and never leads."""
    clock = _Clock()
    loop, sent = _three_node_loop(clock, plant)
    slot = loop.slot_of(0)
    _turns(loop, clock, n=3)
    loop.masters.master[slot] = 2                     # node 2 is master, its lease live in our view
    loop.masters.lease_until[slot] = loop.ticks + 30
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    replies = _turns(loop, clock, [(b"c", put)])
    assert [(status, rpc.decode_not_master(body)[0]) for status, _, body in replies] == [(rpc.NOT_MASTER, 2)]
    assert loop.preferred[slot] == 2
    clock.t += 1.0                                   # the lease runs out; no client comes here any more
    if loop.ticks % 2 == 0:
        clock.t += 0.01
    # Busy turns: the ticks advance by two, all odd (periodic work keyed on `ticks % 16 == 0` never ran).
    _turns(loop, clock, n=20, step=0.02)
    sent.messages.clear()
    # Node 3, rebuilding the group, forwards a barrier to whoever leads.
    barrier = encode_batch([(3, 1, b"\x00" * 16)])
    loop.turn([Message(Kind.FORWARD, 0, 0, 0, 0, 0, 0, barrier, src=3)], ())
    _turns(loop, clock, n=40, step=0.02)
    prepared = bool(_sent(sent.messages, Kind.PREPARE))
    assert prepared == (not plant), "the node takes the forward and leads" if not plant else "the plant is seen"
    if not plant:
        assert loop.preferred[slot] == 0


def _node_1_of_three(clock, plant="", log=None):
    """Node 1 of a cluster whose first voters are 1, 2 and 3, with nodes 2 and 3 gone (its sends go nowhere)."""
    core = CoreConfig(node_id=1, members=(1, 2, 3), n_groups=1, sticky_ticks=30)
    settings = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30, lease_margin=0.3, plant=plant)
    log = log or MemoryLog(1)
    return ReplicaLoop(settings, core, clock=clock, log=log, store=MemoryStore(), send=lambda m: None,
                       hosted=[0], recovery=log.recover(), rng=random.Random(7))


@pytest.mark.parametrize("plant", ["", "add-first-voters"])
def test_soak_finding_a_group_added_at_run_time_starts_on_the_voters_its_add_names(plant):
    """Soak seed 4,910,844 (5 nodes, 8 groups, every fault): the table had swapped nodes 1 and 2 out of the
    first voters (1, 2, 5) and both had left, then group 3 was removed and added again; the new incarnation
    started on (1, 2, 5), and its ADOPT of the table's voters could never be chosen. An ADD_GROUP now names
    the configuration the group starts on (Client.add_group: the voters the newest table places it on), kept
    in its GROUP record across restarts. Here node 1 is all that is left of first voters 1, 2, 3, and the
    table's voters are node 1 alone: a group added on them chooses; the plant (the first voters, the code
    before) chooses nothing."""
    clock = _Clock()
    loop = _node_1_of_three(clock, plant)
    first = config_state(2, (1,))
    add = rpc.add_group_request(5, 7, 0, first)
    assert _turns(loop, clock, [(b"admin", add)]) == [(rpc.OK, 5, b"")]
    put = rpc.propose_request(6, 7, 1000, 77, 1, kv.encode_put(b"k", b"v"))
    replies = _turns(loop, clock, [(b"c", put)], n=40)
    if plant:
        assert loop.engine.latest_config(7) == (1, (1, 2, 3)) and not replies, "no quorum of the first voters"
        return
    assert loop.engine.latest_config(7) == (2, (1,))
    assert [r[:2] for r in replies] == [(rpc.OK, 6)]
    info = loop.group_info(7)
    assert info["first"] == {"epoch": 2, "voters": [1]} and info["incarnation"] == 1
    # The same add again is a no-op; on other voters it is refused, and so is a malformed one: nothing changes.
    assert _turns(loop, clock, [(b"admin", add)]) == [(rpc.OK, 5, b"")]
    other = rpc.add_group_request(8, 7, 0, config_state(2, (1, 2, 3)))
    [(status, _, why)] = _turns(loop, clock, [(b"admin", other)])
    assert status == rpc.BAD_REQUEST and b"starting on epoch 2's voters [1]" in why
    bad = rpc.add_group_request(9, 8, 0, first[:-1] + b"\x05")
    [(status, _, why)] = _turns(loop, clock, [(b"admin", bad)])
    assert status == rpc.BAD_REQUEST and not loop.engine.hosts(8)
    # A restart starts the incarnation on the same voters, and it goes on choosing.
    again = _node_1_of_three(clock, log=loop.log)
    assert again.engine.latest_config(7) == (2, (1,)) and again.engine.first_state(7) == first
    put = rpc.propose_request(10, 7, 1000, 77, 2, kv.encode_put(b"k", b"w"))
    assert [r[:2] for r in _turns(again, clock, [(b"c", put)], n=40)] == [(rpc.OK, 10)]
    assert kv.decode_result(again.sm.read(7, kv.encode_get(b"k"))).value == b"w"


def test_a_group_handed_over_and_held_again_starts_its_incarnation_on_the_same_first_voters():
    """A node that hands a group over (placed on other nodes) keeps the voters its incarnation started on in
    the GROUP record, across a restart, and holds it again on them: re-learned from an empty base, its
    configurations are replayed from that first one, as on the nodes that kept it."""
    clock = _Clock()
    loop = _node_1_of_three(clock)
    first = config_state(2, (1,))
    assert loop.add_group(7, 0, first) == 1
    loop.vacate_groups([7])
    assert not loop.engine.hosts(7) and loop.group_info(7)["first"] == {"epoch": 2, "voters": [1]}
    with pytest.raises(ValueError, match="starting on epoch 2's voters"):
        loop.add_group(7, 1, config_state(3, (1, 2)))
    again = _node_1_of_three(clock, log=loop.log)
    assert again.vacated == {7: 1} and again.vacated_first == {7: first}
    again.reenter_group(7)
    assert again.engine.first_state(7) == first and again.engine.latest_config(7) == (2, (1,))
    third = _node_1_of_three(clock, log=loop.log)
    assert third.engine.first_state(7) == first
    # The table's first voters named explicitly are the same first configuration as none named (an add that
    # read the table at epoch 1, retried where the group is held): the add is a no-op, not a conflict.
    assert third.add_group(0, 1, config_state(1, (1, 2, 3))) == 1 and third.add_group(0, 1) == 1
    with pytest.raises(ValueError, match="starting on the table's first voters"):
        third.add_group(0, 1, config_state(1, (1, 2)))


@pytest.mark.parametrize("plant", ["", "add-after-amnesia-votes"])
def test_a_group_added_to_a_worker_that_lost_its_state_rebuilds_before_it_votes(plant):
    """A group added at run time leaves no trace in a wiped log (nor in one set aside as damaged): the wiped node
    does not hold it, the others go on in its incarnation, and an operator's ``group add`` (Client.add_group,
    idempotent) adds it back on the wiped node in that incarnation. Voting at once there is the acceptor with
    no memory of issue 9 (finding 6, in one incarnation): before the wipe this node may have voted for v at
    instance i with one peer while the other missed it, and a new proposer with that other peer and this node,
    now empty, could choose another value at i. A worker that lost its state keeps that fact (LOST_STATE_KEY in
    its store, across restarts), and a group added to it later in an incarnation other nodes hold (ADD_GROUP's
    join flag) rebuilds from its peers first, with its REPAIR record in the GROUP record's write. With the
    plant it votes at once: it promises a peer's Prepare."""
    from paxos_core.replica.loop import LOST_STATE_KEY
    from paxos_core.storage.records import REPAIR_RECORD

    clock = _Clock()
    core = CoreConfig(node_id=1, members=(1, 2, 3), n_groups=8)
    settings = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30, lease_margin=0.3, plant=plant)
    log, store = MemoryLog(1), MemoryStore()

    def start(amnesia=""):
        sent = []
        loop = ReplicaLoop(settings, core, clock=clock, log=log, store=store, send=sent.extend, hosted=[0],
                           recovery=log.recover(), rng=random.Random(7), amnesia=amnesia)
        return loop, sent

    def promised(loop, sent, group, incarnation, round_):
        """Node 2's Prepare for `group`; True if the loop answered it with a promise."""
        del sent[:]
        clock.t += 0.01
        loop.turn([Message(Kind.PREPARE, group, 0, pack(round_, 2), 0, 0, 0, b"", src=2, inc=incarnation)], [])
        return any(m.kind == Kind.PROMISE and m.group == group for _, m in sent)

    # A worker that never lost its state: an added group votes at once (it cannot have voted in it before).
    loop, sent = start()
    assert not loop.lost_state and loop.add_group(5, 3) == 3
    assert loop.engine.group_view(5)["status"] == "ok" and promised(loop, sent, 5, 3, 1)

    # Wiped (here: a fresh log and store with the rebuild reason). A group no node holds yet (an incarnation
    # created now) votes at once: nobody voted in it. Group 2, which the others hold in incarnation 3, is added
    # back (join: Client.add_group found it there).
    log, store = MemoryLog(1), MemoryStore()
    loop, sent = start(amnesia="worker 0's log is gone although the worker had created it before")
    assert loop.lost_state and store.get(LOST_STATE_KEY) is not None
    assert loop.add_group(4, 1) == 1 and loop.engine.group_view(4)["status"] == "ok"
    assert promised(loop, sent, 4, 1, 1)
    assert loop.add_group(2, 3, join=True) == 3
    repair_keys = [k for k in log.store if k == group_key(REPAIR_RECORD, 2, 0)]
    if plant:
        assert loop.engine.group_view(2)["status"] == "ok"
        assert promised(loop, sent, 2, 3, 1), "the planted bug: it promises with no memory of its votes"
        return
    assert repair_keys, "the REPAIR record is written with the GROUP record"
    assert loop.engine.group_view(2)["status"] == "repairing"
    assert not promised(loop, sent, 2, 3, 1), "no promise while it rebuilds"
    # A restart before the rebuild is done: still rebuilding; and the fact outlives the rebuild of the first
    # loss: a group added after the restart (no amnesia now) rebuilds too.
    loop, sent = start()
    assert loop.lost_state and loop.engine.group_view(2)["status"] == "repairing"
    assert not promised(loop, sent, 2, 3, 2)
    loop.add_group(6, 1, join=True)
    assert loop.engine.group_view(6)["status"] == "repairing" and not promised(loop, sent, 6, 1, 1)


def test_a_leftover_copy_of_an_earlier_incarnation_is_told_of_the_newer_one_and_a_voting_copy_is_not():
    """Group 0 removed and added again on nodes 1 and 2 (incarnation 2). Node 3 still holds incarnation 1
    with its data and votes: it is told nothing that would replace it (only an operator removes an
    incarnation). Node 3 then loses its data and holds incarnation 1 again, rebuilding: its STATE_REQs reach
    nodes 1 and 2, which answer with their incarnation and first configuration (INC_NOTICE), and node 3
    reports the newer incarnation to its replica layer (Effects.superseded). An empty copy (a node that joins)
    is told too; traffic of its own incarnation is not affected."""
    cluster = LoopbackCluster(nodes=3, groups=1, window=1)
    for k in range(3):
        cluster.propose(1, 0, b"v%d" % k)
    for n in (1, 2):
        cluster.engines[n].remove_group(0)
        cluster.engines[n].add_group(0, 2)
    cluster.propose(1, 0, b"new")
    cluster.tick(40)
    third = cluster.engines[3]
    assert third.incarnation_of(0) == 1 and third.learned(0)[0] > 0
    assert cluster.superseded[3] == [] and not third.replaceable(0), "a copy that votes is never replaced"
    assert cluster.engines[1].counters_dict()["incarnation_notices"] == 0
    # Node 3 loses its data: incarnation 1 again (its node file's), rebuilding.
    third.remove_group(0)
    third.add_group(0, 1)
    third.begin_repair(0, "wiped")
    assert third.replaceable(0)
    cluster.tick(1000)                      # past the rebuild's wait: then it asks its peers (STATE_REQ)
    assert (0, 2, b"") in cluster.superseded[3]
    assert all(entry == (0, 2, b"") for entry in cluster.superseded[3])
    # An empty copy (never promised, accepted or learned anything) is told as well, on its peers' traffic.
    cluster.superseded[3].clear()
    third.remove_group(0)
    third.add_group(0, 1)
    assert third.group_view(0)["status"] == "ok" and third.replaceable(0)
    cluster.tick(10)                        # (notices go at most once per retransmit interval per peer)
    cluster.propose(1, 0, b"more")
    cluster.tick(10)
    assert (0, 2, b"") in cluster.superseded[3]


@pytest.mark.parametrize("plant", ["", "join-newer-votes"])
def test_a_leftover_copy_takes_the_newer_incarnation_and_rebuilds_it_if_its_worker_lost_its_state(plant):
    """ReplicaLoop.join_newer: the engine said a peer holds incarnation 3 of group 0, whose copy here (the node
    file's incarnation 1, rebuilding after the worker lost its state) is a leftover. The loop removes it (a
    GROUP record of 3 replaces its tombstone of 1) and adds incarnation 3 as a join: rebuilding first, since this worker may have voted in
    it before the loss. With the plant it votes at once."""
    from paxos_core.storage.records import REPAIR_RECORD

    clock = _Clock()
    core = CoreConfig(node_id=1, members=(1, 2, 3), n_groups=1)
    settings = LoopSettings(node_id=1, tick_s=0.01, lease_ticks=30, lease_margin=0.3, plant=plant)
    log = MemoryLog(1)
    loop = ReplicaLoop(settings, core, clock=clock, log=log, store=MemoryStore(), send=lambda m: None,
                       hosted=[0], recovery=log.recover(), rng=random.Random(7), amnesia="its log is gone")
    assert loop.lost_state and loop.engine.group_view(0)["status"] == "repairing"
    loop.superseded = [(0, 3, b"")]
    loop.join_newer()
    assert loop.engine.incarnation_of(0) == 3 and loop.stats["incarnations_joined"] == 1
    recovery = log.recover()
    assert recovery.groups[0].incarnation == 3, "on record before it takes part in anything"
    assert loop.engine.group_view(0)["status"] == ("ok" if plant else "repairing")
    assert (group_key(REPAIR_RECORD, 0, 0) in log.store) == (not plant)
    # Told again (a late notice), or of an older one: nothing changes.
    loop.superseded = [(0, 3, b""), (0, 2, b"")]
    loop.join_newer()
    assert loop.engine.incarnation_of(0) == 3 and loop.stats["incarnations_joined"] == 1

"""Retention (replica/retention.py): where a group's log is cut, by instances kept and by value bytes kept,
through the real engine, its effect cycle and its recovery (the engine keeps the bytes below its low mark)."""
from paxos_core.replica.retention import Retention
from paxos_core.sim.loopback import LoopbackCluster


class AppliedEverything:
    """A state machine stand-in that has applied all the engine learned (what Retention reads)."""

    checkpoint_entries = None

    def __init__(self, engine):
        self.engine = engine

    def applied_next(self, group):
        return self.engine.learned(group)[0]


def _cluster(values, size=10):
    cluster = LoopbackCluster(nodes=3, groups=1)
    for k in range(values):
        cluster.propose(1, 0, b"%0*d" % (size, k))
    cluster.tick(3)
    return cluster


def _retain(cluster, node=1, **limits):
    engine = cluster.engines[node]
    retention = Retention(engine, AppliedEverything(engine), cluster.logs[node], lambda slot: slot, **limits)
    done = retention.run()
    cluster.settle()
    return done


def test_by_instances_the_cut_is_the_multiple_of_64_at_or_below_applied_minus_retain():
    cluster = _cluster(300)
    assert cluster.engines[1].learned(0)[0] >= 300
    assert _retain(cluster, retain_instances=10000) == 0
    assert cluster.engines[1].low(0) == 0
    assert _retain(cluster, retain_instances=100) == 1
    assert cluster.engines[1].low(0) == (cluster.engines[1].learned(0)[0] - 100) // 64 * 64
    assert _retain(cluster, retain_instances=-1, retain_bytes=1) == 0, "-1 turns truncation off"


def test_by_bytes_the_log_keeps_no_more_than_retain_bytes_of_values():
    cluster = _cluster(300, size=10)
    engine, log = cluster.engines[1], cluster.logs[1]
    learned, learned_bytes = engine.learned(0)[0], engine.learned_bytes(0)
    assert learned >= 256
    weight_from = {at: learned_bytes - log.read_chain_bytes(0, at)[1] for at in (64, 128, 192)}
    assert _retain(cluster, retain_instances=10000, retain_bytes=0) == 0
    assert _retain(cluster, retain_instances=10000, retain_bytes=learned_bytes) == 0, "light enough"
    # The lowest multiple of 64 from which the values weigh at most the limit: 128 exactly at its weight.
    assert _retain(cluster, retain_instances=10000, retain_bytes=weight_from[128]) == 1
    assert engine.low(0) == 128
    assert engine.group_view(0)["low_bytes"] == log.read_low(0)[2] == learned_bytes - weight_from[128]
    assert _retain(cluster, retain_instances=10000, retain_bytes=weight_from[128]) == 0, "nothing more to cut"
    # One byte less: from 192.
    assert _retain(cluster, retain_instances=10000, retain_bytes=weight_from[128] - 1) == 1
    assert engine.low(0) == 192
    # The bytes below the low mark come back with the engine after a restart.
    cluster.crash(1)
    cluster.restart(1)
    assert cluster.engines[1].group_view(0)["low_bytes"] == learned_bytes - weight_from[192]
    assert cluster.engines[1].low(0) == 192


def test_by_bytes_the_cut_stops_at_the_applied_mark_even_when_the_values_above_weigh_more():
    cluster = _cluster(300, size=10)
    engine = cluster.engines[1]
    assert _retain(cluster, retain_instances=10000, retain_bytes=1) == 1
    assert engine.low(0) == engine.learned(0)[0] // 64 * 64
    assert _retain(cluster, retain_instances=10000, retain_bytes=1) == 0


def test_the_limit_reached_first_wins():
    cluster = _cluster(400, size=10)
    engine, log = cluster.engines[1], cluster.logs[1]
    learned, learned_bytes = engine.learned(0)[0], engine.learned_bytes(0)
    # By instances alone the cut would be at 64; the byte limit (the weight from 192 up) cuts higher.
    assert _retain(cluster, retain_instances=learned - 64 - learned % 64 + 1,
                   retain_bytes=learned_bytes - log.read_chain_bytes(0, 192)[1]) == 1
    assert engine.low(0) == 192
    other = _cluster(400, size=10)
    # By bytes alone nothing would go (a big budget); the instance limit cuts.
    assert _retain(other, retain_instances=64, retain_bytes=1 << 30) == 1
    assert other.engines[1].low(0) == (other.engines[1].learned(0)[0] - 64) // 64 * 64


def test_the_cut_never_passes_what_the_state_machine_applied():
    cluster = _cluster(300, size=10)
    engine = cluster.engines[1]

    class AppliedLess(AppliedEverything):
        def applied_next(self, group):
            return 70

    retention = Retention(engine, AppliedLess(engine), cluster.logs[1], lambda slot: slot, retain_instances=0,
                          retain_bytes=1)
    assert retention.run() == 1
    cluster.settle()
    assert engine.low(0) == 64


# ---------------------------------------------------------------- the peers' floor

def _lagging_cluster(peer_lag, lag_from=40, total=300):
    """Node 3 learns `lag_from` values, is down while the rest are chosen, and comes back unable to catch up
    (its catch-up replies are lost) while it still takes part: it accepts new values and reports its mark."""
    from paxos_core.wire.message import CATCHUP_REPLY
    cluster = LoopbackCluster(nodes=3, groups=1, peer_lag_instances=peer_lag, peer_live_ticks=10)
    for k in range(lag_from):
        cluster.propose(1, 0, b"%010d" % k)
    cluster.tick(3)
    assert cluster.engines[3].learned(0)[0] == lag_from
    cluster.crash(3)
    for k in range(lag_from, total):
        cluster.propose(1, 0, b"%010d" % k)
    cluster.restart(3)
    cluster.drop = lambda src, dest, msg: dest == 3 and msg.kind == CATCHUP_REPLY
    for k in range(5):
        cluster.propose(1, 0, b"more %d" % k)
    return cluster


def _retain_with_floor(cluster, node, retain, peer_lag):
    engine = cluster.engines[node]
    retention = Retention(engine, AppliedEverything(engine), cluster.logs[node], lambda slot: slot,
                          retain_instances=retain, peer_lag_instances=peer_lag)
    retention.run()
    cluster.settle()
    return engine.low(0)


def test_a_live_peer_behind_keeps_every_log_above_its_mark_and_catches_up_from_the_log():
    cluster = _lagging_cluster(peer_lag=1000)
    behind = cluster.engines[3].learned(0)[0]
    assert behind == 40
    # The leader heard node 3's mark in its votes and told node 2 in its next Accepts.
    for node in (1, 2):
        assert int(cluster.engines[node].learner.peer_floor_array[0]) == behind
    for node in (1, 2):
        assert _retain_with_floor(cluster, node, retain=100, peer_lag=1000) == 0, "40 - 100 < 0: nothing to cut"
    # With a retain below the floor, the cut stops at the floor's multiple of 64 below it minus retain.
    assert _retain_with_floor(cluster, 1, retain=0, peer_lag=1000) == 0   # 40 // 64 * 64
    cluster.drop = None
    cluster.tick(10)
    assert cluster.engines[3].learned(0) == cluster.engines[1].learned(0)
    assert not any(cluster.offers.values()), "caught up from the log, no snapshot offered"


def test_without_the_floor_the_same_peer_is_offered_a_snapshot():
    # The control of the test above: it shows that test can see a missing floor.
    cluster = _lagging_cluster(peer_lag=0)
    assert int(cluster.engines[1].learner.peer_floor_array[0]) == 0
    learned = cluster.engines[1].learned(0)[0]
    assert _retain_with_floor(cluster, 1, retain=100, peer_lag=0) == (learned - 100) // 64 * 64
    assert _retain_with_floor(cluster, 2, retain=100, peer_lag=0) == (learned - 100) // 64 * 64
    cluster.drop = None
    cluster.tick(10)
    assert any(dest == 3 for offers in cluster.offers.values() for dest, _, _ in offers)


def test_a_peer_further_behind_than_peer_lag_does_not_hold_the_logs():
    cluster = _lagging_cluster(peer_lag=100)       # node 3 is 265 behind
    learned = cluster.engines[1].learned(0)[0]
    # The floor is node 2's mark as its last vote said (a value or two behind), not node 3's.
    assert learned - 3 <= int(cluster.engines[1].learner.peer_floor_array[0]) <= learned
    assert _retain_with_floor(cluster, 1, retain=100, peer_lag=100) == (learned - 100) // 64 * 64


def test_the_floor_never_keeps_more_than_peer_lag_beyond_retain():
    # The engine's floor holds node 3's mark (lag 1000 allowed there), but retention allows only 128 more:
    # the log keeps retain + 128 at most, whatever the floor says.
    cluster = _lagging_cluster(peer_lag=1000)
    learned = cluster.engines[1].learned(0)[0]
    assert _retain_with_floor(cluster, 1, retain=64, peer_lag=128) == (learned - 64 - 128) // 64 * 64


def test_a_peer_not_heard_for_peer_live_ticks_no_longer_holds_the_floor():
    cluster = _lagging_cluster(peer_lag=1000)
    assert int(cluster.engines[1].learner.peer_floor_array[0]) == 40
    cluster.crash(3)
    cluster.tick(12)                                 # peer_live_ticks = 10
    learned = cluster.engines[1].learned(0)[0]
    # The leader kept node 3's mark while it was live, then let it go (and its idle group) with the floor at
    # its own mark; a new burst starts from there and tells node 2.
    assert int(cluster.engines[1].learner.peer_floor_array[0]) == learned
    cluster.propose(1, 0, b"after")
    cluster.propose(1, 0, b"after 2")
    for node in (1, 2):
        assert int(cluster.engines[node].learner.peer_floor_array[0]) >= learned

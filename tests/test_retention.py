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

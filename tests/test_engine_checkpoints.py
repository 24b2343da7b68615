"""The engine's side of checkpoints (docs/design/checkpoints.md, step 3): truncating a learned prefix of the
log, snapshot offers instead of catch-up below the truncation mark, and installing a snapshot's state as
the learned prefix, all through the real effect cycle (replica/cycle.py) and the real recovery."""
import random

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from paxos_core.core.learner import chain_of
from paxos_core.sim.loopback import LoopbackCluster
from paxos_core.storage.records import CHAIN_RECORD, INSTANCE_RECORD, LOW_RECORD, decode_record, group_key, parse_key
from paxos_core.wire.codec import decode_batch


def _values(cluster, node, group=0):
    """The chosen values node `node` holds in its log, from its low mark to its learned mark."""
    engine = cluster.engines[node]
    low, end = engine.low(group), engine.learned(group)[0]
    return [v for _, _, v in cluster.logs[node].read_chosen(group, low, end)]


def _history(cluster, count, node=1, group=0, size=10):
    for k in range(count):
        cluster.propose(node, group, b"%0*d" % (size, k))
    cluster.tick(3)


def _truncate(cluster, node, below, group=0):
    """Truncate `node`'s log below `below` (a multiple of 64) with the chain and bytes of its CHAIN record."""
    chain, nbytes = cluster.logs[node].read_chain_bytes(group, below)
    cluster.engines[node].truncate(group, below, chain, nbytes)
    cluster.settle()


def _record_types_below(log, group, below):
    return sorted({parse_key(k)[0] for k in log.store if parse_key(k)[0] in (INSTANCE_RECORD, CHAIN_RECORD)
                   and parse_key(k)[1] == group and parse_key(k)[2] < below})


def test_chain_records_count_the_value_bytes_below_them():
    cluster = LoopbackCluster(nodes=3, groups=1)
    _history(cluster, 130)
    everything = cluster.logs[1].read_chosen(0, 0, 128)
    for at in (64, 128):
        chain, nbytes = cluster.logs[1].read_chain_bytes(0, at)
        assert chain == chain_of([v for _, _, v in everything[:at]])
        assert nbytes == sum(len(v) for _, _, v in everything[:at])
    assert cluster.engines[1].learned_bytes(0) == sum(
        len(v) for _, _, v in cluster.logs[1].read_chosen(0, 0, cluster.engines[1].learned(0)[0]))


def test_truncation_deletes_the_prefix_in_the_cycle_and_recovery_resumes_from_the_low_mark():
    cluster = LoopbackCluster(nodes=3, groups=1)
    _history(cluster, 150)
    before = cluster.engines[1].learned(0)
    learned_bytes = cluster.engines[1].learned_bytes(0)
    syncs = cluster.logs[1].syncs
    _truncate(cluster, 1, 128)
    assert cluster.logs[1].syncs == syncs + 1, "the truncation is one synced write"
    assert _record_types_below(cluster.logs[1], 0, 128) == []
    assert cluster.logs[1].read_low(0)[0] == 128
    assert cluster.engines[1].low(0) == 128
    with pytest.raises(ValueError):
        cluster.engines[1].truncate(0, 100, 0, 0)              # below the low mark
    with pytest.raises(ValueError):
        cluster.engines[1].truncate(0, before[0] + 1, 0, 0)    # beyond what is learned
    cluster.crash(1)
    state = cluster.restart(1).groups[0]
    assert state.low == 128 and not state.repair and not state.stop_reason
    # The last instance is learned again from the leader's next notice (its mark is on later records only).
    assert (state.chosen_next, state.chain) in (before, (before[0] - 1, chain_of(
        [v for _, _, v in cluster.logs[2].read_chosen(0, 0, before[0] - 1)])))
    assert state.learned_bytes in (learned_bytes, learned_bytes - len(cluster.logs[2].read_chosen(
        0, before[0] - 1, before[0])[0][2]))
    _history(cluster, 10)
    assert cluster.engines[1].learned(0) == cluster.engines[2].learned(0)


def test_a_peer_behind_the_truncation_mark_gets_an_offer_not_a_catch_up_reply():
    cluster = LoopbackCluster(nodes=3, groups=1)
    _history(cluster, 20)
    cluster.crash(3)
    _history(cluster, 200)
    for node in (1, 2):
        _truncate(cluster, node, 192)
    cluster.restart(3)
    _history(cluster, 1)              # the next Accept's mark tells node 3 how far behind it is
    cluster.tick(5)
    offers = cluster.offers[1] + cluster.offers[2]
    assert offers and all(dest == 3 and group == 0 and first < 192 for dest, group, first in offers)
    assert len(offers) <= 2 * 6, "at most one offer per peer and group per batch"
    assert cluster.engines[3].learned(0)[0] < 192, "nothing below the mark can come by catch-up"


def test_install_makes_the_snapshot_the_learned_prefix_and_catch_up_continues_above_it():
    cluster = LoopbackCluster(nodes=3, groups=1)
    _history(cluster, 20)
    cluster.crash(3)
    _history(cluster, 200)
    for node in (1, 2):
        _truncate(cluster, node, 192)
    cluster.restart(3)
    a, chain_a, bytes_a = 192, *cluster.logs[1].read_low(0)[1:]
    records_below = _record_types_below(cluster.logs[3], 0, a)
    assert records_below, "node 3 has its old prefix before the install"
    cluster.engines[3].install(0, a, chain_a, bytes_a, 1)
    cluster.settle()
    assert cluster.engines[3].low(0) == a
    assert _record_types_below(cluster.logs[3], 0, a) == []
    assert cluster.logs[3].read_low(0) == (a, chain_a, bytes_a)
    _history(cluster, 1)              # the next Accept's mark: node 3 catches up from A by the log
    assert cluster.engines[3].learned(0) == cluster.engines[1].learned(0)
    assert _values(cluster, 3) == _values(cluster, 1)
    assert cluster.engines[3].learned_bytes(0) == cluster.engines[1].learned_bytes(0)
    # It survives a restart, and the group goes on.
    cluster.crash(3)
    state = cluster.restart(3).groups[0]
    assert state.low == a and not state.repair and not state.stop_reason
    _history(cluster, 5)
    assert cluster.engines[3].learned(0) == cluster.engines[1].learned(0)
    with pytest.raises(ValueError):
        cluster.engines[3].install(0, a, chain_a, bytes_a, 1)         # not ahead of what is learned


def test_an_install_with_a_wrong_chain_learns_nothing_after_it():
    """A snapshot whose chain at A is not the chosen sequence's (a buggy sender): every catch-up reply from
    A on fails the chain check, so the node never learns (or applies) a value on top of it."""
    cluster = LoopbackCluster(nodes=3, groups=1)
    _history(cluster, 20)
    cluster.crash(3)
    _history(cluster, 200)
    cluster.restart(3)
    a = 192
    chain, nbytes = cluster.logs[1].read_chain_bytes(0, a)
    cluster.engines[3].install(0, a, chain ^ 1, nbytes, 1)
    cluster.settle()
    cluster.chosen[3] = []
    _history(cluster, 5)
    assert cluster.engines[3].learned(0) == (a, chain ^ 1)
    assert cluster.chosen[3] == []
    assert cluster.engines[3].counters_dict()["catchup_rejected"] > 0


def test_install_on_a_leader_gives_up_leading_and_expires_its_proposals():
    cluster = LoopbackCluster(nodes=3, groups=1)
    _history(cluster, 10)
    engine = cluster.engines[1]
    assert engine.is_leading(0)
    cluster.crash(2)
    cluster.crash(3)
    engine.propose(0, b"in flight", "tag-in-flight")
    cluster.settle()
    chosen_next = engine.learned(0)[0]
    engine.install(0, chosen_next + 5, 1234, 99, 2)
    cluster.settle()
    assert not engine.is_leading(0)
    assert any(tag == "tag-in-flight" for tag, _, _ in cluster.expired)
    assert engine.learned(0) == (chosen_next + 5, 1234)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.lists(st.sampled_from(["write", "truncate", "crash", "restart", "install"]),
                                         min_size=5, max_size=40))
def test_model_truncations_installs_and_restarts_never_lose_or_fork_a_chosen_value(seed, steps):
    """A reference learner: every node's learned prefix is a prefix of ONE sequence of chosen values (the
    chain at each node's mark is that sequence's chain), logs hold nothing below their low mark, and a
    restart recovers what the log says."""
    rng = random.Random(seed)
    cluster = LoopbackCluster(nodes=3, groups=1, seed=seed)
    truth = {}                  # instance -> the value every node that learned it learned there
    written = 0

    def absorb():
        for n in cluster.node_ids:
            for _, instance, value in cluster.chosen[n]:
                assert truth.setdefault(instance, value) == value, "two values learned at %d" % instance
            cluster.chosen[n] = []

    for step in steps:
        up = [n for n in cluster.node_ids if n not in cluster.down]
        if step == "write" and len(up) >= 2:
            for _ in range(rng.randrange(1, 150)):
                cluster.propose(up[0], 0, b"w%d" % written)
                written += 1
            cluster.tick(3)
        elif step == "truncate" and up:
            node = rng.choice(up)
            engine = cluster.engines[node]
            top = engine.learned(0)[0] // 64 * 64
            low = engine.low(0)
            if top > low and cluster.logs[node].read_chain_bytes(0, top) is not None:
                _truncate(cluster, node, top)
                event("truncated")
        elif step == "crash" and len(up) == 3:
            cluster.crash(rng.choice(up))
        elif step == "restart" and len(up) < 3:
            down = sorted(cluster.down)
            absorb()
            cluster.restart(rng.choice(down))
            cluster.tick(3)
        elif step == "install" and len(up) == 3:
            # A node falls behind the others' truncation mark and installs the state at a holder's low mark
            # (what a snapshot would carry).
            node = rng.choice(up)
            cluster.crash(node)
            others = [n for n in up if n != node]
            for _ in range(rng.randrange(64, 200)):
                cluster.propose(others[0], 0, b"w%d" % written)
                written += 1
            cluster.tick(3)
            for holder in others:
                top = cluster.engines[holder].learned(0)[0] // 64 * 64
                if top > cluster.engines[holder].low(0):
                    _truncate(cluster, holder, top)
            absorb()
            cluster.restart(node)
            holder = max(others, key=lambda n: cluster.engines[n].low(0))
            low, chain, nbytes = cluster.logs[holder].read_low(0)
            if low > cluster.engines[node].learned(0)[0]:
                cluster.engines[node].install(0, low, chain, nbytes, holder)
                event("installed")
                cluster.settle()
            cluster.propose(others[0], 0, b"w%d" % written)        # its mark tells the node to catch up
            written += 1
            cluster.tick(3)
        absorb()
        for n in cluster.node_ids:
            if n in cluster.down:
                continue
            engine = cluster.engines[n]
            assert engine.group_view(0)["status"] != "stopped", engine.group_view(0)["stop_reason"]
            low = engine.low(0)
            assert _record_types_below(cluster.logs[n], 0, low) == []
            end, chain = engine.learned(0)
            values = _values(cluster, n)
            assert len(values) == end - low, "node %d: its log holds every learned value above its low" % n
            assert all(i in truth for i in range(end)), "node %d learned past a value nobody learned" % n
            assert values == [truth[i] for i in range(low, end)], "node %d: values differ from the chosen ones" % n
            assert chain == chain_of([truth[i] for i in range(end)]), "node %d: its chain is not the chosen one" % n


def test_a_promise_raised_by_an_accept_survives_the_truncation_of_its_instance_records():
    """An acceptor that missed a new leader's Prepare raises its promise on the leader's first Accept; the
    promise is then only in the instance records written since. Truncating them must not forget it (the
    simulator found this: a promise went back across a restart)."""
    cluster = LoopbackCluster(nodes=3, groups=1)
    _history(cluster, 10)
    cluster.crash(3)
    cluster.engines[2].prefer(0, 2)          # node 2 takes over while node 3 is down: 3 never sees its Prepare
    cluster.tick(40)
    _history(cluster, 5, node=2)
    assert cluster.engines[2].is_leading(0)
    cluster.restart(3)
    _history(cluster, 70, node=2)            # node 3 learns node 2's ballot from its Accepts only
    while cluster.engines[3].learned(0)[0] % 64 or cluster.engines[3].group_view(0)["accepted"]:
        _history(cluster, 1, node=2)         # ... up to a mark where truncation can take every record
    promised = cluster.engines[3].group_view(0)["promised"]
    assert promised == cluster.engines[2].group_view(0)["promised"]
    assert cluster.logs[3].read_low(0)[0] == 0
    _truncate(cluster, 3, cluster.engines[3].learned(0)[0])
    cluster.crash(3)
    state = cluster.restart(3).groups[0]
    assert state.promised >= promised

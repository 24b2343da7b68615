"""Recovery from stored records: what is rebuilt, and what happens to damaged records."""
import pytest

from paxos_core.core.learner import chain_of
from paxos_core.errors import GroupStopped
from paxos_core.sim.loopback import LoopbackCluster
from paxos_core.storage.records import (INSTANCE_RECORD, PROMISE_RECORD, RECORD_CHOSEN, decode_record,
                                       encode_record, group_key, parse_key)
from paxos_core.storage.recovery import recover


def _cluster_with_history(instances=20):
    cluster = LoopbackCluster(nodes=3, groups=2, window=1)
    for k in range(instances):
        cluster.propose(1, 0, b"v%02d" % k)
    cluster.tick(3)
    return cluster


def test_restart_rebuilds_promise_learned_prefix_and_chain():
    cluster = _cluster_with_history()
    before = cluster.engines[2].group_view(0)
    cluster.crash(2)
    recovery = cluster.restart(2)
    after = cluster.engines[2].group_view(0)
    assert recovery.corrupt_records == 0
    assert after["promised"] == before["promised"] and after["status"] == "ok"
    # The learned mark is persisted on the records of later instances (no write of its own), so the last
    # instance, learned from the leader's idle Chosen notice, is learned again after the restart.
    assert after["chosen_next"] == before["chosen_next"] - 1
    values = [v for _, _, v in cluster.chosen[1]][: after["chosen_next"]]
    assert after["chain"] == chain_of(values)
    assert after["accepted"][after["chosen_next"]][1] == cluster.chosen[1][-1][2]
    # The restarted node keeps serving: new proposals are chosen and learned everywhere.
    cluster.propose(1, 0, b"after-restart")
    cluster.tick(3)
    assert cluster.engines[2].learned(0) == cluster.engines[1].learned(0)


def _flip(store, key, position):
    value = bytearray(store[key])
    value[position % len(value)] ^= 0x40
    store[key] = bytes(value)


def test_damaged_chosen_record_is_reported_never_used_and_relearned_from_peers():
    cluster = _cluster_with_history()
    store = cluster.stores[2]
    damaged = group_key(INSTANCE_RECORD, 0, 5)
    good_value = cluster.stores[1][damaged]
    for position in (0, 3, 10, 40, -1):        # header, ballots, value, checksum
        cluster.crash(2)
        _flip(store, damaged, position)
        recovery = cluster.restart(2)
        assert recovery.corrupt_records == 1
        problems = recovery.problems()
        assert problems and problems[0][0] == 0 and problems[0][1] == 5
        view = cluster.engines[2].group_view(0)
        assert view["chosen_next"] == 5, "learning stops at the damaged record"
        assert view["status"] == "repairing"
        # It takes no acceptor part while repairing: it waits out the vote lifetime, asks its peers, and
        # learns the missing values from them.
        cluster.propose(1, 0, b"next")
        cluster.tick(cluster.configs[2].repair_wait_ticks + 10)
        view = cluster.engines[2].group_view(0)
        assert view["status"] == "ok"
        assert cluster.engines[2].learned(0) == cluster.engines[1].learned(0)
        rewritten = decode_record(damaged, store[damaged])
        assert rewritten[8] == decode_record(damaged, good_value)[8], "rewritten with the chosen value"
        assert rewritten[3] & RECORD_CHOSEN


def test_damaged_promise_record_makes_the_group_rebuild_from_its_peers():
    cluster = _cluster_with_history()
    cluster.crash(3)
    key = group_key(PROMISE_RECORD, 0, 0)
    _flip(cluster.stores[3], key, 5)
    cluster.restart(3)
    view = cluster.engines[3].group_view(0)
    assert view["status"] == "repairing"
    assert "promise record is damaged" in view["stop_reason"]
    assert cluster.engines[3].group_view(1)["status"] == "ok", "other groups are unaffected"
    # The other two nodes still make progress without it.
    cluster.propose(1, 0, b"without-3")
    assert cluster.acks[-1][0] == b"without-3"
    # After the wait it takes the highest promise its peers report as its floor, and votes again.
    cluster.tick(cluster.configs[3].repair_wait_ticks + 10)
    view = cluster.engines[3].group_view(0)
    assert view["status"] == "ok"
    assert view["promised"] >= cluster.engines[1].group_view(0)["promised"]
    rewritten = decode_record(key, cluster.stores[3][key])
    assert rewritten[4] == view["promised"], "the floor is stored over the damaged record"


def test_damaged_vote_above_the_learned_mark_suspends_the_acceptor():
    cluster = LoopbackCluster(nodes=3, groups=1, window=1)
    cluster.propose(1, 0, b"a")
    # Node 3 accepts instance 1 but never hears it was chosen (the leader is cut off before telling it).
    cluster.crash(2)
    cluster.engines[1].propose(0, b"b", b"b")
    cluster.settle()
    cluster.crash(1)
    key = group_key(INSTANCE_RECORD, 0, 1)
    assert key in cluster.stores[3]
    cluster.crash(3)
    _flip(cluster.stores[3], key, 20)
    recovery = cluster.restart(3)
    state = recovery.groups[0]
    # The damaged record also carried the mark that said instance 0 was chosen; the vote it held is lost,
    # so the acceptor stays out of the group until instance 1 is learned from peers.
    assert state.repair_upto == 2 and state.chosen_next == 0
    assert cluster.engines[3].group_view(0)["status"] == "repairing"


def test_unknown_key_and_truncated_values_are_counted_not_fatal():
    cluster = _cluster_with_history(5)
    items = sorted(cluster.stores[1].items())
    items.append((b"Zgarbage-key!!", b"junk"))
    key, value = items[2]
    items[2] = (key, value[:7])
    recovery = recover(sorted(items))
    assert recovery.corrupt_records == 2
    assert parse_key(key)[0] == INSTANCE_RECORD


def test_divergence_stops_the_group_loudly(caplog):
    """A follower whose stored vote was altered (with a valid checksum, as a bug would) learns a different
    value; the next message whose mark equals its own carries a different chain, and the group stops."""
    cluster = LoopbackCluster(nodes=3, groups=1, window=1)
    for k in range(5):
        cluster.propose(1, 0, b"v%d" % k)
    # Node 3 holds the vote for instance 4 but has not learned it yet (no later mark reached it).
    assert cluster.engines[3].learned(0)[0] == 4
    cluster.crash(3)
    key = group_key(INSTANCE_RECORD, 0, 4)
    rec = list(decode_record(key, cluster.stores[3][key]))
    rec[8] = b"something else"
    cluster.stores[3][key] = encode_record(tuple(rec))[1]
    cluster.restart(3)
    with caplog.at_level("ERROR"):
        cluster.propose(1, 0, b"v5")
        cluster.tick(2)
    view = cluster.engines[3].group_view(0)
    assert view["status"] == "stopped" and view["stop_reason"].startswith("diverged")
    assert cluster.engines[3].counters_dict()["divergences"] == 1
    assert any("STOPPED" in r.getMessage() for r in caplog.records)
    # It stays stopped: it learns nothing more and refuses proposals.
    before = cluster.engines[3].learned(0)
    cluster.propose(1, 0, b"v6")
    assert cluster.engines[3].learned(0) == before
    with pytest.raises(GroupStopped):
        cluster.engines[3].propose(0, b"x", b"x")

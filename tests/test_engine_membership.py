"""Per-instance voters in the engine (issue 14, step 3; docs/design/membership.md): an ADOPT chosen at instance i
governs from i + alpha on, votes and promises count only from the voters of the instance's configuration (R3),
a leader runs phase 1 again where other voters take over (R4), learners never vote, and proposers that vote in
no known configuration get no promise (R6). Driven through the real effect cycle (sim/loopback.py)."""
import pytest

from paxos_core.core.voters import decode_adopt, is_adopt
from paxos_core.sim.loopback import LoopbackCluster
from paxos_core.wire.message import Kind

ALPHA = 8


def five_nodes_three_voters(**extra):
    config = dict(nodes=5, groups=1, window=4, alpha=ALPHA, voters=(1, 2, 3))
    config.update(extra)
    cluster = LoopbackCluster(**config)
    sent_by = {}

    def count(src, dest, msg):
        sent_by[(src, msg.kind)] = sent_by.get((src, msg.kind), 0) + 1
        return False

    cluster.drop = count
    return cluster, sent_by


def adopt_everywhere(cluster, epoch, voters):
    for engine in cluster.engines.values():
        engine.adopt(0, epoch, voters)
    cluster.settle()


def chosen_values(cluster, node):
    return [v for _, _, v in cluster.chosen[node]]


def adopt_instance(cluster, node, epoch):
    found = [i for _, i, v in cluster.chosen[node] if is_adopt(v) and decode_adopt(v)[0] == epoch]
    assert len(found) == 1, found
    return found[0]


def test_learners_never_vote_or_promise_and_learn_every_value():
    cluster, sent_by = five_nodes_three_voters()
    for k in range(20):
        cluster.propose(1, 0, b"v%d" % k)
    cluster.tick(3)
    assert len(cluster.acks) == 20
    for learner in (4, 5):
        assert sent_by.get((learner, Kind.ACCEPTED), 0) == 0
        assert sent_by.get((learner, Kind.PROMISE), 0) == 0
        assert chosen_values(cluster, learner) == chosen_values(cluster, 1)
    assert sent_by[(2, Kind.ACCEPTED)] > 0


def test_votes_of_learners_never_make_a_quorum():
    """Voters 2 and 3 down: the two learners accept every Accept, but nothing may be chosen."""
    cluster, _ = five_nodes_three_voters()
    cluster.propose(1, 0, b"elected")
    assert len(cluster.acks) == 1
    cluster.crash(2)
    cluster.crash(3)
    cluster.propose(1, 0, b"needs a voter")
    cluster.tick(10)
    assert len(cluster.acks) == 1
    assert b"needs a voter" not in b"".join(chosen_values(cluster, 4))


def test_count_any_vote_plant_lets_learners_choose():
    cluster, _ = five_nodes_three_voters(plant="count-any-vote")
    cluster.propose(1, 0, b"elected")
    cluster.crash(2)
    cluster.crash(3)
    cluster.propose(1, 0, b"needs a voter")
    cluster.tick(10)
    assert len(cluster.acks) == 2, "the plant counts the learners' votes (the test above can see it)"


def hold_votes_above(cluster, instance):
    """From now on no vote for an instance above `instance` reaches its proposer (nothing more is chosen)."""
    count = cluster.drop
    cluster.drop = lambda src, dest, msg: count(src, dest, msg) or (msg.kind == Kind.ACCEPTED
                                                                      and msg.instance > instance)
    return count


def test_adopt_takes_effect_alpha_instances_later_on_every_node():
    cluster, _ = five_nodes_three_voters()
    cluster.propose(1, 0, b"first")
    i = cluster.engines[1].learned(0)[0]          # where the ADOPT goes
    count = hold_votes_above(cluster, i)
    adopt_everywhere(cluster, 2, (1, 2, 4))
    cluster.tick(3)                          # the leader's idle mark: every node learns the ADOPT
    assert adopt_instance(cluster, 1, 2) == i
    for node in range(1, 6):
        # Defined below the chosen mark + alpha: before the activation, both sides of it are known.
        assert cluster.engines[node].learned(0)[0] == i + 1
        assert cluster.engines[node].config_of(0, i + ALPHA - 1).voters == (1, 2, 3)
        assert cluster.engines[node].config_of(0, i + ALPHA).voters == (1, 2, 4)
    cluster.drop = count
    cluster.tick(20)
    for node in range(1, 6):
        engine = cluster.engines[node]
        assert adopt_instance(cluster, node, 2) == i
        assert engine.learned(0)[0] >= i + ALPHA
        assert engine.config_of(0, i + ALPHA).voters == (1, 2, 4)
        assert engine.config_of(0, i + ALPHA).epoch == 2
    assert cluster.engines[1].counters_dict()["configs_activated"] == 1


def through_an_activation(voters, plant=""):
    """Node 1 leads; the group adopts `voters` (epoch 2) and goes past the activation under client writes.
    Returns the cluster, its message counts, and how many Prepares node 1 had sent before the change."""
    cluster, sent_by = five_nodes_three_voters(plant=plant)
    cluster.propose(1, 0, b"first")
    prepares = sent_by.get((1, Kind.PREPARE), 0)
    adopt_everywhere(cluster, 2, voters)
    for k in range(ALPHA + 2):
        cluster.propose(1, 0, b"fill %d" % k)
    return cluster, sent_by, prepares


def test_new_voters_decide_after_the_activation_and_old_ones_no_longer_count():
    cluster, sent_by, _ = through_an_activation((1, 2, 4))
    acks = len(cluster.acks)
    assert sent_by.get((4, Kind.ACCEPTED), 0) > 0, "node 4 votes once its configuration governs"
    # Node 3 is no longer a voter; 1 and 4 make a quorum of {1, 2, 4} without node 2.
    cluster.crash(2)
    cluster.propose(1, 0, b"by 1 and 4")
    assert len(cluster.acks) == acks + 1
    # Without node 4, the removed node 3 cannot stand in for it.
    cluster.crash(4)
    cluster.propose(1, 0, b"1 and 3 are not a quorum of {1,2,4}")
    cluster.tick(10)
    assert len(cluster.acks) == acks + 1


def test_leader_runs_phase_one_again_where_new_voters_take_over():
    cluster, sent_by, prepares = through_an_activation((1, 2, 4))
    assert sent_by.get((1, Kind.PREPARE), 0) > prepares, "a new phase 1 at the activation (R4)"
    assert sent_by.get((4, Kind.PROMISE), 0) >= 1
    assert cluster.engines[1].is_leading(0)


def test_no_reprepare_plant_goes_on_under_the_old_promises():
    cluster, sent_by, prepares = through_an_activation((1, 2, 4), plant="no-reprepare-at-activation")
    assert sent_by.get((1, Kind.PREPARE), 0) == prepares


def test_removed_leader_steps_down_and_a_voter_takes_over():
    cluster, sent_by, _ = through_an_activation((2, 3, 4))
    assert not cluster.engines[1].is_leading(0), "node 1 votes nowhere from the activation on"
    cluster.propose(2, 0, b"after removal")
    cluster.tick(80)        # time for the last chosen mark to reach every node (the leader's idle notice)
    assert len(cluster.acks) == 1 + (ALPHA + 2) + 1, "every proposal, the ones node 1 gave back included"
    assert cluster.engines[2].is_leading(0) or cluster.engines[3].is_leading(0) or cluster.engines[4].is_leading(0)
    values = chosen_values(cluster, 2)
    for node in (1, 3, 4, 5):
        assert chosen_values(cluster, node) == values


def test_a_proposer_in_no_known_configuration_gets_no_promise():
    cluster, _ = five_nodes_three_voters()
    cluster.propose(1, 0, b"first")
    cluster.engines[5].prefer(0, 5)          # a learner told to lead: it never prepares
    cluster.settle()
    assert not cluster.engines[5].is_leading(0)
    assert cluster.engines[5].counters_dict()["prepares"] == 0


def test_adopt_is_idempotent_and_an_older_epoch_is_a_no_op():
    cluster, _ = five_nodes_three_voters()
    cluster.propose(1, 0, b"first")
    adopt_everywhere(cluster, 2, (1, 2, 4))
    adopt_everywhere(cluster, 2, (1, 2, 4))
    adopt_everywhere(cluster, 1, (3, 4, 5))
    for k in range(ALPHA + 2):
        cluster.propose(1, 0, b"fill %d" % k)
    adopts = [v for v in chosen_values(cluster, 1) if is_adopt(v)]
    assert len(adopts) == 1
    assert cluster.engines[3].config_of(0, 100).voters == (1, 2, 4)


@pytest.mark.parametrize("bad", [dict(alpha=2, window=4), dict(voters=(1, 10)), dict(voters=tuple(range(1, 9)))])
def test_bad_membership_settings_are_refused(bad):
    from paxos_core.core.config import CoreConfig
    from paxos_core.errors import ConfigError
    with pytest.raises(ConfigError):
        CoreConfig(node_id=1, members=tuple(range(1, 10)), **bad)


def config_views(cluster, first, count):
    return {node: [engine.config_of(0, j).voters for j in range(first, first + count)]
            for node, engine in cluster.engines.items()}


@pytest.mark.parametrize("plant", ["", "config-at-i"])
def test_the_voters_of_an_instance_never_change_once_a_node_can_name_them(plant):
    """config(j) is a function of the values chosen at or below j - alpha: a node that can name it (j below its
    chosen mark + alpha) names the same voters for ever after, whatever it learns later. The planted bug (an
    ADOPT in force from the next instance) breaks exactly this, which lets two nodes count one instance under
    different voters."""
    cluster, _ = five_nodes_three_voters(plant=plant)
    cluster.propose(1, 0, b"first")
    cluster.tick(3)
    first = cluster.engines[1].learned(0)[0]
    before = config_views(cluster, first, ALPHA)
    hold_votes_above(cluster, first)          # the ADOPT at `first` is chosen, nothing after it
    adopt_everywhere(cluster, 2, (3, 4, 5))
    cluster.tick(3)
    assert all(engine.learned(0)[0] == first + 1 for engine in cluster.engines.values())
    after = config_views(cluster, first, ALPHA)
    if plant:
        assert after != before
    else:
        assert after == before
        assert cluster.engines[1].config_of(0, first + ALPHA).voters == (3, 4, 5)


# ---------------------------------------------------------------- durability: a function of the log

def _adopted_and_active(cluster, voters, epoch=2, extra=0):
    """Node 1 leads; the group adopts `voters` as `epoch` and goes past the activation by `extra` more."""
    cluster.propose(1, 0, b"first")
    adopt_everywhere(cluster, epoch, voters)
    for k in range(ALPHA + 2 + extra):
        cluster.propose(cluster_leader(cluster), 0, b"fill %d" % k)
    cluster.tick(3)


def cluster_leader(cluster):
    for node, engine in cluster.engines.items():
        if node not in cluster.down and engine.is_leading(0):
            return node
    return 1


def test_the_configuration_survives_a_restart_of_every_node():
    cluster, _ = five_nodes_three_voters()
    _adopted_and_active(cluster, (1, 2, 4))
    mark = cluster.engines[1].learned(0)[0]
    for node in range(1, 6):
        cluster.crash(node)
    for node in range(1, 6):
        state = cluster.restart(node).groups[0]
        assert [i for i, _ in state.adopts] == [adopt_instance_from_log(cluster, node)]
        assert cluster.engines[node].config_of(0, mark).voters == (1, 2, 4)
    # The old voter 3 cannot stand in for the new voters 2 and 4 after the restart either.
    cluster.crash(2)
    cluster.crash(4)
    cluster.propose(1, 0, b"1 and 3 are not a quorum of {1,2,4}")
    cluster.tick(10)
    assert b"1 and 3 are not a quorum of {1,2,4}" not in b"".join(chosen_values(cluster, 1))
    cluster.restart(4)
    cluster.tick(60)
    assert b"1 and 3 are not a quorum of {1,2,4}" in b"".join(chosen_values(cluster, 1))


def adopt_instance_from_log(cluster, node):
    values = cluster.logs[node].read_chosen(0, 0, cluster.engines[node].learned(0)[0])
    found = [i for i, _, v in values if is_adopt(v)]
    assert len(found) == 1
    return found[0]


def test_a_pending_configuration_survives_a_restart_between_adoption_and_activation():
    cluster, _ = five_nodes_three_voters()
    cluster.propose(1, 0, b"first")
    i = cluster.engines[1].learned(0)[0]
    count = hold_votes_above(cluster, i)        # the ADOPT is chosen at i, nothing after it
    adopt_everywhere(cluster, 2, (1, 2, 4))
    cluster.tick(3)
    assert adopt_instance(cluster, 1, 2) == i
    replayed = 0
    for node in range(1, 6):
        cluster.crash(node)
        state = cluster.restart(node).groups[0]
        if state.chosen_next > i:
            # Its records say the ADOPT is chosen (the mark on its vote for i + 1): recovery replays it.
            replayed += 1
            assert [j for j, _ in state.adopts] == [i]
            assert cluster.engines[node].config_of(0, i + ALPHA - 1).voters == (1, 2, 3)
            assert cluster.engines[node].config_of(0, i + ALPHA).voters == (1, 2, 4)
    assert replayed >= 3
    cluster.drop = count
    cluster.propose(1, 0, b"one more")
    cluster.tick(40)
    for node in range(1, 6):
        engine = cluster.engines[node]
        assert engine.learned(0)[0] >= i + ALPHA
        assert engine.config_of(0, engine.learned(0)[0]).voters == (1, 2, 4)


def test_truncation_keeps_the_configuration_in_the_low_record_and_recovery_starts_from_it():
    cluster, _ = five_nodes_three_voters()
    _adopted_and_active(cluster, (1, 2, 4), extra=140)
    engine = cluster.engines[2]
    chain, nbytes, config = cluster.logs[2].read_chain_bytes(0, 128, with_config=True)
    assert config, "a CHAIN record past the change carries the configuration"
    engine.truncate(0, 128, chain, nbytes, config)
    cluster.settle()
    assert cluster.logs[2].read_low(0, with_config=True)[3] == config
    cluster.crash(2)
    state = cluster.restart(2).groups[0]
    assert state.low == 128 and state.adopts == [] and state.config == config
    assert cluster.engines[2].config_of(0, cluster.engines[2].learned(0)[0]).voters == (1, 2, 4)


def test_an_install_takes_the_snapshots_configuration():
    cluster, _ = five_nodes_three_voters()
    cluster.propose(1, 0, b"first")
    cluster.crash(5)
    _adopted_and_active(cluster, (1, 2, 4), extra=200)
    a = 192
    found = cluster.logs[1].read_chain_bytes(0, a, with_config=True)
    chain, nbytes = found[:2]
    from paxos_core.replica.cycle import chain_at
    c_chain, c_bytes, base, adopts = chain_at(cluster.logs[1], 0, a, with_config=True)
    config = cluster.engines[1].config_state_after(0, base, adopts, a)
    assert (c_chain, c_bytes) == (chain, nbytes) and config == found[2]
    cluster.restart(5)
    with pytest.raises(ValueError):
        cluster.engines[5].install(0, a, chain, nbytes, 1, b"\x01not a state")
    assert cluster.engines[5].learned(0)[0] < a, "a malformed configuration changes nothing"
    cluster.engines[5].install(0, a, chain, nbytes, 1, config)
    cluster.settle()
    assert cluster.engines[5].config_of(0, a).voters == (1, 2, 4)
    assert cluster.logs[5].read_low(0, with_config=True) == (a, chain, nbytes, config)
    cluster.crash(5)
    cluster.restart(5)
    assert cluster.engines[5].config_of(0, a).voters == (1, 2, 4)


def test_a_configuration_at_a_point_of_the_log_is_computed_from_the_log():
    """config_state_after gives the state at any instance from a base and the ADOPTs after it, as a node that
    learned up to there holds it: before the adoption, between adoption and activation, after it."""
    cluster, _ = five_nodes_three_voters()
    cluster.propose(1, 0, b"first")
    adopt_everywhere(cluster, 2, (1, 2, 4))
    i = adopt_instance(cluster, 1, 2)
    engine = cluster.engines[1]
    adopts = [(i, v) for _, j, v in cluster.chosen[1] if j == i]
    from paxos_core.core.voters import VoterTable
    for end, current, pending in ((i, (1, 2, 3), 0), (i + 1, (1, 2, 3), 1), (i + ALPHA, (1, 2, 4), 0)):
        state = engine.config_state_after(0, b"", [a for a in adopts if a[0] < end], end)
        table = VoterTable(1, ALPHA, 1, (1, 2, 3))
        if state:
            table.restore(0, state)
        assert table.config(0, end).voters == current
        assert len(table.pending.get(0, [])) == pending


def test_a_wiped_voter_rebuilds_from_the_voters_of_now_not_those_of_the_first_configuration():
    """Voters {1,2,3} became {1,2,4}, and node 3 is gone for good. Node 1 loses its storage: it knows only the
    first configuration, whose majority without it needs node 3; the rebuild must wait for the majorities of
    the configurations its peers name ({1,2,4}: nodes 2 and 4), learn, and vote again."""
    from paxos_core.storage.memory import MemoryLog
    cluster, _ = five_nodes_three_voters()
    _adopted_and_active(cluster, (1, 2, 4))
    cluster.crash(3)
    cluster.crash(1)
    cluster.logs[1] = MemoryLog(1)
    cluster.restart(1)
    engine = cluster.engines[1]
    engine.begin_repair(0, "storage wiped (test)")
    assert engine.group_view(0)["status"] == "repairing"
    cluster.tick(400)
    assert engine.group_view(0)["status"] == "ok", engine.group_view(0)["repair"]
    assert engine.config_of(0, engine.learned(0)[0]).voters == (1, 2, 4)
    cluster.crash(2)                          # 1 and 4 decide now: node 1 votes again
    cluster.propose(4, 0, b"after the rebuild")
    cluster.tick(60)
    assert b"after the rebuild" in b"".join(chosen_values(cluster, 1))


def test_a_node_added_to_the_cluster_gets_messages_once_the_members_say_so_and_can_then_vote():
    """Four nodes run, voters {1,2,3}; node 5 joins later: before set_members it hears nothing, after it the
    group adopts {1,2,5} and node 5 votes (node 3 can then go)."""
    cluster, sent_by = five_nodes_three_voters()
    for node in range(1, 5):
        cluster.engines[node].set_members((1, 2, 3, 4))
    cluster.engines[5].set_members((1, 2, 3, 4, 5))
    cluster.propose(1, 0, b"before node 5")
    assert chosen_values(cluster, 5) == []
    for node in range(1, 5):
        cluster.engines[node].set_members((1, 2, 3, 4, 5))
    adopt_everywhere(cluster, 2, (1, 2, 5))
    for k in range(ALPHA + 2):
        cluster.propose(1, 0, b"fill %d" % k)
    cluster.crash(3)
    cluster.crash(2)
    cluster.propose(1, 0, b"by 1 and 5")
    cluster.tick(60)
    assert b"by 1 and 5" in b"".join(chosen_values(cluster, 1))
    assert sent_by.get((5, Kind.ACCEPTED), 0) > 0
    with pytest.raises(Exception):
        cluster.engines[1].set_members((2, 3))


def test_an_idle_group_reaches_the_activation_by_itself():
    """After the ADOPT no client writes: the leader fills the instances up to the activation with no-ops, so the
    new voters govern (and the removed node is released) without waiting for traffic."""
    cluster, _ = five_nodes_three_voters()
    cluster.propose(1, 0, b"first")
    adopt_everywhere(cluster, 2, (1, 2, 4))
    i = adopt_instance(cluster, 1, 2)
    cluster.tick(10)
    for node in range(1, 6):
        engine = cluster.engines[node]
        assert engine.learned(0)[0] >= i + ALPHA, (node, engine.learned(0), i)
        assert engine.config_of(0, engine.learned(0)[0]).voters == (1, 2, 4)
    assert set(chosen_values(cluster, 1)[i + 1:i + ALPHA]) == {b""}, "no-ops up to the activation"


def test_a_learner_cut_off_from_catch_up_says_how_far_behind_it_is():
    """Engine.behind: what a stale read checks against paxos.max_stale_lag (the stated bound of a stale read).
    A learner that heard of values chosen but could not fetch them counts them; once it catches up, 0."""
    cluster, _ = five_nodes_three_voters()
    cluster.drop = lambda src, dest, msg: dest == 4
    for k in range(20):
        cluster.propose(1, 0, b"v%d" % k)
    cluster.tick(3)
    assert cluster.engines[4].behind(0) == 0, "it heard of nothing"
    cluster.drop = lambda src, dest, msg: dest == 4 and msg.kind in (Kind.CATCHUP_REPLY, Kind.ACCEPT)
    cluster.propose(1, 0, b"last")
    cluster.tick(3)
    assert cluster.engines[4].behind(0) >= 20, cluster.engines[4].group_view(0)
    cluster.drop = lambda src, dest, msg: False
    cluster.engines[4].poke(0)
    cluster.tick(50)
    assert cluster.engines[4].behind(0) == 0
    assert chosen_values(cluster, 4) == chosen_values(cluster, 1)


def test_a_node_placed_elsewhere_hands_a_group_over_only_once_a_majority_of_its_voters_learned_what_it_had():
    """The handoff rule (Engine.handoff): a node that votes in no configuration of the group may drop its copy
    only once a majority of the voters carrying the group on, none of them rebuilding, said (STATE_REPLY) that
    they learned every instance it had learned. Voters 1,2,3 -> 3,4,5: node 1 waits while 4 and 5 cannot
    answer, and is told yes once they can."""
    cluster, _ = five_nodes_three_voters()
    for k in range(5):
        cluster.propose(1, 0, b"v%d" % k)
    e1 = cluster.engines[1]
    assert not e1.handoff(0), "a voter never hands over"
    adopt_everywhere(cluster, 2, (3, 4, 5))
    cluster.propose(3, 0, b"fill")
    for k in range(ALPHA + 2):
        cluster.propose(3, 0, b"w%d" % k)
    cluster.tick(3)
    assert e1.config_of(0, e1.learned(0)[0]).voters == (3, 4, 5)
    cut = {4, 5}
    cluster.drop = lambda src, dest, msg: (src in cut or dest in cut) and msg.kind in (Kind.STATE_REQ,
                                                                                         Kind.STATE_REPLY)
    for _ in range(20):
        assert not e1.handoff(0), "only node 3 of 3,4,5 could answer: not a majority"
        cluster.tick(1)
    cluster.drop = None
    cluster.tick(1)
    ready = False
    for _ in range(20):
        ready = e1.handoff(0)
        if ready:
            break
        cluster.tick(1)
    assert ready
    assert not cluster.engines[3].handoff(0), "a voter of the current configuration never hands over"


def test_handoff_early_plant_drops_the_copy_without_asking():
    cluster, _ = five_nodes_three_voters(plant="handoff-early")
    cluster.propose(1, 0, b"v")
    adopt_everywhere(cluster, 2, (3, 4, 5))
    for k in range(ALPHA + 2):
        cluster.propose(3, 0, b"w%d" % k)
    cluster.tick(3)
    cluster.drop = lambda src, dest, msg: msg.kind in (Kind.STATE_REQ, Kind.STATE_REPLY)
    assert cluster.engines[1].handoff(0), "the plant hands over without a word from the voters (caught above)"


def test_a_node_held_again_learns_up_to_its_handover_mark_before_it_votes():
    """Engine.begin_reentry: the group is held again (after a handover) with empty state; it neither promises
    nor votes until it has learned every instance below the mark at which it handed the group over."""
    cluster, sent_by = five_nodes_three_voters()
    for k in range(6):
        cluster.propose(1, 0, b"v%d" % k)
    mark = cluster.engines[2].learned(0)[0]
    e2 = cluster.engines[2]
    e2.remove_group(0)
    e2.add_group(0, 1)
    e2.begin_reentry(0, mark)
    assert e2.group_view(0)["status"] == "repairing"
    accepted_before = sent_by.get((2, Kind.ACCEPTED), 0)
    for _ in range(30):
        if e2.group_view(0)["status"] == "ok":
            break
        cluster.tick(1)
    assert e2.group_view(0)["status"] == "ok" and e2.learned(0)[0] >= mark
    assert sent_by.get((2, Kind.ACCEPTED), 0) == accepted_before, "no vote while it learned"
    cluster.crash(3)
    cluster.propose(1, 0, b"needs node 2")
    cluster.tick(3)
    assert b"needs node 2" in b"".join(chosen_values(cluster, 1)), "it votes again once it learned"


@pytest.mark.parametrize("plant", ["", "reenter-without-learning"])
def test_a_node_held_again_never_lets_a_value_be_chosen_twice(plant):
    """Why a node held again must learn before it votes: voters 1,2,3; instances 0..4 chosen by nodes 1 and 2
    while node 3 hears nothing. Node 1 hands the group over and holds it again (empty), node 2 goes down, and
    node 3, behind, campaigns (the learners 4 and 5 are down too): its quorum is 1 and 3. Learning first, node 1 cannot learn (its only source is
    down) and votes for nothing, so nothing is chosen; with the plant it votes at once and node 3 gets another
    value chosen at instance 0 (the planted bug the random runs rarely bring out)."""
    cluster, _ = five_nodes_three_voters(plant=plant) if plant else five_nodes_three_voters()
    cluster.drop = lambda src, dest, msg: dest == 3 or src == 3
    for k in range(5):
        cluster.propose(1, 0, b"first%d" % k)
    first = chosen_values(cluster, 2)[0]
    mark = cluster.engines[1].learned(0)[0]
    assert mark == 5
    e1 = cluster.engines[1]
    e1.remove_group(0)
    cluster.logs[1].delete_group(0)          # its copy dropped, as ReplicaLoop.vacate_groups does
    e1.add_group(0, 1)
    e1.begin_reentry(0, mark)
    for node in (2, 4, 5):                   # the node that chose with it, and the learners that hold it all
        cluster.crash(node)
    cluster.drop = None
    start = {n: len(cluster.chosen[n]) for n in (1, 3)}
    cluster.propose(3, 0, b"second")
    cluster.tick(40)
    at_zero = {n: v for n in (1, 3) for _, i, v in cluster.chosen[n][start[n]:] if i == 0}
    if plant:
        assert at_zero and any(v != first for v in at_zero.values()), "the plant lets a second value be chosen"
    else:
        assert all(v == first for v in at_zero.values()), at_zero
        assert b"second" not in b"".join(chosen_values(cluster, 3))


@pytest.mark.parametrize("asked_first", [(2, 3, 4), (1, 2, 4)], ids=["same-placement", "placement-moved"])
def test_a_node_hands_a_group_over_only_once_the_group_runs_on_its_placement(asked_first):
    """Simulator seed 4,200,513: node 1, a learner of a group, dropped its copy once a majority of the voters
    had learned what it had, while the group still ran on its old voters; an ADOPT of an older table epoch that
    counted node 1, accepted but not chosen, was then chosen by the next leader, and the group's four voters,
    one of them wiped, never chose again. With the placement given, a reply counts only once the replier's
    current configuration is the placement (an older epoch's ADOPT then changes nothing, rule R5).

    placement-moved, simulator seed 1,666 (5 nodes, 8 groups, every fault): node 4 began to hand a group over
    while the table placed it on 1,2,3, then the table placed it on 1,3,5 and the group adopted those. The
    count kept the first placement, which no voter's current configuration was again, so node 4 held the group
    to the end. A new placement starts the count over, asking its voters."""
    cluster, _ = five_nodes_three_voters()
    for k in range(5):
        cluster.propose(1, 0, b"v%d" % k)
    cluster.tick(3)
    e5 = cluster.engines[5]
    for _ in range(20):
        assert not e5.handoff(0, asked_first), "the group still runs on 1,2,3: not yet"
        cluster.tick(1)
    placement = (2, 3, 4)
    adopt_everywhere(cluster, 2, placement)
    cluster.propose(1, 0, b"fill")
    for k in range(ALPHA + 2):
        cluster.propose(2, 0, b"w%d" % k)
    cluster.tick(3)
    ready = False
    for _ in range(40):
        ready = e5.handoff(0, placement)
        if ready:
            break
        cluster.tick(1)
    assert ready, "the group runs on its placement, which does not name node 5"


@pytest.mark.parametrize("plant", ["", "config-forgets-history"])
def test_a_node_that_learned_past_an_activation_names_the_voters_before_it_as_one_that_did_not(plant):
    """Simulator seed 1,686: a node that had learned past an activation answered Engine.config_of for an
    instance before it with the configuration after it, where a node behind answered with the one before: the
    applier renewed a master's lease on some nodes and not on others. Here node 1 goes past the activation of
    (1, 2, 4) and must still name (1, 2, 3) for the instances before it; the plant config-forgets-history (the
    code before session 36) answers with the configuration at its chosen mark."""
    cluster, _ = five_nodes_three_voters(plant=plant)
    cluster.propose(1, 0, b"first")
    cluster.tick(3)
    first = cluster.engines[1].learned(0)[0]            # the ADOPT goes here; it governs from first + ALPHA
    adopt_everywhere(cluster, 2, (1, 2, 4))
    for k in range(ALPHA + 2):
        cluster.propose(1, 0, b"fill %d" % k)
    cluster.tick(3)
    engine = cluster.engines[1]
    assert engine.learned(0)[0] > first + ALPHA
    answers = [engine.config_of(0, j).voters for j in (first, first + ALPHA - 1, first + ALPHA)]
    if plant:
        assert answers[0] == (1, 2, 4), "the planted bug must be seen"
    else:
        assert answers == [(1, 2, 3), (1, 2, 3), (1, 2, 4)]

"""A leader acts only below its chosen mark + window, re-proposals after an election included.

Membership (issue 14) makes the voters of instance j a function of the values chosen up to j - window, so a
leader that sends an Accept at or past its chosen mark + window could count votes of the wrong voters. A new
leader behind the old one used to re-propose, at once, every instance its promises reported; now it
re-proposes those within the window and the rest as the window moves, before any new proposal.

The scenario (3 nodes, window 2): node 1 gets 1 and 2 chosen with node 2's votes (node 2 never hears they
were chosen), sends 3 to node 3 alone (node 3 cannot learn 1 and 2: it never saw them), and crashes. The new
leader has learned only 0 and its promises report votes at 1, 2 and 3: 3 is at 1 + window.
"""
import pytest

from paxos_core.sim.loopback import LoopbackCluster
from paxos_core.wire.message import ACCEPT, CATCHUP_REPLY, CATCHUP_REQ, CHOSEN


def _scenario(plant=""):
    cluster = LoopbackCluster(nodes=3, groups=1, window=2, max_batch_count=1, plant=plant)
    sent = []
    route = cluster._route

    def recording_route(src, messages):
        sent.extend((src, dest, m.kind, m.instance, m.mark, bytes(m.value)) for dest, m in messages)
        route(src, messages)

    cluster._route = recording_route
    cluster.propose(1, 0, b"w")                      # node 1 leads; instance 0 everywhere
    cluster.tick(5)
    assert all(cluster.engines[n].learned(0)[0] == 1 for n in (1, 2, 3))
    # Phase A: 1 and 2 sent together (both with mark 1), chosen by nodes 1 and 2; node 3 hears nothing and
    # node 2 never hears that they were chosen.
    cluster.drop = lambda src, dest, m: dest == 3 or (dest == 2 and m.kind == CHOSEN)
    cluster.engines[1].propose(0, b"v1", b"v1")
    cluster.engines[1].propose(0, b"v2", b"v2")
    cluster.settle()
    assert cluster.engines[1].learned(0)[0] == 3
    assert cluster.engines[2].learned(0)[0] == 1
    # Phase B: 3 goes to node 3 alone, which cannot learn 1 and 2 (it never saw them).
    cluster.drop = lambda src, dest, m: (dest == 2 and src == 1) or m.kind in (CATCHUP_REQ, CATCHUP_REPLY)
    cluster.propose(1, 0, b"v3")
    assert cluster.engines[3].learned(0)[0] == 1
    cluster.crash(1)
    # Phase C: a new leader among nodes 2 and 3, both at 1: their promises report votes at 1, 2 and 3, and
    # 3 is at 1 + window.
    cluster.drop = None
    del sent[:]
    cluster.propose(2, 0, b"v4")                     # work for the group: node 2 takes over in time
    cluster.tick(200)
    return cluster, sent


def test_a_new_leader_behind_re_proposes_past_its_window_only_as_the_window_moves():
    cluster, sent = _scenario()
    accepts = [s for s in sent if s[2] == ACCEPT]
    assert accepts, "a new leader took over"
    assert all(instance < mark + 2 for _, _, _, instance, mark, _ in accepts), accepts
    assert any(instance == 3 for _, _, _, instance, _, _ in accepts), "instance 3 was re-proposed, later"
    # Every vote that may have chosen a value was carried over (1, 2, 3 hold v1, v2, v3 on both nodes), and
    # the new proposal came after them.
    for node in (2, 3):
        values = [v[-2:] for g, i, v in cluster.chosen[node] if v != b""]
        assert values[-4:] == [b"v1", b"v2", b"v3", b"v4"], values
    assert cluster.engines[2].learned(0) == cluster.engines[3].learned(0)


def test_the_planted_uncapped_re_proposal_is_seen():
    _, sent = _scenario(plant="reprepare-uncapped")
    accepts = [s for s in sent if s[2] == ACCEPT]
    assert any(instance >= mark + 2 for _, _, _, instance, mark, _ in accepts)

"""Elections under the sticky rule: the group's new master gets to lead at once when a quorum can promise.

Found with tools/leader_churn.py (2026-12-03): at start-up one group in three runs in four kept a master that
could not lead for about 3 s (sticky_ticks = the lease), and its first operations timed out. Two causes, one
test each, on the sans-I/O engines of a LoopbackCluster (real effect cycle, in-order delivery).
"""
from paxos_core.sim.loopback import LoopbackCluster
from paxos_core.wire.message import Kind

STICKY = 30          # ticks: far longer than anything below waits


class HeldPromises(LoopbackCluster):
    """Promises to `hold_for` are kept back until release(): a peer's sticky refusal (no write behind it)
    then arrives before a promise (which waits for an fsync), as on real nodes."""

    hold_for = None

    def __init__(self, *args, **kw):
        self.held = []
        super().__init__(*args, **kw)

    def _route(self, src, messages):
        keep = []
        for dest, msg in messages:
            if dest == self.hold_for and msg.kind == Kind.PROMISE:
                self.held.append((src, dest, msg))
            else:
                keep.append((dest, msg))
        super()._route(src, keep)

    def release(self):
        held, self.held = self.held, []
        for src, dest, msg in held:
            super()._route(src, [(dest, msg)])
        self.settle()


def _leader_3(cluster):
    cluster.propose(3, 0, b"first")               # elects node 3
    cluster.propose(3, 0, b"second")
    assert cluster.engines[3].is_leading(0)


def test_a_leader_that_resigns_for_the_master_stops_its_own_acceptor_holding_the_promise_to_it():
    """Node 3 leads; node 1 becomes master; node 2 is down. Node 3 resigns, and its own acceptor must stop
    refusing other ballots as the peers' acceptors do on the resign notice: otherwise node 1, whose only
    possible quorum is {1, 3}, waits out the sticky window (before the fix: not leading after 10 ticks)."""
    cluster = LoopbackCluster(nodes=3, groups=1, sticky_ticks=STICKY)
    _leader_3(cluster)
    cluster.crash(2)
    cluster.engines[3].prefer(0, 1)               # node 3 learns that node 1 is the master: it resigns
    cluster.settle()
    assert not cluster.engines[3].is_leading(0)
    cluster.engines[1].prefer(0, 1)               # node 1 learns it: it prepares at once
    cluster.settle()
    for _ in range(10):
        if cluster.engines[1].is_leading(0):
            break
        cluster.tick()
    assert cluster.engines[1].is_leading(0), "node 1 still waits for node 3's sticky window"
    cluster.propose(1, 0, b"third")
    assert cluster.chosen[1][-1][2] != cluster.chosen[1][-2][2]


def test_one_sticky_refusal_does_not_make_a_proposer_give_up_while_a_quorum_can_still_promise():
    """Node 3 leads and still hears itself (its sticky window runs); the sticky windows of nodes 1 and 2 have
    run out (their clocks are ahead). Node 1 prepares: node 3 refuses at once (sticky), node 2's promise comes
    after it. {1, 2} is a quorum, so node 1 must lead; before the fix the first sticky refusal made it back
    off, and the promise that followed was ignored."""
    cluster = HeldPromises(nodes=3, groups=1, sticky_ticks=STICKY, seed=1)
    _leader_3(cluster)
    for node in (1, 2):
        cluster.engines[node].tick(cluster.now + STICKY + 1)     # their windows are over, node 3's is not
    cluster.hold_for = 1
    cluster.engines[1].prefer(0, 1)
    cluster.settle()
    view = cluster.engines[1].group_view(0)
    assert view["role"] == "preparing", view
    assert any(src == 2 for src, _, _ in cluster.held), "node 2 promised"
    cluster.hold_for = None
    cluster.release()
    assert cluster.engines[1].is_leading(0), cluster.engines[1].group_view(0)
    assert cluster.engines[1].counters_dict()["sticky_rejects"] == 0     # its own acceptor did not refuse
    assert cluster.engines[3].counters_dict()["sticky_rejects"] == 1     # node 3's did

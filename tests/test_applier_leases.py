"""How applied commands bear on the master's lease in an observer's view (replica/applier.py, replica/master.py).

Simulator seed 897 (5 nodes, 1 group, its voters moved off node 2 while node 2 was its master): node 2's
last commands were relayed from leader to leader and chosen again and again, and each one renewed node 2's
lease on every node, so no voter claimed the group and no write was accepted for seconds. A master's
commands renew its lease only where it votes; the version counts them all alike (it is replicated state).
"""
import pytest

from paxos_core.replica import envelope
from paxos_core.replica.applier import Applier
from paxos_core.replica.master import MasterTable
from paxos_core.wire.codec import encode_batch

GROUP = 0
LEASE = 30


class StandInStateMachine:
    def applied_next(self, group):
        return 0

    def apply_batch(self, group, items):
        return [[b""] * len(commands) for _, commands in items]


class StandInStore:
    def write(self, puts, deletes):
        pass


def observer(voters_at, plant=""):
    """Node 3's applier, node 2 master of the group at epoch 1 (its lease seen as running out at tick 10)."""
    masters = MasterTable(3, 1, LEASE, 0.25)
    masters.restore(0, 2, 1, 5, 0, 0)
    masters.lease_until[0] = 10
    applier = Applier(3, StandInStateMachine(), masters, StandInStore(), lambda group: 0, plant=plant,
                      votes_at=lambda group, instance, node: node in voters_at(instance))
    return applier, masters


def command_of_node_2(seq, batch=False):
    if batch:
        payload = envelope.client_batch(1, 77, seq, [b"a", b"b"])
    else:
        payload = envelope.client(1, 77, seq, b"put")
    return encode_batch([(2, seq, payload)])


@pytest.mark.parametrize("batch", [False, True])
def test_a_master_that_votes_renews_its_lease_with_every_command(batch):
    applier, masters = observer(lambda instance: (1, 2, 3))
    applier.apply([(GROUP, 4, command_of_node_2(1, batch))], now=100)
    assert int(masters.lease_until[0]) == 100 + LEASE
    assert int(masters.version[0]) == 6


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("plant", ["", "renew-non-voter"])
def test_a_master_that_votes_no_more_is_not_renewed_by_its_commands_but_the_version_counts_them(batch, plant):
    # The group's voters changed from (1, 2, 3) to (1, 3, 4) at instance 4: node 2 votes no more there.
    applier, masters = observer(lambda instance: (1, 2, 3) if instance < 4 else (1, 3, 4), plant)
    applier.apply([(GROUP, 4, command_of_node_2(1, batch)), (GROUP, 5, command_of_node_2(1, batch))], now=100)
    if plant:                                         # the planted bug renews it: the check below sees it
        assert int(masters.lease_until[0]) == 100 + LEASE
        return
    assert int(masters.lease_until[0]) == 10          # not renewed: a voter may claim once it runs out
    assert int(masters.version[0]) == 7               # the same version as on a node that renewed it
    assert masters.known_master(0, 100) == 0          # nobody holds the group's lease in this node's view

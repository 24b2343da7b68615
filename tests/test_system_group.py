"""The system group (issue 14, step 4): hosted by worker 0 of every node, seeded from the node files.

Real processes (tests/cluster_harness.py, every process stopped by its PID): the table reaches epoch 1 with
every member a voter and its address and CURVE key; a restart of every node keeps epoch 1 (the seed every
node proposes again is a no-op); a client without the cluster's credentials reads the table but cannot
change it; the system group is not counted or listed as a data group, cannot be removed, and its id cannot be
added as a data group.
"""
import json

import pytest

from cluster_harness import LocalCluster, wait_for
from paxos_core import PaxosError
from paxos_core.client import Client
from paxos_core.core.config import SYSTEM_GROUP, shard_of
from paxos_core.replica.membership_driver import table_of
from paxos_core.statemachine import kv as kv_ops
from paxos_core.statemachine.kv import encode_put
from paxos_core.statemachine.membership import encode_change
from paxos_core.statemachine.user import decode_user_result


def _table(client, node=None):
    return table_of(client.read(SYSTEM_GROUP, b"table", "linearizable", 5.0, node))


def _seeded(client, node=None):
    try:
        return _table(client, node)["epoch"] >= 1
    except PaxosError:
        return False


def test_sharding_puts_the_system_group_on_worker_0():
    for workers in (1, 2, 3, 5, 7):
        assert shard_of(SYSTEM_GROUP, workers) == 0
        assert [shard_of(g, workers) for g in range(10)] == [g % workers for g in range(10)]


def test_every_node_seeds_the_same_table_once(tmp_path):
    with LocalCluster(tmp_path, nodes=3, workers=2, groups=4) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the system group's table seeded")
        table = _table(admin)
        assert table["epoch"] == 1 and table["voters"] == [1, 2, 3] and table["learners"] == []
        config = cluster.config()
        for row in table["nodes"]:
            address = config.address(row["id"])
            assert (row["host"], row["peer_port"], row["client_port"]) == (
                address.host, address.peer_port, address.client_port)
            assert row["public_key"].encode() == config.curve_public_key(row["id"])
            assert row["role"] == "voter"
        # Every node applied the same table (a stale read of each node's own state, once it caught up).
        for node in cluster.node_ids:
            wait_for(lambda: _seeded(admin, node), 30, message="node %d applied the seed" % node)
            assert _table(admin, node) == table
        # The data groups are what they were: the status counts and lists them only.
        for node in cluster.node_ids:
            rows = cluster.status(node)
            assert sum(r["groups"] for r in rows) == 4
            assert all(g["group"] != SYSTEM_GROUP for r in rows for g in r["group_detail"])
            membership = [r["membership"] for r in rows if "table_epoch" in r["membership"]]
            assert len(membership) == 1 and membership[0]["table_epoch"] == 1 and rows[0]["worker"] == 0
        # A restart of every node proposes the seed again: a no-op.
        for node in cluster.node_ids:
            cluster.restart(node)
        wait_for(lambda: _seeded(admin), 60, message="the table after the restarts")
        history = json.loads(admin.read(SYSTEM_GROUP, b"history", "linearizable", 5.0)[1:])
        assert [e["epoch"] for e in history] == [1]


def test_only_the_clusters_credentials_change_the_table(tmp_path):
    with LocalCluster(tmp_path, nodes=3, workers=1, groups=2) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the system group's table seeded")
        config = cluster.config()
        # A client with the server's public key but its own key pair is no member: it reads, it does not change.
        stranger = Client({n.id: [n.client_endpoint(0)] for n in config.nodes}, 1, 2,
                          curve_server_keys={n.id: config.curve_public_key(n.id) for n in config.nodes},
                          default_timeout=5.0)
        try:
            assert _table(stranger)["epoch"] == 1
            with pytest.raises(PaxosError, match="credentials"):
                stranger.propose(SYSTEM_GROUP, encode_change("promote", expect=1, id=1))
        finally:
            stranger.close()
        assert _table(admin)["epoch"] == 1
        # The system group is not a data group: it cannot be removed, and its id cannot be added.
        with pytest.raises(PaxosError, match="system group"):
            admin.remove_group(SYSTEM_GROUP)
        with pytest.raises(PaxosError, match="reserved"):
            admin.add_group(SYSTEM_GROUP)
        # ... nor by a raw request that skips the client's check (the worker refuses it too).
        from paxos_core.wire import rpc
        with pytest.raises(PaxosError, match="system group cannot be removed"):
            admin._admin(rpc.REMOVE_GROUP, 1, None, SYSTEM_GROUP, 5.0).result()
        with pytest.raises(PaxosError, match="reserved"):
            admin._admin_add(1, SYSTEM_GROUP, 1, b"", False, 5.0).result()
        # With the credentials, a command that is not a membership change is refused by the table (the same on every
        # node), and changes nothing.
        result = admin.propose(SYSTEM_GROUP, encode_put(b"k", b"v"), timeout=5.0).result
        assert json.loads(decode_user_result(result))["error"] == "INVALID"
        assert _table(admin)["epoch"] == 1


def _settled(cluster, node, epoch, voters):
    """Every worker of `node` knows `epoch` and every group it hosts (the system group too) votes on `voters`."""
    try:
        rows = cluster.status(node)
    except AssertionError:
        return False
    for row in rows:
        m = row["membership"]
        if m["epoch"] != epoch or m["groups_to_check"] or m["groups_adopting"]:
            return False
        configs = [g["config"] for g in row["group_detail"]] + ([m["config"]] if "config" in m else [])
        if any(c["voters"] != voters for c in configs):
            return False
    return True


def test_a_change_of_the_table_is_adopted_by_every_group_on_every_worker(tmp_path):
    """Remove node 3 through the system group: every group on both workers of nodes 1 and 2, idle ones too,
    adopts voters (1, 2); writes go on, and go on with node 3 killed."""
    with LocalCluster(tmp_path, nodes=3, workers=2, groups=4) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the system group's table seeded")
        put, get = _kv(admin)
        put(0, b"before", b"1")
        result = admin.propose(SYSTEM_GROUP, encode_change("remove", expect=1, id=3), timeout=10.0).result
        assert json.loads(decode_user_result(result)) == {"ok": True, "changed": True, "epoch": 2, "id": 3}
        # The same command again (its driver died, say): nothing changes, whatever epoch it expected.
        again = admin.propose(SYSTEM_GROUP, encode_change("remove", expect=1, id=3), timeout=10.0).result
        assert json.loads(decode_user_result(again))["changed"] is False
        for node in (1, 2):
            wait_for(lambda: _settled(cluster, node, 2, [1, 2]), 60,
                     message="node %d: every group adopted voters 1, 2" % node)
        for group in range(4):
            put(group, b"after", b"%d" % group)
        cluster.kill(3)
        for group in range(4):
            put(group, b"without 3", b"%d" % group)
            assert get(group, b"after") == b"%d" % group
        assert get(0, b"before") == b"1"


def _kv(client):
    def put(group, key, value):
        assert kv_ops.decode_result(client.propose(group, kv_ops.encode_put(key, value), timeout=10.0).result
                                    ).status == kv_ops.OK

    def get(group, key):
        return kv_ops.decode_result(client.read(group, kv_ops.encode_get(key), "linearizable", 10.0)).value
    return put, get


def test_a_group_added_after_the_first_voters_lost_their_majority_starts_on_the_tables_voters(tmp_path):
    """Soak seed 4,910,844, with real processes: the table removes nodes 3 and then 2, so node 1 is the one
    voter; both are killed. Group 5, added then through node 1, starts on the newest table's voters (the
    client reads them from the nodes and names them in every ADD_GROUP), not on the first voters 1, 2, 3, of
    which one is left: it takes writes at once."""
    from paxos_core.wire import rpc

    with LocalCluster(tmp_path, nodes=3, workers=1, groups=2) as cluster:
        admin = cluster.client(prefer=1)
        wait_for(lambda: _seeded(admin), 60, message="the system group's table seeded")
        put, get = _kv(admin)
        for expect, node in ((1, 3), (2, 2)):
            result = admin.propose(SYSTEM_GROUP, encode_change("remove", expect=expect, id=node), timeout=10.0)
            assert json.loads(decode_user_result(result.result))["changed"] is True
        wait_for(lambda: _settled(cluster, 1, 3, [1]), 60, message="node 1: every group adopted voters 1")
        for node in (2, 3):
            if node in cluster.alive_nodes():
                cluster.kill(node)
        assert admin.add_group(5, nodes=[1]) == 1
        put(5, b"k", b"v")
        assert get(5, b"k") == b"v"
        info = admin._admin(rpc.GROUP_INFO, 1, None, 5, 5.0).result()
        assert info["first"] == {"epoch": 3, "voters": [1]} and info["hosted"]
        cluster.restart(1)
        put(5, b"k", b"w")
        assert get(5, b"k") == b"w"


def test_an_add_replaces_an_earlier_incarnation_only_where_it_is_held_rebuilding():
    """Client.add_group over nodes holding different incarnations: the older ones held rebuilding (left over on
    a node that lost its data) are removed and replaced by the newest; an older one that votes is refused,
    naming the node."""
    from paxos_core.errors import ConfigError

    info = lambda incarnation, status: dict(hosted=True, incarnation=incarnation, status=status)   # noqa: E731
    infos = {1: info(3, "ok"), 2: info(3, "repairing"), 3: info(1, "repairing"), 4: info(2, "repairing")}
    hosted = {n: i["incarnation"] for n, i in infos.items()}
    assert Client._left_over(7, infos, hosted) == [3, 4]
    infos[4] = info(2, "ok")
    with pytest.raises(ConfigError, match=r"node\(s\) 4 hold an earlier one than incarnation 3 and vote in it"):
        Client._left_over(7, infos, {n: i["incarnation"] for n, i in infos.items()})


def test_an_add_names_the_voters_the_nodes_holding_the_incarnation_started_on_else_the_newest_tables():
    from paxos_core.client import _first_of_add
    from paxos_core.core.voters import config_state

    table = lambda epoch, voters: {"epoch": epoch, "voters": voters}          # noqa: E731
    absent = dict(hosted=False, incarnation=0, status="absent", first=None)
    infos = {1: dict(absent, table=table(2, [1, 2, 3])), 2: dict(absent, table=table(4, [2, 3, 4])),
             3: dict(absent, table=table(0, []))}
    assert _first_of_add(5, 1, infos) == config_state(4, (2, 3, 4)), "the newest table any node knows"
    assert _first_of_add(5, 1, {3: infos[3]}) == b"", "no table yet: the first voters"
    infos[3].update(incarnation=2, status="vacated", first={"epoch": 2, "voters": [1, 2, 3]})
    assert _first_of_add(5, 2, infos) == config_state(2, (1, 2, 3)), \
        "an add that was interrupted (or made on some nodes only) ends on the voters it began on"
    assert _first_of_add(5, 3, infos) == config_state(4, (2, 3, 4)), "another incarnation's voters do not count"
    infos[1].update(hosted=True, incarnation=2, status="ok", first=None)
    with pytest.raises(PaxosError, match="different first voters"):
        _first_of_add(5, 2, infos)

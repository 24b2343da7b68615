"""Checkpoints on a real 3-node cluster (processes on loopback): logs are truncated past what the state
machines applied, and a node whose data directory was wiped comes back through snapshots of every group it
can no longer catch up by the log, with no second restart, and then serves linearizable reads of the current
values from its own state."""
import os
import random
import shutil
import time

from cluster_harness import LocalCluster, wait_for
from paxos_core.kv import key_group
from paxos_core.statemachine import kv as ops

GROUPS = 4


def _incoming(cluster, node):
    return sum(len(row.get("snapshots", {}).get("incoming", [])) for row in cluster.status(node, timeout=0.5))


def _installed(cluster, node):
    return sum(row.get("snapshots", {}).get("snapshots_installed", 0) for row in cluster.status(node))


def test_a_wiped_node_rejoins_through_snapshots_and_serves_linearizable_reads(tmp_path):
    with LocalCluster(tmp_path, nodes=3, workers=2, groups=GROUPS, storage={"retain_instances": 8}) as cluster:
        kv = cluster.kv(prefer=1)
        current = {}
        for i in range(400):
            key = b"k%d" % (i % 40)
            value = b"v%d" % i
            kv.put(key, value)
            current[key] = value
        wait_for(lambda: cluster.converged(groups=range(GROUPS)), 30, message="converged before the wipe")
        lows = {g: d["low"] for g, d in cluster.group_detail(1).items()}
        assert all(low > 0 for low in lows.values()), "the logs were truncated: %s" % lows
        cluster.kill(3)
        data_dir = cluster.config(3).data_dir
        shutil.rmtree(data_dir)
        os.makedirs(data_dir)
        for i in range(200):                      # the other two go on, and truncate further
            key = b"k%d" % (i % 40)
            value = b"w%d" % i
            kv.put(key, value)
            current[key] = value
        cluster.start(3, rebuild=True)
        wait_for(lambda: sum(r.get("repairing", 0) for r in cluster.status(3)) == 0, 60,
                 message="node 3's groups rebuilt")
        wait_for(lambda: cluster.converged(nodes=[1, 2, 3], groups=range(GROUPS)), 60,
                 message="node 3 caught up on every group")
        assert _installed(cluster, 3) >= 1, "node 3 came back through snapshots"
        client = cluster.client(prefer=3)
        for key, value in current.items():
            raw = client.read(key_group(key, GROUPS), ops.encode_get(key), mode="linearizable", node=3)
            assert ops.decode_result(raw) == (ops.OK, value), key
        detail = cluster.group_detail(3)
        assert all(d["low"] > 0 for d in detail.values()), "node 3's logs start at the snapshots: %s" % detail


def test_kill_9_of_the_receiver_during_installs_leaves_consistent_state_and_the_transfer_completes(tmp_path):
    """A wiped node rebuilding through snapshots is killed with SIGKILL at random moments while it stages and
    swaps them in, several times; each start resumes (a staging from its CHECKPOINT record, or a new offer),
    and in the end it holds exactly the current values, read linearizably from its own state."""
    rng = random.Random(11)
    with LocalCluster(tmp_path, nodes=3, workers=2, groups=GROUPS, storage={"retain_instances": 8}) as cluster:
        kv = cluster.kv(prefer=1)
        current = {}
        big = b"x" * 2000
        for i in range(1200):                      # ~2.4 MB of state: several chunks per group
            key = b"key-%d" % (i % 600)
            value = b"%d-" % i + big
            kv.put(key, value)
            current[key] = value
        wait_for(lambda: cluster.converged(groups=range(GROUPS)), 60, message="converged before the wipe")
        cluster.kill(3)
        data_dir = cluster.config(3).data_dir
        shutil.rmtree(data_dir)
        os.makedirs(data_dir)
        kills = during = 0
        for _ in range(4):
            # --rebuild the first time only: a start after a kill finds the rebuild under way and goes on.
            cluster.start(3, rebuild=kills == 0)
            # Kill it the moment a worker reports a snapshot coming in (or at a random moment if none does
            # within the wait): SIGKILL mid-staging, mid-swap, or just after.
            deadline = time.monotonic() + rng.uniform(0.5, 5.0)
            while time.monotonic() < deadline:
                try:
                    if _incoming(cluster, 3):
                        during += 1
                        time.sleep(rng.uniform(0.0, 0.02))
                        break
                except Exception:                  # a worker not answering yet
                    pass
                time.sleep(0.005)
            cluster.kill(3)
            kills += 1
        assert during >= 1, "no kill landed while a snapshot was coming in"
        cluster.start(3)
        wait_for(lambda: sum(r.get("repairing", 0) for r in cluster.status(3)) == 0, 90,
                 message="node 3's groups rebuilt after %d kills" % kills)
        wait_for(lambda: cluster.converged(nodes=[1, 2, 3], groups=range(GROUPS)), 90,
                 message="node 3 caught up on every group")
        client = cluster.client(prefer=3)
        for key, value in current.items():
            raw = client.read(key_group(key, GROUPS), ops.encode_get(key), mode="linearizable", node=3)
            assert ops.decode_result(raw) == (ops.OK, value), key
        detail = cluster.group_detail(3)
        assert all(d["low"] > 0 for d in detail.values()), detail

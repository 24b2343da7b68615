"""Integration tests: real `paxos-core node` processes (supervisor + worker processes) on 127.0.0.1, talking
ZeroMQ with CURVE, storing in RocksDB. See tests/cluster_harness.py for the harness.

Tests that kill, stop or reconfigure anything get a cluster of their own; the others share one.
"""
import asyncio
import collections
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request

import pytest
import tomli_w
import zmq

from cluster_harness import LocalCluster, alive, descendants, free_base_port, package_env, wait_for
from paxos_core import errors
from paxos_core.kv import key_group
from paxos_core.statemachine import kv as ops
from paxos_core.wire.codec import encode_frame
from paxos_core.wire.message import ACCEPTED, Message

GROUPS = 16


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One 3-node cluster for the tests that do not kill, stop or reconfigure anything."""
    cluster = LocalCluster(tmp_path_factory.mktemp("shared"), nodes=3, workers=2, groups=GROUPS)
    yield cluster
    cluster.close()


@pytest.fixture
def cluster_factory(tmp_path):
    """Builds clusters of a test's own; every one is closed (and checked for strays) after the test."""
    made = []

    def make(**kw):
        c = LocalCluster(tmp_path / ("c%d" % len(made)), **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def keys_for_groups(prefix, groups, per_group):
    """`per_group` keys in every group 0..groups-1 (by the KV store's key-to-group function)."""
    need = {g: per_group for g in range(groups)}
    out = collections.defaultdict(list)
    i = 0
    while need:
        key = b"%s-%d" % (prefix, i)
        i += 1
        g = key_group(key, groups)
        if g in need:
            out[g].append(key)
            need[g] -= 1
            if not need[g]:
                del need[g]
    return out


def retry(fn, timeout=10.0, retry_on=(errors.Timeout, errors.NotMaster)):
    """Call fn until it returns without one of `retry_on` (what a caller with default retries does)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except retry_on:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def wipe(cluster, node):
    """Kill `node` and empty its data directory (a replaced disk); returns the directory."""
    cluster.kill(node)
    data_dir = cluster.config(node).data_dir
    shutil.rmtree(data_dir)
    os.makedirs(data_dir)
    return data_dir


def rebuilds_then_holds(client, cluster, group, node, values):
    """`group`, just put back on `node`, rebuilds there before it votes, finishes by itself, catches up, and
    then holds `values` (key -> value, read locally there)."""
    info = client.group_info(group, node)
    assert info["status"] == "repairing", "it rebuilds before it votes: %s" % info
    wait_for(lambda: client.group_info(group, node)["status"] == "ok", 60, message="node %d's copy rebuilt" % node)
    wait_for(lambda: cluster.converged(nodes=cluster.node_ids, groups=[group]), 60,
             message="node %d caught up" % node)
    for key, value in values.items():
        raw = client.read(group, ops.encode_get(key), mode="stale", node=node)
        assert ops.decode_result(raw) == (ops.OK, value), key


# ---------------------------------------------------------------------------------------------- 1


def test_every_node_takes_proposals_and_reads_in_every_mode(shared):
    keys = keys_for_groups(b"t1", GROUPS, 6)             # 96 keys, 6 in every group
    all_keys = [k for g in sorted(keys) for k in keys[g]]
    instances = collections.defaultdict(list)           # group -> instances, in the order acknowledged
    for node in shared.node_ids:
        client = shared.client(prefer=node)
        for key in all_keys:
            value = b"%s@%d" % (key, node)
            result = client.propose(key_group(key, GROUPS), ops.encode_put(key, value))
            assert ops.decode_result(result.result) == (ops.OK, None)
            assert result.group == key_group(key, GROUPS)
            assert isinstance(result.request_id, tuple) and len(result.request_id) == 2
            instances[result.group].append(result.instance)
    for group, seq in instances.items():
        # Sequential proposals from one caller: each is chosen after the one before it was acknowledged.
        assert all(i > 0 for i in seq[1:]), (group, seq)
        assert seq == sorted(seq) and len(set(seq)) == len(seq), (group, seq)

    expected = {key: b"%s@%d" % (key, shared.node_ids[-1]) for key in all_keys}
    for node in shared.node_ids:
        kv = shared.kv(prefer=node)
        for key, value in expected.items():
            assert kv.get(key, mode="lease") == value
            assert kv.get(key, mode="linearizable") == value
    # Stale reads are this node's own state: once it has applied everything chosen, it has every value.
    # (Not asserted again per node below: the lease reads above make masters renew their leases by claims
    # for a while, so a later status may show a claim chosen and not yet applied.)
    wait_for(lambda: shared.converged(groups=range(GROUPS)), 15, message="every node applied every chosen instance")
    for node in shared.node_ids:
        client = shared.client(prefer=node)
        for key, value in expected.items():
            raw = client.read(key_group(key, GROUPS), ops.encode_get(key), mode="stale", node=node)
            assert ops.decode_result(raw) == (ops.OK, value), (node, key)
    assert shared.kv().get(b"t1-never-written", mode="linearizable") is None


# ---------------------------------------------------------------------------------------------- 2


class PutLoad:
    """A thread doing puts (spread over every group) until stopped; remembers which were acknowledged."""

    def __init__(self, kv, prefix):
        self.kv = kv
        self.prefix = prefix
        self.acked = {}                 # key -> value, acknowledged OK
        self.unknown = []               # keys whose put timed out (outcome unknown)
        self.refused = []               # keys refused with NotMaster (not applied)
        self.failures = []              # anything else: a test failure
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        i = 0
        while not self._stop.is_set():
            key, value = b"%s-%d" % (self.prefix, i), b"v%d" % i
            i += 1
            try:
                status, _ = self.kv.put(key, value, timeout=5.0)
            except errors.Timeout:
                self.unknown.append(key)
                continue
            except errors.NotMaster:
                # Not applied. The client gives up redirecting after a few hops, which a failover can cause
                # (survivors point at the dead master until its lease runs out): the caller retries.
                self.refused.append(key)
                continue
            except Exception as exc:        # noqa: BLE001 - recorded and asserted on by the test
                self.failures.append((key, repr(exc)))
                continue
            if status == ops.OK:
                self.acked[key] = value
            else:
                self.failures.append((key, status))

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "load thread did not stop"


def test_kill_9_of_a_node_under_load(cluster_factory):
    cluster = cluster_factory(nodes=3, workers=2, groups=GROUPS)
    loads = [PutLoad(cluster.kv(prefer=1), b"a").start(), PutLoad(cluster.kv(prefer=2), b"b").start()]
    try:
        wait_for(lambda: all(len(l.acked) >= 50 for l in loads), 20, message="load running")
        killed = cluster.kill(3)
        assert len(killed) >= cluster.workers
        before = [len(l.acked) for l in loads]
        # Two of three nodes are a quorum: the load carries on.
        wait_for(lambda: all(len(l.acked) >= b + 100 for l, b in zip(loads, before)), 30,
                 message="puts acknowledged while node 3 is down")
        cluster.start(3)
        after_restart = [len(l.acked) for l in loads]
        wait_for(lambda: all(len(l.acked) >= b + 50 for l, b in zip(loads, after_restart)), 30,
                 message="puts acknowledged after node 3 restarted")
    finally:
        for l in loads:
            l.stop()
    for l in loads:
        assert not l.failures, l.failures[:5]
    acked = {k: v for l in loads for k, v in l.acked.items()}
    # Node 3 learns what it missed and applies it: every group's applied mark equals the others'.
    wait_for(lambda: cluster.converged(nodes=[1, 2, 3], groups=range(GROUPS)), 30,
             message="node 3 caught up on every group")
    client = cluster.client(prefer=3)
    for key, value in acked.items():
        raw = client.read(key_group(key, GROUPS), ops.encode_get(key), mode="stale", node=3)
        assert ops.decode_result(raw) == (ops.OK, value), key


def test_a_node_whose_data_directory_was_wiped_rebuilds_before_it_votes_and_shows_it(cluster_factory):
    """A node the cluster knows comes back with nothing: no identity marker, no logs. It refuses to start
    until told (--rebuild); then every group of it rebuilds from the other two (status says repairing, with the reason) and finishes by itself; meanwhile the
    cluster serves, and afterwards node 3 holds every acknowledged value."""
    cluster = cluster_factory(nodes=3, workers=2, groups=GROUPS)
    kv = cluster.kv(prefer=1)
    acked = {}
    for i in range(60):
        key = b"w%d" % i
        kv.put(key, b"v%d" % i)
        acked[key] = b"v%d" % i
    wait_for(lambda: cluster.converged(groups=range(GROUPS)), 20, message="converged before the wipe")
    data_dir = wipe(cluster, 3)
    # Started as before, it refuses: an empty data directory may be a wrong path or an unmounted disk. One
    # line, exit 1, nothing written.
    refused = subprocess.run(cluster.command + ["node", str(cluster.config_path(3))], capture_output=True,
                             timeout=60, env=package_env(), stdin=subprocess.DEVNULL)
    lines = refused.stderr.decode().strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1, (refused.returncode, lines)
    assert "has no identity marker" in lines[0] and "start it with --rebuild" in lines[0], lines[0]
    assert os.listdir(data_dir) == []
    cluster.start(3, rebuild=True)              # the operator says the disk was replaced
    rows = cluster.status(3)
    # Every worker: the first to put its rebuild on record restores the marker, and a worker starting after
    # that must still not take its empty log for a first start (runtime/supervisor.py).
    assert all(r.get("repairing", 0) > 0 for r in rows), "a wiped node starts every group rebuilding: %s" % [
        (r.get("worker"), r.get("repairing")) for r in rows]
    detail = [g for r in rows for g in r["group_detail"] if g["status"] != "ok"]
    assert detail and all("identity marker" in (g["reason"] or "") for g in detail), detail[:2]
    for i in range(20):                        # the other two serve meanwhile
        key = b"x%d" % i
        kv.put(key, b"y%d" % i)
        acked[key] = b"y%d" % i
    wait_for(lambda: sum(r.get("repairing", 0) for r in cluster.status(3)) == 0, 60,
             message="node 3's groups rebuilt")
    wait_for(lambda: cluster.converged(nodes=[1, 2, 3], groups=range(GROUPS)), 60,
             message="node 3 caught up on every group")
    client = cluster.client(prefer=3)
    for key, value in acked.items():
        raw = client.read(key_group(key, GROUPS), ops.encode_get(key), mode="stale", node=3)
        assert ops.decode_result(raw) == (ops.OK, value), key
    assert os.path.exists(os.path.join(data_dir, "IDENTITY")), "the marker is back once the rebuild is on record"


# ---------------------------------------------------------------------------------------------- 3


def test_master_failover_after_kill_9(cluster_factory):
    cluster = cluster_factory(nodes=3, workers=2, groups=GROUPS)
    group = 5
    keys = keys_for_groups(b"t3", GROUPS, 40)[group]
    # The first request for a group makes the node it reaches master: here node 2, the writer's preferred node.
    writer = cluster.client(prefer=2)
    for key in keys[:5]:
        writer.propose(group, ops.encode_put(key, b"before"))
    old = wait_for(lambda: cluster.master_of(group), 10, message="group %d has a master" % group)

    survivors = [n for n in cluster.node_ids if n != old]
    events = []
    watcher = cluster.client(prefer=survivors[0])
    # Connect first, subscribe, then ask again: a worker answers one client socket's requests in order, so
    # the second status reply means the subscription is in place.
    for n in survivors:
        assert all("error" not in r for r in watcher.status(n))
    watcher.on_master_change(lambda g, master, epoch: events.append((g, master, epoch)))
    for n in survivors:
        assert all("error" not in r for r in watcher.status(n))
    old_epoch = cluster.group_detail(survivors[0])[group]["epoch"]

    cluster.kill(old)
    t0 = time.monotonic()
    done = []
    for key in keys[5:15]:
        result = retry(lambda: writer.propose(group, ops.encode_put(key, b"after")), timeout=10.0)
        done.append(result)
        assert ops.decode_result(result.result) == (ops.OK, None)
        if len(done) == 1:
            first_ok = time.monotonic() - t0
    assert first_ok < 12, "first put after the kill took %.1fs" % first_ok
    new = wait_for(lambda: cluster.master_of(group, nodes=survivors), 10, message="new master agreed")
    assert new != old and new in survivors
    detail = cluster.group_detail(new)[group]
    assert detail["epoch"] > old_epoch
    wait_for(lambda: any(g == group and m == new for g, m, _ in events), 10,
             message="on_master_change reported node %d for group %d (events: %r)" % (new, group, events))
    epochs = [e for g, m, e in events if g == group and m == new]
    assert max(epochs) > old_epoch
    # Everything written before and after the failover is there.
    kv = cluster.kv(prefer=new)
    for key in keys[:5]:
        assert kv.get(key, mode="linearizable") == b"before"
    for key in keys[5:15]:
        assert kv.get(key) == b"after"


# ---------------------------------------------------------------------------------------------- 4


def test_supervisor_restarts_a_killed_worker(cluster_factory):
    cluster = cluster_factory(nodes=3, workers=2, groups=GROUPS)
    node, worker = 2, 1
    groups = [g for g in range(GROUPS) if g % cluster.workers == worker]
    client = cluster.client(prefer=node)
    for g in groups:
        client.propose(g, ops.encode_put(b"t4-%d" % g, b"before"))
    old_pid = cluster.worker_pids(node)[worker]
    other_pid = cluster.worker_pids(node)[1 - worker]
    supervisor = cluster.procs[node].pid
    assert old_pid in descendants(supervisor)

    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: not alive(old_pid), 5, message="worker %d gone" % old_pid)
    new_pid = wait_for(lambda: (lambda p: p if p != old_pid else None)(cluster.worker_pids(node, timeout=1.0)[worker]),
                       15, message="node %d worker %d restarted with a new pid" % (node, worker))
    assert alive(new_pid) and new_pid in descendants(supervisor)
    assert cluster.worker_pids(node)[1 - worker] == other_pid          # the other worker was left alone
    assert cluster.procs[node].popen.poll() is None
    # Its groups serve again, through the restarted worker, and kept their data.
    for g in groups:
        result = retry(lambda: client.propose(g, ops.encode_put(b"t4-%d" % g, b"after"), node=node))
        assert ops.decode_result(result.result) == (ops.OK, None)
        raw = client.read(g, ops.encode_get(b"t4-%d" % g), mode="linearizable", node=node)
        assert ops.decode_result(raw) == (ops.OK, b"after")
    err = open(cluster.procs[node].stderr, errors="replace").read()
    assert re.search(r"worker %d \(pid %d\) died" % (worker, old_pid), err), err[-2000:]


# ---------------------------------------------------------------------------------------------- 5


def _push_socket(ctx, endpoint, server_key, public, secret):
    sock = ctx.socket(zmq.PUSH)
    sock.linger = 0
    sock.curve_serverkey = server_key
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.connect(endpoint)
    return sock


def test_wrong_keys_wrong_cluster_and_garbage_are_refused_and_counted(shared):
    cfg1 = shared.config(1)
    endpoint = cfg1.me.peer_endpoint(0)
    server_key = cfg1.curve_public_key(1)
    kv = shared.kv(prefer=1)
    key = keys_for_groups(b"t5", GROUPS, 1)[0][0]            # group 0: worker 0
    kv.put(key, b"before")
    before = shared.worker_status(1, 0)
    ctx = zmq.Context()
    try:
        # (a) a key pair that is not a member's: CURVE authentication (ZAP) refuses the connection.
        public, secret = zmq.curve_keypair()
        intruder = _push_socket(ctx, endpoint, server_key, public, secret)
        frame = encode_frame(cfg1.cluster_id, 2, 1, [Message(ACCEPTED, 0, 1, 1, 0, 0, 0, b"")])
        try:
            intruder.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            pass                              # never connected: nothing was delivered either way
        status = wait_for(lambda: (lambda s: s if s["transport"]["auth_denied"] > 0 else None)(
            shared.worker_status(1, 0)), 10, message="node 1 worker 0 counted a refused CURVE handshake")
        assert status["transport"]["rejected"] == before["transport"]["rejected"]     # nothing got through
        intruder.close(0)

        # (b) a member's real keys (node 2's), but a frame of another cluster.
        cfg2 = shared.config(2)
        member = _push_socket(ctx, endpoint, server_key, cfg2.curve_public_key(2), cfg2.curve_secret_key())
        wrong_id = cfg1.cluster_id ^ 0x5A5A
        member.send(encode_frame(wrong_id, 2, 1, [Message(ACCEPTED, 0, 1, 1, 0, 0, 0, b"")]))
        wait_for(lambda: shared.worker_status(1, 0)["transport"]["rejected"].get("WrongCluster", 0) > 0, 10,
                 message="node 1 worker 0 counted a WrongCluster frame")

        # (c) garbage, and an intact frame with one byte flipped.
        member.send(b"this is not a paxos-core frame at all" * 3)
        good = bytearray(encode_frame(cfg1.cluster_id, 2, 1, [Message(ACCEPTED, 0, 1, 1, 0, 0, 0, b"x" * 32)]))
        good[-5] ^= 0xFF
        member.send(bytes(good))
        rejected = wait_for(lambda: (lambda r: r if r.get("MalformedFrame", 0) > 0 and r.get("FrameChecksumError", 0) > 0
                                     else None)(shared.worker_status(1, 0)["transport"]["rejected"]), 10,
                            message="garbage counted as MalformedFrame and FrameChecksumError")
        assert set(rejected) <= {"WrongCluster", "MalformedFrame", "FrameChecksumError"}, rejected
        member.close(0)
    finally:
        ctx.term()
    # The cluster is unaffected: the group serves, the data is intact, no group stopped.
    assert kv.get(key, mode="linearizable") == b"before"
    assert kv.put(key, b"after") == (ops.OK, None)
    assert kv.get(key) == b"after"
    for node in shared.node_ids:
        assert all(g["status"] == "ok" for g in shared.group_detail(node).values())


# ---------------------------------------------------------------------------------------------- 6


def test_groups_added_at_runtime_survive_a_restart_and_can_be_removed(cluster_factory):
    cluster = cluster_factory(nodes=3, workers=2, groups=GROUPS)
    client = cluster.client(prefer=1)
    new = GROUPS + 3                       # not one of the start-up groups; lives on worker 1
    with pytest.raises(errors.ProposalError, match=str(new)):
        client.propose(new, ops.encode_put(b"k", b"v"))
    client.add_group(new)
    client.add_group(new)                  # idempotent
    for node in cluster.node_ids:
        assert new in cluster.group_detail(node)
    results = [client.propose(new, ops.encode_put(b"k%d" % i, b"v%d" % i)) for i in range(20)]
    assert [r.instance for r in results] == sorted(r.instance for r in results)
    assert ops.decode_result(client.read(new, ops.encode_get(b"k7"), mode="linearizable")) == (ops.OK, b"v7")
    # Restart node 2: the group is still there, with its data.
    wait_for(lambda: cluster.converged(groups=[new]), 10, message="group %d applied everywhere" % new)
    assert cluster.restart(2) == 0
    detail = cluster.group_detail(2)
    assert new in detail and detail[new]["applied"] >= results[-1].instance + 1
    for i in range(20):
        raw = client.read(new, ops.encode_get(b"k%d" % i), mode="stale", node=2)
        assert ops.decode_result(raw) == (ops.OK, b"v%d" % i)
    result = client.propose(new, ops.encode_put(b"k-after", b"x"), node=2)
    assert result.instance > results[-1].instance
    # Remove it everywhere while proposals to it are in flight: the removal is answered, every proposal gets
    # an answer, and no worker dies over it.
    pids = {n: cluster.worker_pids(n) for n in cluster.node_ids}
    burst = [client.propose_future(new, ops.encode_put(b"burst-%d" % i, b"x"), timeout=10.0) for i in range(300)]
    while not any(f.done() for f in burst):
        time.sleep(0.001)                  # the burst is being chosen now
    client.remove_group(new)
    client.remove_group(new)               # idempotent
    done, not_done = concurrent.futures.wait(burst, timeout=30)
    assert not not_done
    for f in done:
        assert f.exception() is None or isinstance(f.exception(), errors.ProposalError), f.exception()
    assert {n: cluster.worker_pids(n) for n in cluster.node_ids} == pids
    for node in cluster.node_ids:
        assert new not in cluster.group_detail(node)
    with pytest.raises(errors.ProposalError, match=r"\b%d\b" % new):
        client.propose(new, ops.encode_put(b"k", b"v"))
    with pytest.raises(errors.ProposalError, match=r"\b%d\b" % new):
        client.read(new, ops.encode_get(b"k"))
    # The other groups are untouched.
    kv = cluster.kv(prefer=1)
    kv.put(b"t6-other", b"ok")
    assert kv.get(b"t6-other") == b"ok"
    # The removal is durable, and nothing of the group is left in the log: a restarted node neither hosts it
    # nor finds records of it.
    assert cluster.restart(1) == 0
    assert new not in cluster.group_detail(1)
    with pytest.raises(errors.ProposalError, match=r"\b%d\b" % new):
        client.propose(new, ops.encode_put(b"k", b"v"), node=1)
    err = open(cluster.procs[1].stderr, errors="replace").read()
    assert "group %d recovered" % new not in err, err[-3000:]
    for node in cluster.node_ids:
        assert "Traceback" not in open(cluster.procs[node].stderr, errors="replace").read()


def test_a_group_removed_and_added_again_starts_empty_and_works(cluster_factory):
    cluster = cluster_factory(nodes=3, workers=2, groups=GROUPS)
    client = cluster.client(prefer=1)
    new = GROUPS + 5
    client.add_group(new)
    for i in range(20):
        client.propose(new, ops.encode_put(b"old%d" % i, b"x"))
    client.remove_group(new)
    assert cluster.restart(1) == 0
    client.add_group(new)
    result = client.propose(new, ops.encode_put(b"fresh", b"y"), timeout=10.0)
    assert ops.decode_result(result.result).status == ops.OK
    assert ops.decode_result(client.read(new, ops.encode_get(b"fresh"), mode="linearizable")) == (ops.OK, b"y")
    assert ops.decode_result(client.read(new, ops.encode_get(b"old3"), mode="linearizable")).status == ops.NOT_FOUND


def test_a_group_is_never_added_again_where_an_earlier_incarnation_lives_on(cluster_factory):
    """Finding 6 on real processes: removing a group on one node only and adding it back there would give an
    acceptor with no memory next to the old incarnation. The cluster-wide add refuses; once the group is gone
    everywhere, it comes back as a newer incarnation on every node."""
    cluster = cluster_factory(nodes=3, workers=1, groups=GROUPS)
    client = cluster.client(prefer=1)
    new = GROUPS + 7
    assert client.add_group(new) == 1
    client.propose(new, ops.encode_put(b"k", b"v1"))
    client.remove_group(new, nodes=[3])
    assert client.group_info(new, 3) == {"group": new, "hosted": False, "incarnation": 0, "removed": 1,
                                         "status": "absent", "first": None,
                                         "table": {"epoch": 1, "voters": [1, 2, 3]}}
    with pytest.raises(errors.ConfigError, match="removed incarnation 1"):
        client.add_group(new)
    assert not client.group_info(new, 3)["hosted"], "nothing was changed"
    client.remove_group(new)
    assert client.add_group(new) == 2
    assert {client.group_info(new, n)["incarnation"] for n in cluster.node_ids} == {2}
    result = client.propose(new, ops.encode_put(b"k", b"v2"), timeout=10.0)
    assert ops.decode_result(result.result).status == ops.OK
    assert ops.decode_result(client.read(new, ops.encode_get(b"k"), mode="linearizable")) == (ops.OK, b"v2")
    # An operator's repair tool misused: a newer incarnation made on nodes 1 and 2 only, while node 3 still
    # votes in incarnation 2. The cluster-wide add does not replace a copy that votes: its data would go.
    client.remove_group(new, nodes=[1, 2])
    assert client.add_group(new, nodes=[1, 2]) == 3
    with pytest.raises(errors.ConfigError, match=r"node\(s\) 3 hold an earlier one than incarnation 3 and vote"):
        client.add_group(new)
    info = client.group_info(new, 3)
    assert info["hosted"] and info["incarnation"] == 2 and info["status"] == "ok", "nothing was changed"


def test_a_group_added_at_run_time_comes_back_on_a_wiped_node_by_group_add_and_rebuilds_first(cluster_factory):
    """A wiped node does not hold the groups added at run time (its log was their only trace); the other two go
    on with them. `group add` puts such a group back on it in the incarnation they hold, and there it rebuilds
    from them before it votes (it may have voted in that incarnation before the wipe: ReplicaLoop.add_group),
    then holds every acknowledged value of it."""
    cluster = cluster_factory(nodes=3, workers=1, groups=GROUPS)
    client = cluster.client(prefer=1)
    new = GROUPS + 3
    assert client.add_group(new) == 1
    for i in range(10):
        client.propose(new, ops.encode_put(b"a%d" % i, b"v%d" % i))
    wipe(cluster, 3)
    cluster.start(3, rebuild=True)
    wait_for(lambda: sum(r.get("repairing", 0) for r in cluster.status(3)) == 0, 60,
             message="node 3's configured groups rebuilt")
    assert new not in cluster.group_detail(3), "the wiped node does not hold the group added at run time"
    client.propose(new, ops.encode_put(b"a10", b"v10"))            # the other two go on
    assert client.add_group(new) == 1, "back on node 3 in the incarnation the others hold"
    info = client.group_info(new, 3)
    assert info["hosted"] and info["incarnation"] == 1
    rebuilds_then_holds(client, cluster, new, 3, {b"a%d" % i: b"v%d" % i for i in range(11)})


def test_a_wiped_node_left_with_an_earlier_incarnation_of_a_configured_group_takes_the_current_one_by_itself(
        cluster_factory):
    """A group of the node files removed and added again (incarnation 2); then a node's data directory is lost:
    it holds that group again in incarnation 1, as configured, rebuilding. The others drop the messages of
    incarnation 1 (a different group to them), but tell its holder of theirs (INC_NOTICE): its copy, which holds
    nothing, is replaced by incarnation 2, which it rebuilds before it votes (it may have voted in it before the
    loss), and then it holds every acknowledged value of it; nobody ran `group add`."""
    cluster = cluster_factory(nodes=3, workers=1, groups=GROUPS)
    client = cluster.client(prefer=1)
    group = 2
    client.propose(group, ops.encode_put(b"old", b"gone"))
    client.remove_group(group)
    assert client.add_group(group) == 2
    for i in range(10):
        client.propose(group, ops.encode_put(b"b%d" % i, b"v%d" % i))
    wipe(cluster, 3)
    cluster.start(3, rebuild=True)
    wait_for(lambda: client.group_info(group, 3)["incarnation"] == 2, 60,
             message="node 3 took incarnation 2 (%s)" % cluster.log_tail(3))
    assert "its peers hold incarnation 2, this node a leftover of 1 (repairing): it takes the newer one, " \
           "rebuilding it first" in cluster.log_tail(3, lines=400)
    wait_for(lambda: client.group_info(group, 3)["status"] == "ok", 60, message="node 3's copy rebuilt")
    wait_for(lambda: cluster.converged(nodes=cluster.node_ids, groups=[group]), 60, message="node 3 caught up")
    for i in range(10):
        raw = client.read(group, ops.encode_get(b"b%d" % i), mode="stale", node=3)
        assert ops.decode_result(raw) == (ops.OK, b"v%d" % i), i
    assert ops.decode_result(client.read(group, ops.encode_get(b"old"), mode="stale", node=3))[0] == ops.NOT_FOUND
    assert client.add_group(group) == 2, "nothing left to do"
    client.propose(group, ops.encode_put(b"after", b"x"), node=3)


def test_a_restarted_node_catches_up_on_groups_nobody_writes_to_any_more(cluster_factory):
    cluster = cluster_factory(nodes=3, workers=2, groups=GROUPS)
    kv = cluster.kv(prefer=1)
    by_group = keys_for_groups(b"idle", GROUPS, 2)
    keys = [k for g in sorted(by_group) for k in by_group[g]]
    for key in keys[: len(keys) // 2]:
        kv.put(key, b"before")
    wait_for(lambda: cluster.converged(groups=range(GROUPS)), 20, message="converged before the kill")
    cluster.kill(3)
    for key in keys[len(keys) // 2:]:
        kv.put(key, b"while-down")
    cluster.start(3)
    # No more writes: node 3 must still learn everything it missed, by itself.
    wait_for(lambda: cluster.converged(nodes=[1, 2, 3], groups=range(GROUPS)), 30,
             message="node 3 caught up on idle groups")
    client = cluster.client(prefer=3)
    for key in keys[len(keys) // 2:]:
        raw = client.read(key_group(key, GROUPS), ops.encode_get(key), mode="stale", node=3)
        assert ops.decode_result(raw) == (ops.OK, b"while-down"), key


# ---------------------------------------------------------------------------------------------- 7


def test_asyncio_drives_many_groups_concurrently(shared):
    groups = list(range(GROUPS))
    writers_per_group, puts_per_writer = 16, 4           # 256 coroutines at once, 1024 proposals
    client = shared.client(prefer=2)
    kv = shared.kv(client=client)
    keys = keys_for_groups(b"t7", GROUPS, writers_per_group)

    async def writer(group, w):
        key = keys[group][w]
        instances = []
        for i in range(puts_per_writer):
            if i % 2:
                assert await kv.put_async(key, b"%d" % i) == (ops.OK, None)
                continue
            r = await client.propose_async(group, ops.encode_put(key, b"%d" % i))
            assert r.group == group and ops.decode_result(r.result) == (ops.OK, None)
            instances.append(r.instance)
        return group, instances

    async def main():
        tasks = [asyncio.create_task(writer(g, w)) for g in groups for w in range(writers_per_group)]
        assert len(tasks) >= 256
        return await asyncio.gather(*tasks)

    results = asyncio.run(asyncio.wait_for(main(), 60))
    by_group = collections.defaultdict(list)
    for group, instances in results:
        # One coroutine's proposals are sequential: each is chosen in a later instance than the one before.
        assert instances == sorted(set(instances)), (group, instances)
        by_group[group].extend(instances)
    assert sorted(by_group) == groups
    for group, instances in by_group.items():
        assert min(instances) > 0

    async def read_all():
        return await asyncio.gather(*(kv.get_async(keys[g][w]) for g in groups for w in range(writers_per_group)))

    assert asyncio.run(read_all()) == [b"%d" % (puts_per_writer - 1)] * (GROUPS * writers_per_group)


# ---------------------------------------------------------------------------------------------- 8


def test_overload_is_refused_quickly_and_the_cluster_recovers(cluster_factory):
    cluster = cluster_factory(nodes=3, workers=2, groups=GROUPS, max_pending=20)
    client = cluster.client(prefer=1)
    for g in range(GROUPS):                # masters in place, so the burst measures queueing, not elections
        client.propose(g, ops.encode_put(b"warm", b"up"))
    n = 2000
    futures = [client.propose_future(i % GROUPS, ops.encode_put(b"t8-%d" % i, b"v"), timeout=20.0)
               for i in range(n)]
    done, not_done = concurrent.futures.wait(futures, timeout=40)
    assert not not_done, "%d of %d proposals never completed" % (len(not_done), n)
    outcomes = collections.Counter()
    ok = []
    for i, f in enumerate(futures):
        exc = f.exception()
        if exc is None:
            outcomes["ok"] += 1
            ok.append(i)
            assert ops.decode_result(f.result().result) == (ops.OK, None)
        else:
            outcomes[type(exc).__name__] += 1
    assert outcomes["Overloaded"] > 0, outcomes
    assert outcomes["ok"] > 0, outcomes
    assert set(outcomes) == {"ok", "Overloaded"}, outcomes        # refused or done: nothing timed out
    overloaded_counted = sum(r["requests"]["overloaded"] for n_ in cluster.node_ids for r in cluster.status(n_))
    assert overloaded_counted >= outcomes["Overloaded"]
    # Afterwards the cluster still works, and every acknowledged put is there.
    kv = cluster.kv(prefer=2)
    for i in ok[:: max(1, len(ok) // 50)]:
        raw = client.read(i % GROUPS, ops.encode_get(b"t8-%d" % i), mode="linearizable")
        assert ops.decode_result(raw) == (ops.OK, b"v")
    for g in range(GROUPS):
        assert client.propose(g, ops.encode_put(b"after", b"ok")).instance > 0
    assert kv.get(b"after") == b"ok"
    assert all(r["pending"] == 0 for n_ in cluster.node_ids for r in cluster.status(n_))


# ---------------------------------------------------------------------------------------------- 9


def test_value_too_large_and_unknown_group(shared):
    client = shared.client(prefer=3)
    limit = shared.config().max_value_bytes
    with pytest.raises(errors.ValueTooLarge, match="max_value_bytes"):
        client.propose(1, b"\x00" * (limit + 1))
    with pytest.raises(errors.ValueTooLarge):
        shared.kv(client=client).put(b"t9-big", b"x" * (limit + 1))
    unknown = 4_000_000 + GROUPS
    with pytest.raises(errors.ProposalError, match=r"\b%d\b" % unknown):
        client.propose(unknown, ops.encode_put(b"k", b"v"))
    with pytest.raises(errors.ProposalError, match=r"\b%d\b" % unknown):
        client.read(unknown, ops.encode_get(b"k"))
    # Neither left anything behind.
    assert shared.kv(client=client).get(b"t9-big", mode="linearizable") is None
    assert client.propose(1, ops.encode_put(b"t9", b"small")).instance > 0


# ---------------------------------------------------------------------------------------------- 10


def test_exactly_once_with_an_explicit_request_id(shared):
    client = shared.client(prefer=1)
    key = b"t10-key"
    group = key_group(key, GROUPS)
    rid = (12345, 1)
    # A request id of the caller's own is a retry unless it says otherwise: this is its first attempt.
    first = client.propose(group, ops.encode_cas(key, None, b"a"), request_id=rid, retry=False)
    assert ops.decode_result(first.result) == (ops.OK, None)
    assert first.request_id == rid
    again = client.propose(group, ops.encode_cas(key, None, b"a"), request_id=rid)
    assert again.result == first.result                  # the remembered result, not CAS_FAILED
    assert ops.decode_result(again.result) == (ops.OK, None)
    kv = shared.kv(client=client)
    assert kv.get(key, mode="linearizable") == b"a"
    # The same command under a NEW request id is a new command: now the key exists, so the CAS fails.
    assert kv.cas(key, None, b"a") is False                 # CAS_FAILED: the key holds b"a"
    # Retrying with request ids of the caller's own must not disturb the client's own sessions: a burst of
    # concurrent proposals to that group are all applied.
    futures = [client.propose_future(group, ops.encode_put(b"t10-%d" % i, b"%d" % i)) for i in range(20)]
    for f in futures:
        assert ops.decode_result(f.result().result) == (ops.OK, None)
    for i in range(20):
        raw = client.read(group, ops.encode_get(b"t10-%d" % i), mode="linearizable")
        assert ops.decode_result(raw) == (ops.OK, b"%d" % i), i


def test_retry_flag_travels_to_the_state_machine_and_refuses_unknown_sessions(shared):
    """The retry flag (bit 63 of the request seq) crosses rpc, worker, envelope and applier unchanged."""
    client = shared.client(prefer=2)
    kv = shared.kv(client=client)
    key = b"t10b-key"
    group = key_group(key, GROUPS)
    # A caller retry of a session no node knows: refused everywhere, nothing applied.
    with pytest.raises(errors.SessionExpired):
        client.propose(group, ops.encode_put(key, b"x"), request_id=(777001, 1))
    with pytest.raises(errors.SessionExpired):
        client.propose_batch(group, [ops.encode_put(key, b"y"), ops.encode_put(key, b"z")], request_id=(777002, 1))
    assert kv.get(key, mode="linearizable") is None
    # A flagged retry of a known session gets the remembered result; a flagged older one is STALE, which on a
    # retry says nothing of what its earlier attempt did: a Timeout caused by it.
    first = client.propose(group, ops.encode_cas(key, None, b"1"), request_id=(777003, 1), retry=False)
    second = client.propose(group, ops.encode_cas(key, b"1", b"2"), request_id=(777003, 2), retry=False)
    again = client.propose(group, ops.encode_cas(key, b"1", b"2"), request_id=(777003, 2))
    assert again.result == second.result and ops.decode_result(again.result) == (ops.OK, None)
    with pytest.raises(errors.Timeout) as info:
        client.propose(group, ops.encode_cas(key, None, b"1"), request_id=first.request_id)
    assert isinstance(info.value.__cause__, errors.StaleRequest)
    assert kv.get(key, mode="linearizable") == b"2"


# ---------------------------------------------------------------------------------------------- 11


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")


def test_prometheus_endpoint(shared):
    client = shared.client(prefer=1)
    for g in range(shared.workers):                      # chosen instances and latencies on every worker
        client.propose(g, ops.encode_put(b"t11", b"v"))
    for node in shared.node_ids:
        address = shared.config(node).me
        for worker in range(shared.workers):
            host, port = address.metrics_address(worker)
            assert port == address.metrics_port + worker and host == "127.0.0.1"
            with urllib.request.urlopen("http://%s:%d/metrics" % (host, port), timeout=5) as response:
                assert response.status == 200
                text = response.read().decode()
            for name in ("paxos_fsyncs", "paxos_instances_chosen", "paxos_latency_seconds_bucket"):
                assert name in text                          # counters are exported as <name>_total
                assert re.search(r"^%s(_total)?[{ ]" % name, text, re.M), (node, worker, name)
            samples = [m for m in map(_SAMPLE.match, text.splitlines()) if m and m["name"].startswith("paxos_")]
            assert samples
            for m in samples:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"] or ""))
                assert labels.get("node") == str(node) and labels.get("worker") == str(worker), m.group(0)
                # node and worker only (plus the histogram's `le`, the refusal reason and the build info's own):
                # no per-group label.
                build = {"version", "python", "compiled"} if m["name"] == "paxos_core_build_info" else set()
                assert set(labels) <= {"node", "worker", "le", "reason"} | build, m.group(0)
            fsyncs = [float(m["value"]) for m in samples if m["name"] == "paxos_fsyncs_total"]
            assert fsyncs and fsyncs[0] > 0
            chosen = [float(m["value"]) for m in samples if m["name"] == "paxos_instances_chosen_total"]
            assert chosen and chosen[0] > 0
            # every synced write is timed: as many observations as fsyncs (give or take the scrape's race)
            writes = [float(m["value"]) for m in samples if m["name"] == "paxos_log_write_seconds_count"]
            assert writes and 0 < writes[0] <= fsyncs[0]
            assert any(m["name"] == "paxos_slow_writes_total" for m in samples)


# ---------------------------------------------------------------------------------------------- 12


def paxos_core_command():
    """The installed `paxos-core` script next to this interpreter (else `python -m paxos_core`)."""
    script = os.path.join(os.path.dirname(sys.executable), "paxos-core")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "paxos_core"]


def run_cli(*args, timeout=60):
    return subprocess.run(paxos_core_command() + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_cli_flow_init_node_kv_status(tmp_path):
    directory = tmp_path / "mycluster"
    # --base-port: ports below the ephemeral range (see cluster_harness.PORT_RANGE), else the README's flow.
    init = run_cli("init", "--nodes", 3, "--base-port", free_base_port(3, 2), directory)
    assert init.returncode == 0, init.stderr
    assert "wrote cluster" in init.stdout
    assert sorted(p.name for p in directory.glob("*.toml")) == ["node1.toml", "node2.toml", "node3.toml"]
    cluster = LocalCluster(tmp_path, directory=directory, command=paxos_core_command())
    try:
        for node in cluster.node_ids:
            assert "node %d of cluster" % node in open(cluster.procs[node].stdout).read()
        put = run_cli("kv", "--cluster", directory, "put", "k", "v")
        assert put.returncode == 0, put.stderr
        assert put.stdout.strip() == "OK"
        get = run_cli("kv", "--cluster", directory, "get", "k")
        assert get.returncode == 0, get.stderr
        assert get.stdout == "v\n"
        missing = run_cli("kv", "--cluster", directory, "get", "missing")
        assert missing.returncode == 1
        assert missing.stdout == "" and "not found" in missing.stderr
        cas = run_cli("kv", "--cluster", directory, "cas", "k", "v", "w")
        assert cas.returncode == 0, cas.stderr
        stale_cas = run_cli("kv", "--cluster", directory, "cas", "k", "v", "x")
        assert stale_cas.returncode == 1 and "current value is w" in stale_cas.stderr
        assert run_cli("kv", "--cluster", directory, "get", "k", "--mode", "linearizable").stdout == "w\n"
        status = run_cli("status", "--cluster", directory)
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()[1:]
        rows = [line.split() for line in lines if line.strip() and line.split()[0].isdigit()]
        assert sorted((int(r[0]), int(r[1])) for r in rows) == [(n, w) for n in (1, 2, 3) for w in range(2)], \
            status.stdout
        assert sum(1 for line in lines if re.match(r"node \d: [\d.]+ MB of log", line)) == 3, status.stdout
        assert "unreachable" not in status.stdout
        # SIGTERM: every node says it is stopping and exits 0, its workers with it.
        for node in cluster.node_ids:
            workers = cluster.worker_pids(node)
            assert cluster.stop(node) == 0, cluster.log_tail(node)
            assert "node %d stopping" % node in open(cluster.procs[node].stdout).read()
            assert not any(alive(p) for p in workers.values())
    finally:
        cluster.close()


# ---------------------------------------------------------------------------------------------- 13


def test_bad_config_is_refused_with_the_field_named(tmp_path):
    directory = tmp_path / "c"
    init = run_cli("init", "--nodes", 3, directory)
    assert init.returncode == 0, init.stderr
    with open(directory / "node1.toml", "rb") as f:
        good = tomllib.load(f)
    cases = [
        ("cluster", "workers", 0, "cluster.workers"),
        ("paxos", "lease_margin", 1.5, "paxos.lease_margin"),
        ("limits", "max_pendng", 10, "limits.max_pendng"),
    ]
    for table, key, value, field in cases:
        bad = {t: dict(v) for t, v in good.items()}
        bad[table][key] = value
        path = directory / "bad.toml"
        with open(path, "wb") as f:
            tomli_w.dump(bad, f)
        result = run_cli("node", path)
        assert result.returncode == 2, (field, result.returncode, result.stderr)
        assert field in result.stderr, (field, result.stderr)
        assert str(path) in result.stderr
        assert "Traceback" not in result.stderr
        assert "running" not in result.stdout

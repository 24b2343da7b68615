"""Membership changes through `client.membership` and `paxos-core member` (issue 14, step 5 so far), on real
processes (tests/cluster_harness.py; every process stopped by its PID): compare-and-set with exactly one epoch
conflict of two concurrent changes, the checks that refuse a change which would lose the live quorum (and
change nothing), removals adopted by every group, an address change that heals, the CLI's text and JSON."""
import json
import subprocess
import sys
import threading

import pytest
import tomli_w
import tomllib

from cluster_harness import LocalCluster, descendants, free_base_port, package_env, wait_for
from paxos_core import EpochConflict, WouldLoseQuorum
from paxos_core.statemachine import kv as kv_ops


def _seeded(client):
    try:
        return client.membership.table()["epoch"] >= 1
    except Exception:
        return False


def _dropped_by(client, node, peers):
    """Every worker of `peers` no longer talks to `node` (its groups there went on without it, and the
    membership driver's grace for a removed node to hand its groups over has passed)."""
    try:
        return all(node not in worker["membership"]["members"] for peer in peers for worker in client.status(peer))
    except Exception:
        return False


def _member_cli(cluster, *args):
    proc = subprocess.run([sys.executable, "-m", "paxos_core", "member", *map(str, args), "--cluster",
                           str(cluster.dir)], capture_output=True, text=True, timeout=180, env=package_env())
    return proc.returncode, proc.stdout, proc.stderr


def _put(client, group, key, value):
    result = client.propose(group, kv_ops.encode_put(key, value), timeout=10.0).result
    assert kv_ops.decode_result(result).status == kv_ops.OK


def test_two_concurrent_changes_against_one_epoch_exactly_one_conflicts(tmp_path):
    with LocalCluster(tmp_path, nodes=5, workers=1, groups=2) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        outcomes = {}

        def change(node):
            try:
                outcomes[node] = cluster.client().membership.remove(node, expect=1)
            except EpochConflict as exc:
                outcomes[node] = exc

        threads = [threading.Thread(target=change, args=(n,)) for n in (4, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        conflicts = [n for n, o in outcomes.items() if isinstance(o, EpochConflict)]
        done = [n for n, o in outcomes.items() if not isinstance(o, EpochConflict)]
        assert len(conflicts) == 1 and len(done) == 1, outcomes
        assert outcomes[done[0]].epoch == 2 and outcomes[done[0]].changed
        assert outcomes[conflicts[0]].epoch == 2
        table = admin.membership.table()
        assert table["epoch"] == 2 and done[0] not in table["voters"] and conflicts[0] in table["voters"]
        # The change that lost is made again against the epoch it now reads: it goes through.
        again = admin.membership.remove(conflicts[0])
        assert (again.epoch, again.changed) == (3, True)
        again.wait(timeout=60)
        assert admin.membership.table()["voters"] == [1, 2, 3]
        for group in (0, 1):
            _put(admin, group, b"k", b"v")


def test_a_change_that_would_lose_the_live_quorum_is_refused_and_changes_nothing(tmp_path):
    with LocalCluster(tmp_path, nodes=3, workers=2, groups=2) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        cluster.kill(3)
        with pytest.raises(WouldLoseQuorum, match="nothing was changed"):
            admin.membership.remove(2)
        assert admin.membership.table()["epoch"] == 1
        code, out, err = _member_cli(cluster, "remove", 2)
        assert code != 0 and "WouldLoseQuorum" in err and "nothing was changed" in err, (out, err)
        # Removing the dead node itself leaves voters 1 and 2, both up: allowed, and every group adopts it.
        code, out, err = _member_cli(cluster, "remove", 3, "--wait", "90")
        assert code == 0, err
        assert out.startswith("epoch 2: node 3 removed") and "adopted epoch 2's voters 1,2" in out, out
        code, out, err = _member_cli(cluster, "remove", 3, "--json")
        assert code == 0 and json.loads(out) == {"op": "remove", "epoch": 2, "changed": False, "node": 3}, out
        code, out, err = _member_cli(cluster, "list", "--json")
        table = json.loads(out)
        assert table["voters"] == [1, 2] and [n["role"] for n in table["nodes"]] == ["voter", "voter", "removed"]
        code, out, err = _member_cli(cluster, "status")
        assert code == 0 and "epoch 2; voters 1,2" in out and "votes on epoch 2's voters" in out, out
        for group in (0, 1):
            _put(admin, group, b"after", b"removal")


def test_an_address_change_heals(tmp_path):
    """Node 3 moves to other ports: once the table says so, the other nodes connect to it there, and it gets
    what is written afterwards."""
    with LocalCluster(tmp_path, nodes=3, workers=1, groups=2) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        _put(admin, 0, b"before", b"1")
        cluster.stop(3)
        path = cluster.config_path(3)
        with open(path, "rb") as f:
            data = tomllib.load(f)
        base = free_base_port(1, 1)
        for node in data["cluster"]["nodes"]:
            if node["id"] == 3:
                node["peer_port"], node["client_port"] = base, base + 1
        with open(path, "wb") as f:
            tomli_w.dump(data, f)
        cluster.start(3, wait=False)       # the harness's own client would look for it at the old ports
        from paxos_core.client import Client
        from paxos_core.config import load_config

        mover = Client.from_config(load_config(path), prefer=3, default_timeout=5.0)
        try:
            wait_for(lambda: all("error" not in r for r in mover.status(3, timeout=1.0)), 60,
                     message="node 3 answers at its new client port")
            change = admin.membership.update(3, "127.0.0.1", base, base + 1)
            assert (change.epoch, change.changed) == (2, True)
            _put(admin, 0, b"after", b"moved")
            # Read on node 3 itself, at its new client port: it has what was written after the move.
            def has_it():
                try:
                    raw = mover.read(0, kv_ops.encode_get(b"after"), "stale", 2.0, 3)
                except Exception:
                    return False
                return kv_ops.decode_result(raw).value == b"moved"
            wait_for(has_it, 60, message="node 3 at its new address learned the write made after the move")
        finally:
            mover.close()


def test_a_removed_node_leaves_says_so_and_never_starts_again(tmp_path):
    with LocalCluster(tmp_path, nodes=3, workers=2, groups=4) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        for group in range(4):
            _put(admin, group, b"k", b"before")
        change = admin.membership.remove(3)
        change.wait(timeout=90)
        proc = cluster.procs[3].popen
        code = proc.wait(60)
        cluster.down.add(3)
        err = open(cluster.procs[3].stderr).read()
        assert code == 4, (code, err[-2000:])
        assert "node 3 was removed from the cluster at membership epoch 2; it stops for good" in err, err[-2000:]
        for group in range(4):
            _put(admin, group, b"k", b"after")
        # Progress and status do not ask the node that left (asking it waited the whole timeout for an answer
        # that never comes, in every progress call after a removal), and still report the others.
        asked = []
        admin_rpc = admin._admin
        admin._admin = lambda op, node, worker, group=None, timeout=5.0: (asked.append(node),
                                                                        admin_rpc(op, node, worker, group, timeout))[1]
        progress = change.progress(timeout=30)
        status = admin.membership.status(timeout=30)
        admin._admin = admin_rpc
        assert progress["done"] and progress["silent"] == [], progress
        assert sorted({w["node"] for w in progress["workers"]}) == [1, 2], progress
        assert [n["answers"] for n in status["nodes"]] == [True, True, False], status
        assert asked and 3 not in asked, asked
        # It never starts again: its id is never used again.
        with pytest.raises(AssertionError, match="was removed from the cluster at membership epoch 2"):
            cluster.start(3)


def test_a_node_down_while_it_was_removed_hears_of_it_when_it_comes_back_and_leaves(tmp_path, monkeypatch):
    """Its peers refuse its key once every group went on without it (and the grace a removed node has to
    hand its groups over has passed), so nothing tells it through the groups: the node asks the cluster now
    and then, as a client, whether the table removed it (the supervisor's removal watch; every second here,
    30 s by default), then leaves as a removed node does."""
    monkeypatch.setenv("PAXOS_CORE_REMOVAL_WATCH_S", "1")
    with LocalCluster(tmp_path, nodes=4, workers=2, groups=4) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        cluster.kill(4)
        admin.membership.remove(4).wait(timeout=90)
        wait_for(lambda: _dropped_by(admin, 4, (1, 2, 3)), 60, message="nodes 1-3 no longer talk to node 4")
        cluster.start(4, wait=False)
        code = cluster.procs[4].popen.wait(90)
        cluster.down.add(4)
        err = open(cluster.procs[4].stderr).read()
        assert code == 4, (code, err[-2000:])
        assert "node 4 was removed from the cluster" in err and "heard of it late" in err, err[-2000:]
        with pytest.raises(AssertionError, match="was removed from the cluster"):
            cluster.start(4)
        assert admin.membership.table()["voters"] == [1, 2, 3]


def test_under_load_a_node_joins_by_bundle_is_promoted_and_node_1_is_removed(tmp_path):
    """The acceptance path: keygen on the new host, `member add --out` on a member, `node --join` on the new
    host, promote it, remove node 1 (which exits saying so); a writer keeps writing all along, and every write
    it was told succeeded is there at the end."""
    import os
    import signal
    import time

    with LocalCluster(tmp_path, nodes=3, workers=2, groups=4) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        acked, stop, failures = {}, threading.Event(), []

        def writer():
            client = cluster.client()
            i = 0
            while not stop.is_set():
                group, key = i % 4, b"w%d" % i
                try:
                    _put(client, group, key, b"%d" % i)
                    acked[(group, key)] = b"%d" % i
                except Exception as exc:          # outcome unknown: not counted as acknowledged
                    failures.append(repr(exc))
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        new = tmp_path / "node4"
        node4 = None
        try:
            bundle = _bundle_for_new_host(cluster, tmp_path, new, workers=2)
            log = open(tmp_path / "node4.err", "wb")
            node4 = subprocess.Popen([sys.executable, "-m", "paxos_core", "node", "--join", str(bundle), "--dir",
                                      str(new)], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     cwd=str(tmp_path), env=package_env())
            cluster.known_pids.add(node4.pid)
            # A learner first: promoted once it is caught up (the command checks it; until then it refuses).
            wait_for(lambda: _member_cli(cluster, "promote", 4)[0] == 0, 120,
                     message="node 4 caught up and promoted")
            assert admin.membership.table()["voters"] == [1, 2, 3, 4]
            change = admin.membership.remove(1)
            change.wait(timeout=120)
            assert cluster.procs[1].popen.wait(60) == 4
            cluster.down.add(1)
            assert "node 1 was removed from the cluster" in open(cluster.procs[1].stderr).read()
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join(60)
            if node4 is not None and node4.poll() is None:
                os.kill(node4.pid, signal.SIGTERM)
                node4.wait(30)
        assert len(acked) > 20, (len(acked), failures[:5])
        table = admin.membership.table()
        assert table["voters"] == [2, 3, 4] and table["epoch"] == 4
        # Every acknowledged write is there, read through the log from a node still in the cluster.
        reader = cluster.client(prefer=2)
        for (group, key), value in acked.items():
            raw = reader.read(group, kv_ops.encode_get(key), "linearizable", 20.0)
            assert kv_ops.decode_result(raw).value == value, (group, key)


def _bundle_for_new_host(cluster, tmp_path, folder, workers):
    """keygen in the new host's `folder`, then `member add --out` on a member: node 4's join bundle (its ports
    free on loopback now). Returns the bundle's path."""
    code, out, err = _run(["keygen", str(folder / "keys")])
    assert code == 0, err
    base = free_base_port(1, workers)
    bundle = tmp_path / "join.json"
    code, out, err = _member_cli(cluster, "add", "--host", "127.0.0.1", "--peer-port", base,
                                 "--client-port", base + 100, "--key-file", folder / "keys" / "new.key",
                                 "--out", bundle)
    assert code == 0 and "node 4 added as a learner" in out, (out, err)
    return bundle


def _node_process(cluster, tmp_path, procs, stem, *extra):
    """`paxos-core node EXTRA...` started in tmp_path, its output in tmp_path/STEM-<n>.err; its pid goes to the
    cluster's final check and the process to `procs` (the test stops it by its PID). Returns the log's path."""
    log_path = tmp_path / ("%s-%d.err" % (stem, len(procs)))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "paxos_core", "node", *extra], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, cwd=str(tmp_path), env=package_env())
    cluster.known_pids.add(proc.pid)
    procs.append(proc)
    return log_path


def _alive(pid):
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run(args):
    proc = subprocess.run([sys.executable, "-m", "paxos_core", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=package_env())
    return proc.returncode, proc.stdout, proc.stderr


def test_a_wiped_node_is_replaced_by_a_new_id_on_the_same_host_and_the_cluster_survives_another_loss(tmp_path):
    """kill -9 node 3 and wipe it; it refuses to start as it was; a new node (id 4) takes its address through
    a join bundle (`member add --replaces 3`) and its place (`member replace 3 4`); then node 1 is killed too
    and the cluster still serves (voters 1, 2, 4: two of them up), group 100 too, added while the cluster ran:
    the replace put it on node 4 first, though node 3, a member until then, could not be asked (before, the
    replace failed for good: "node 3 cannot be asked", nemesis seed 655)."""
    import os
    import shutil
    import signal

    with LocalCluster(tmp_path, nodes=3, workers=1, groups=2) as cluster:
        admin = cluster.client(prefer=2)
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        assert admin.add_group(100) == 1
        for group in (0, 1, 100):
            _put(admin, group, b"before", b"1")
        old = cluster.config(3)
        cluster.kill(3)
        shutil.rmtree(old.data_dir)
        # A wiped node refuses to start as itself (it would vote with no memory of its promises).
        with pytest.raises(AssertionError, match="identity marker"):
            cluster.start(3)
        cluster.down.add(3)
        new = tmp_path / "node4"
        code, out, err = _run(["keygen", str(new / "keys")])
        assert code == 0, err
        bundle = tmp_path / "join.json"
        code, out, err = _member_cli(cluster, "add", "--host", old.me.host, "--peer-port", old.me.peer_port,
                                     "--client-port", old.me.client_port, "--key-file", new / "keys" / "new.key",
                                     "--replaces", 3, "--out", bundle)
        assert code == 0 and "node 4 added" in out, (out, err)
        log = open(tmp_path / "node4.err", "wb")
        node4 = subprocess.Popen([sys.executable, "-m", "paxos_core", "node", "--join", str(bundle), "--dir",
                                  str(new)], stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=str(tmp_path),
                                 env=package_env())
        cluster.known_pids.add(node4.pid)
        try:
            last = []

            def replaced():
                last[:] = [_member_cli(cluster, "replace", 3, 4)]
                return last[0][0] == 0
            try:
                wait_for(replaced, 120, message="node 4 caught up and replaced node 3")
            except AssertionError:
                raise AssertionError("member replace 3 4: %r\n%s" % (last, open(tmp_path / "node4.err").read()[-3000:]))
            table = admin.membership.table()
            assert table["voters"] == [1, 2, 4] and table["learners"] == []
            assert admin.membership.history()[-1]["change"] == {"op": "swap", "old": 3, "new": 4}
            assert admin.members() == [1, 2, 4] and admin.group_info(100, 4)["hosted"]
            from paxos_core.membership import Change

            Change("swap", table["epoch"], True, 4, admin.membership).wait(timeout=120)
            cluster.kill(1)
            for group in (0, 1, 100):
                _put(admin, group, b"after", b"2")
                assert kv_ops.decode_result(admin.read(group, kv_ops.encode_get(b"before"), "linearizable",
                                                       20.0)).value == b"1"
        finally:
            if node4.poll() is None:
                os.kill(node4.pid, signal.SIGTERM)
                node4.wait(30)


def test_a_node_that_joined_is_wiped_and_rebuilt_from_its_node_file_with_the_clusters_first_voters(tmp_path):
    """A node that joined by bundle lists the table's nodes of its join (1, 2, 3, 4) in its node file, but the
    groups' first voters are the cluster's (1, 2, 3): the bundle writes them into the node file too, so when
    its disk is lost and it starts with --rebuild it records the cluster's, not the file's node list, and it
    serves again."""
    import os
    import shutil
    import signal

    from paxos_core.config import load_config
    from paxos_core.storage import identity

    with LocalCluster(tmp_path, nodes=3, workers=1, groups=2) as cluster:
        admin = cluster.client(prefer=2)
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        for group in (0, 1):
            _put(admin, group, b"before", b"1")
        new = tmp_path / "node4"
        bundle = _bundle_for_new_host(cluster, tmp_path, new, workers=1)
        procs = []

        def start(*extra):
            return _node_process(cluster, tmp_path, procs, "node4", *extra)

        try:
            start("--join", str(bundle), "--dir", str(new))
            wait_for(lambda: _member_cli(cluster, "promote", 4)[0] == 0, 120, message="node 4 promoted")
            config = load_config(new / "node4.toml")
            assert config.members == (1, 2, 3, 4) and config.first_configuration == (1, 2, 3)
            assert identity.read_first_voters(config.data_dir) == (1, 2, 3)
            for group in (0, 1):
                _put(admin, group, b"voter4", b"2")
            # Its disk is lost: kill -9, wipe, and start it again with --rebuild.
            doomed = [procs[-1].pid] + list(descendants(procs[-1].pid))   # the supervisor and its workers
            for pid in doomed:
                os.kill(pid, signal.SIGKILL)
            procs[-1].wait(30)
            wait_for(lambda: not any(_alive(pid) for pid in doomed[1:]), 30, message="node 4's workers gone")
            shutil.rmtree(config.data_dir)
            log_path = start(str(new / "node4.toml"), "--rebuild")
            # Its three groups (0, 1 and the system group) rebuilt: a wiped voter of four needs the three others
            # to answer (it cannot count itself), so this must finish before node 1 goes.
            wait_for(lambda: open(log_path).read().count("rebuilt from its peers on node 4") == 3, 120,
                     message="node 4's groups rebuilt")
            assert identity.read_first_voters(config.data_dir) == (1, 2, 3)
            # It votes again: with node 1 down, the voters 1, 2, 3, 4 make a quorum (3) only with node 4.
            cluster.kill(1)

            for group in (0, 1):
                wait_for(lambda: _put(admin, group, b"after", b"3") or True, 90,   # again if the outcome was unknown
                          message="group %d served by nodes 2, 3 and 4" % group)
                for key, value in ((b"before", b"1"), (b"voter4", b"2"), (b"after", b"3")):
                    raw = admin.read(group, kv_ops.encode_get(key), "linearizable", 20.0)
                    assert kv_ops.decode_result(raw).value == value, (group, key)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGTERM)
                    proc.wait(30)


def test_a_wiped_node_whose_file_lists_no_member_left_rebuilds_from_a_bundle_of_the_table(tmp_path):
    """Nemesis seed 622: node 1 was wiped after nodes 2 and 3 had been replaced (by 6 and 4); its node file named
    no member left, it refused every peer's key ("key not in the cluster") and stayed repairing to the end
    (with one listed peer left it learns the table, and the keys, from it). `member bundle 1 --out B` on a
    member writes the table's nodes and keys, and `node FILE --rebuild --bundle B` brings the file up to them
    first. Here nodes 4 and 5 replace nodes 3 and 2, node 1 is wiped and rebuilt that way (from nodes 4 and
    5: it never counts itself), and then node 4 is killed: nodes 1 and 5 serve together."""
    import os
    import shutil
    import signal

    from paxos_core import Client
    from paxos_core.config import load_config
    from paxos_core.membership import Change
    from paxos_core.storage import identity

    with LocalCluster(tmp_path, nodes=3, workers=1, groups=2) as cluster:
        admin = cluster.client(prefer=2)
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        for group in (0, 1):
            _put(admin, group, b"before", b"1")
        procs, clients = [], []

        def start(*extra):
            return _node_process(cluster, tmp_path, procs, "started", *extra)

        def replace(old, new):
            """keygen on node `new`'s host, `member add --out`, `node --join`, `member replace old new`."""
            folder = tmp_path / ("node%d" % new)
            code, out, err = _run(["keygen", str(folder / "keys")])
            assert code == 0, err
            base = free_base_port(1, 1)
            bundle = tmp_path / ("join%d.json" % new)
            code, out, err = _member_cli(cluster, "add", "--host", "127.0.0.1", "--peer-port", base,
                                         "--client-port", base + 100, "--key-file", folder / "keys" / "new.key",
                                         "--out", bundle)
            assert code == 0 and "node %d added as a learner" % new in out, (out, err)
            start("--join", str(bundle), "--dir", str(folder))
            cluster.kill(old)
            wait_for(lambda: _member_cli(cluster, "replace", old, new)[0] == 0, 120,
                     message="node %d replaced node %d" % (new, old))
            Change("swap", admin.membership.table()["epoch"], True, new, admin.membership).wait(timeout=120)

        try:
            replace(3, 4)
            admin = Client.from_config(load_config(tmp_path / "node4" / "node4.toml"), prefer=4)
            clients.append(admin)
            replace(2, 5)
            # Node 1's disk is lost. Its file lists nodes 1, 2, 3; the table 1, 4, 5.
            path, data_dir = cluster.config_path(1), cluster.config(1).data_dir
            cluster.kill(1)
            shutil.rmtree(data_dir)
            bundle = tmp_path / "node1.json"
            code, out, err = _run(["member", "bundle", 1, "--out", bundle, "--cluster", tmp_path / "node4"])
            assert code == 0 and "node 1's bundle" in out and "nodes 1,4,5" in out, (out, err)
            log_path = start(str(path), "--rebuild", "--bundle", str(bundle))
            wait_for(lambda: open(log_path).read().count("rebuilt from its peers on node 1") == 3, 120,
                     message="node 1's groups rebuilt")
            assert "its nodes were 1,2,3, now the table's 1,4,5" in open(log_path).read()
            refreshed = load_config(path)
            assert refreshed.members == (1, 4, 5) and refreshed.first_configuration == (1, 2, 3)
            assert identity.read_first_voters(data_dir) == (1, 2, 3)
            # Nodes 1 and 5 without node 4: a quorum of voters 1, 4, 5 only with node 1 voting again.
            for pid in [procs[0].pid] + list(descendants(procs[0].pid)):
                os.kill(pid, signal.SIGKILL)
            procs[0].wait(30)
            client = Client.from_config(refreshed, prefer=1)
            clients.append(client)
            for group in (0, 1):
                wait_for(lambda: _put(client, group, b"after", b"2") or True, 90,   # again if the outcome was unknown
                         message="group %d served by nodes 1 and 5" % group)
                for key, value in ((b"before", b"1"), (b"after", b"2")):
                    raw = client.read(group, kv_ops.encode_get(key), "linearizable", 20.0)
                    assert kv_ops.decode_result(raw).value == value, (group, key)
        finally:
            for client in clients:
                client.close()
            for proc in procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGTERM)
                    proc.wait(30)


def test_the_busiest_master_removed_during_lease_reads_serves_no_stale_read(tmp_path):
    """Four voters; a writer and two lease readers on one key of group 0 while its master is removed: the
    history (every read and write, with its real-time interval) is linearizable, and the removed master
    exits saying so."""
    import time

    from paxos_core.check.history import FAIL, OK, READ, UNKNOWN, WRITE, Op
    from paxos_core.check.linearizability import check_linearizability

    with LocalCluster(tmp_path, nodes=4, workers=1, groups=1) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        _put(admin, 0, b"x", b"0")
        master = next(g["master"] for r in cluster.status(1) for g in r["group_detail"] if g["group"] == 0)
        assert master in (1, 2, 3, 4)
        history, stop, lock, ids = [], threading.Event(), threading.Lock(), iter(range(10 ** 9))

        def record(kind, value, invoke, outcome, result=None):
            with lock:
                history.append(Op(next(ids), b"x", kind, value=value, invoke=invoke,
                                  complete=time.monotonic() if outcome != UNKNOWN else None, outcome=outcome,
                                  result=result))

        def writer():
            client, i = cluster.client(prefer=master), 1
            while not stop.is_set():
                value = b"%d" % i
                start = time.monotonic()
                try:
                    _put(client, 0, b"x", value)
                    record(WRITE, value, start, OK)
                except Exception:
                    record(WRITE, value, start, UNKNOWN)
                i += 1

        def reader(prefer):
            client = cluster.client(prefer=prefer)
            while not stop.is_set():
                start = time.monotonic()
                try:
                    raw = client.read(0, kv_ops.encode_get(b"x"), "lease", 5.0)
                    record(READ, None, start, OK, kv_ops.decode_result(raw).value)
                except Exception:
                    record(READ, None, start, FAIL)

        threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(n,))
                                                        for n in (master, 1 + master % 4)]
        history.append(Op(-1, b"x", WRITE, value=b"0", invoke=0.0, complete=0.0, outcome=OK))
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            removed_at = time.monotonic()
            admin.membership.remove(master).wait(timeout=90)
            assert cluster.procs[master].popen.wait(60) == 4
            cluster.down.add(master)
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        reads = [op for op in history if op.kind == READ and op.outcome == OK]
        assert len(reads) > 50 and any(op.invoke > removed_at for op in reads), len(reads)
        result = check_linearizability(history, budget_s=60.0)
        assert result.ok, [str(a) for key in result.keys.values() for a in getattr(key, "anomalies", [])][:3]


def test_a_change_whose_driver_is_killed_mid_change_completes_when_run_again(tmp_path):
    import os
    import signal

    with LocalCluster(tmp_path, nodes=4, workers=2, groups=4) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        driver = subprocess.Popen([sys.executable, "-m", "paxos_core", "member", "remove", "4", "--wait", "120",
                                   "--cluster", str(cluster.dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=package_env())
        try:
            wait_for(lambda: admin.membership.table()["epoch"] == 2, 60, message="the removal chosen")
        finally:
            os.kill(driver.pid, signal.SIGKILL)          # killed while it waits for the groups to adopt
            driver.wait(30)
        code, out, err = _member_cli(cluster, "remove", 4, "--wait", "120")
        assert code == 0, err
        assert "epoch 2: node 4 removed (already so: nothing changed)" in out, out
        assert "adopted epoch 2's voters 1,2,3" in out, out
        assert admin.membership.table()["epoch"] == 2

        # The same from asyncio: the awaitable twins answer alike, and a change run again is a no-op.
        import asyncio

        async def from_asyncio():
            m = admin.membership
            table = await m.table_async()
            change = await m.remove_async(4)
            progress = await change.wait_async(60)
            return table, change, progress, await m.status_async()

        table, change, progress, status = asyncio.run(from_asyncio())
        assert table["epoch"] == 2 and table["voters"] == [1, 2, 3]
        assert (change.epoch, change.changed, change.node) == (2, False, 4) and progress["done"]
        assert status["voters"] == [1, 2, 3]


def test_a_group_moved_from_nodes_1_2_3_to_3_4_5_keeps_every_acknowledged_value(tmp_path):
    """Five nodes; group 0 placed on 1,2,3, written under load while it moves to 3,4,5 (`group move`); nodes
    1 and 2 hand their copies over (they no longer hold the group); then they are killed and group 0 still
    serves every acknowledged value from 3,4,5. Moved back to 1,2,3, nodes 1 and 2 hold it again (learning
    what they had before they vote) and, with 4 and 5 killed, serve every value. `group add --replicas 3`
    places a new group on the least loaded nodes, and `member status` counts groups per node."""
    import time

    with LocalCluster(tmp_path, nodes=5, workers=1, groups=2) as cluster:
        admin = cluster.client(prefer=3)
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        code, out, err = _run(["group", "move", 0, "--to", "1,2,3", "--wait", "60", "--cluster", cluster.dir])
        assert code == 0 and "group 0 votes on nodes 1,2,3" in out, (out, err)
        acked, stop = {}, threading.Event()

        def writer():
            client, i = cluster.client(prefer=3), 0
            while not stop.is_set():
                try:
                    _put(client, 0, b"m%d" % i, b"%d" % i)
                    acked[b"m%d" % i] = b"%d" % i
                except Exception:
                    pass
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            time.sleep(1.0)
            code, out, err = _run(["group", "move", 0, "--to", "3,4,5", "--wait", "90", "--cluster", cluster.dir])
            assert code == 0 and "group 0 votes on nodes 3,4,5" in out, (out, err)
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join(60)
        assert admin.membership.table()["placements"] == {"0": [3, 4, 5]}
        for node in (1, 2):
            wait_for(lambda: admin.group_info(0, node)["status"] == "vacated", 60,
                     message="node %d handed group 0 over" % node)
        assert admin.group_info(0, 4)["status"] == "ok"
        cluster.kill(1)
        cluster.kill(2)
        assert len(acked) > 20
        for key, value in acked.items():
            raw = admin.read(0, kv_ops.encode_get(key), "linearizable", 20.0)
            assert kv_ops.decode_result(raw).value == value, key
        _put(admin, 0, b"after", b"the move")
        for node in (1, 2):
            cluster.start(node)
        assert admin.group_info(0, 1)["status"] == "vacated"         # a restart keeps it handed over
        # Back to 1,2,3: nodes 1 and 2 hold it again; with 4 and 5 gone, every value is served by 1,2,3.
        code, out, err = _run(["group", "move", 0, "--to", "1,2,3", "--wait", "90", "--cluster", cluster.dir])
        assert code == 0 and "group 0 votes on nodes 1,2,3" in out, (out, err)
        for node in (1, 2):
            wait_for(lambda: admin.group_info(0, node)["status"] == "ok", 60,
                     message="node %d holds group 0 again" % node)
        _put(admin, 0, b"back", b"on 1,2,3")
        for node in (4, 5):
            wait_for(lambda: admin.group_info(0, node)["status"] == "vacated", 60,
                     message="node %d handed group 0 over" % node)
        cluster.kill(4)
        cluster.kill(5)
        acked.update({b"after": b"the move", b"back": b"on 1,2,3"})
        for key, value in acked.items():
            raw = admin.read(0, kv_ops.encode_get(key), "linearizable", 20.0)
            assert kv_ops.decode_result(raw).value == value, key
        for node in (4, 5):
            cluster.start(node)
        code, out, err = _run(["group", "move", 0, "--to", "3,4,5", "--wait", "90", "--cluster", cluster.dir])
        assert code == 0, (out, err)
        # A new group on the least loaded nodes: group 0 votes on 3,4,5 and group 1 on 1..5, so 1 and 2 vote
        # in fewer groups than the others.
        code, out, err = _run(["group", "add", 7, "--replicas", "3", "--cluster", cluster.dir])
        assert code == 0 and "group 7 votes on nodes 1,2,3" in out, (out, err)
        code, out, err = _member_cli(cluster, "status", "--json")
        per_node = {n["id"]: n["groups_voting"] for n in json.loads(out)["nodes"]}
        assert per_node == {1: 1, 2: 1, 3: 2, 4: 2, 5: 2}, per_node     # of groups 0 and 1 (the node files' groups)


def test_a_bad_join_bundle_is_refused_with_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "garbage.json").write_text("{not json")
    code, out, err = _run(["node", "--join", tmp_path / "garbage.json", "--dir", tmp_path / "n"])
    assert code == 2 and "not a join bundle" in err and err.count("\n") == 1, err
    assert not (tmp_path / "n").exists()
    # A well-formed bundle whose key is not this host's: refused, and the folder is left as it was.
    code, out, err = _run(["keygen", tmp_path / "n" / "keys"])
    assert code == 0, err
    before = sorted(p.name for p in (tmp_path / "n" / "keys").iterdir())
    bundle = {"version": 1, "cluster_id": 7, "node_id": 9, "epoch": 3, "first_voters": [1, 2, 3],
              "public_keys": {"9": "x" * 40},
              "node_file": {"cluster": {"id": 7, "groups": 2, "workers": 1, "keys_dir": "keys", "nodes": []},
                            "node": {"id": 9, "data_dir": "data"}}}
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    code, out, err = _run(["node", "--join", tmp_path / "b.json", "--dir", tmp_path / "n"])
    assert code == 2 and "is not the public key the cluster admitted for node 9" in err, err
    assert sorted(p.name for p in (tmp_path / "n" / "keys").iterdir()) == before
    assert not (tmp_path / "n" / "node9.toml").exists() and not (tmp_path / "n" / "data").exists()


def test_a_node_that_joins_gets_the_groups_added_at_run_time_before_it_is_promoted(tmp_path):
    """A node that joins gets its node file's groups only. Before, `member promote` made it a voter of a group
    added while the cluster ran that it did not hold (the table places every group on every voter), and
    `group add` (the client's node files list nodes 1-3) never reached it: each such replacement took a live
    copy from that group for good. Now promote puts the missing groups there first (LearnerNotReady until it
    learned them), and the group admin calls ask the table's members: the new node, not the removed one, and
    a node that joined while a group was added."""
    import os
    import signal

    from paxos_core import LearnerNotReady

    with LocalCluster(tmp_path, nodes=3, workers=2, groups=4) as cluster:
        admin = cluster.client()
        wait_for(lambda: _seeded(admin), 60, message="the table seeded")
        assert admin.add_group(100) == 1
        _put(admin, 100, b"before", b"the join")
        new = tmp_path / "node4"
        procs = []
        try:
            _node_process(cluster, tmp_path, procs, "node4", "--join",
                          str(_bundle_for_new_host(cluster, tmp_path, new, workers=2)), "--dir", str(new))
            wait_for(lambda: admin.membership.status()["nodes"][3]["answers"], 60, message="node 4 answers")
            assert admin.membership.status()["nodes"][3]["groups_missing"] == [100]
            with pytest.raises(LearnerNotReady, match="did not hold group.s. 100"):
                admin.membership.promote(4)
            assert admin.group_info(100, 4)["hosted"]            # added there by the refused promote
            # A group added by a client that read the members before node 4 joined: the table is read again
            # once the group is added, and node 4 gets it too (before: it lacked it, and a promote run before
            # any node held it found nothing missing there).
            members_now, asked = admin.admin_nodes, []

            def before_the_join(timeout=5.0):
                asked.append(timeout)
                return [1, 2, 3] if len(asked) == 1 else members_now(timeout)

            admin.admin_nodes = before_the_join
            assert admin.add_group(103) == 1 and asked
            del admin.admin_nodes
            assert admin.group_info(103, 4)["hosted"]
            wait_for(lambda: _member_cli(cluster, "promote", 4)[0] == 0, 120, message="node 4 promoted")
            read = admin.read(100, kv_ops.encode_get(b"before"), "stale", 10.0, node=4)
            assert kv_ops.decode_result(read).value == b"the join"
            assert admin.add_group(101) == 1 and admin.group_info(101, 4)["hosted"]
            admin.membership.remove(1).wait(timeout=120)
            assert cluster.procs[1].popen.wait(60) == 4
            cluster.down.add(1)
            # Node 1 left: the admin calls no longer ask it (before: "node 1 cannot be asked").
            admin.remove_group(101)
            assert [admin.group_info(101, n)["hosted"] for n in (2, 3, 4)] == [False, False, False]
            assert admin.add_group(102) == 1
            assert admin.members() == [2, 3, 4] and admin.membership.status()["nodes"][3]["groups_missing"] == []
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGTERM)
                    proc.wait(30)

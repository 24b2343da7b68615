"""`paxos-core init --node ID=HOST`: one self-contained folder per host, and a cluster started from them.

The three "hosts" are loopback addresses 127.0.0.1-3 of this machine; each node runs from its own folder
only (its TOML, its data directory, the public keys and its own secret key). The nodes run under the
integration harness (tests/cluster_harness.py), which stops every process it started by PID.
"""
import os
import shutil
import subprocess
import sys

from cluster_harness import LocalCluster, package_env, wait_for
from paxos_core import PaxosError
from paxos_core.client import Client
from paxos_core.config import load_cluster, load_config
from paxos_core.statemachine import kv as ops

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def _init(base, *extra):
    argv = ["init", str(base), "--workers", "1", "--groups", "2", *extra]
    for k, host in enumerate(HOSTS, 1):
        argv += ["--node", "%d=%s" % (k, host)]
    return subprocess.run([sys.executable, "-m", "paxos_core", *argv], capture_output=True, text=True, timeout=60,
                          env=package_env())


def _run_and_check(base, tmp_path):
    """Start the nodes from the node files in base/node<k>/ (the harness: by PID, the checkout under test),
    write through node 2's config, read the value back from every node."""
    with LocalCluster(tmp_path / "run", directory=base) as cluster:
        client = Client.from_config(load_config(base / "node2" / "node2.toml"), default_timeout=5.0)
        try:
            wait_for(lambda: _put(client), 60, message="a write through node 2's config")
            for node in (1, 2, 3):
                raw = client.read(1, ops.encode_get(b"where"), "linearizable", 10.0, node)
                assert ops.decode_result(raw).value == b"three hosts"
            assert {row["node"] for row in client.status()} == {1, 2, 3}
        finally:
            client.close()
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "run" / "logs").glob("*"))
    assert "Traceback" not in logs, logs[-3000:]


def _put(client):
    try:
        client.propose(1, ops.encode_put(b"where", b"three hosts"))
        return True
    except PaxosError:
        return False


def test_init_per_host_folders_hold_one_secret_each_and_start_a_cluster(tmp_path):
    base = tmp_path / "cluster"
    result = _init(base)
    assert result.returncode == 0, result.stderr
    assert "copy each node's folder to its host" in result.stdout
    for k, host in enumerate(HOSTS, 1):
        folder = base / ("node%d" % k)
        assert sorted(p.name for p in folder.iterdir()) == ["data", "keys", "node%d.toml" % k]
        keys = sorted(p.name for p in (folder / "keys").iterdir())
        assert keys == sorted(["node1.key", "node2.key", "node3.key", "node%d.key_secret" % k])
        assert os.stat(folder / "keys" / ("node%d.key_secret" % k)).st_mode & 0o077 == 0
        cfg = load_config(folder / ("node%d.toml" % k))
        assert cfg.me.host == host and cfg.data_dir == folder / "data" / ("node%d" % k)
    assert [c.node_id for c in load_cluster(base)] == [1, 2, 3]
    _run_and_check(base, tmp_path)


def test_keygen_on_each_host_then_init_with_public_keys_writes_no_secret(tmp_path):
    """The secret keys never travel: keygen on each "host", init from the public keys alone; a node folder
    without its secret refuses to start, saying where the key goes; with it, the cluster runs."""
    hosts = [tmp_path / ("host%d" % k) for k in (1, 2, 3)]
    pub = tmp_path / "public"
    pub.mkdir()
    for k, home in enumerate(hosts, 1):
        result = subprocess.run([sys.executable, "-m", "paxos_core", "keygen", str(home), "--node", str(k)],
                                capture_output=True, text=True, timeout=60, env=package_env())
        assert result.returncode == 0, result.stderr
        assert os.stat(home / ("node%d.key_secret" % k)).st_mode & 0o077 == 0
        shutil.copy(home / ("node%d.key" % k), pub)
    base = tmp_path / "cluster"
    result = _init(base, "--public-keys", str(pub))
    assert result.returncode == 0, result.stderr
    assert not list(base.rglob("*.key_secret")), "init wrote a secret key"

    refused = subprocess.run([sys.executable, "-m", "paxos_core", "node", str(base / "node1" / "node1.toml")],
                             capture_output=True, text=True, timeout=60, env=package_env())
    assert refused.returncode == 2 and "node1.key_secret" in refused.stderr and "Traceback" not in refused.stderr
    for k, home in enumerate(hosts, 1):
        shutil.copy2(home / ("node%d.key_secret" % k), base / ("node%d" % k) / "keys")
    _run_and_check(base, tmp_path)

    again = subprocess.run([sys.executable, "-m", "paxos_core", "keygen", str(hosts[0]), "--node", "1"],
                           capture_output=True, text=True, timeout=60, env=package_env())
    assert again.returncode == 2 and "already exists" in again.stderr

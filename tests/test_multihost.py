"""`paxos-core init --node ID=HOST`: one self-contained folder per host, and a cluster started from them.

The three "hosts" are loopback addresses 127.0.0.1-3 of this machine; each node runs from its own folder
only (its TOML, its data directory, the public keys and its own secret key). Every process started here is
stopped by its PID.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

from paxos_core import PaxosError
from paxos_core.client import Client
from paxos_core.config import load_cluster, load_config
from paxos_core.statemachine import kv as ops

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def _init(base, *extra):
    argv = ["init", str(base), "--workers", "1", "--groups", "2", *extra]
    for k, host in enumerate(HOSTS, 1):
        argv += ["--node", "%d=%s" % (k, host)]
    return subprocess.run([sys.executable, "-m", "paxos_core", *argv], capture_output=True, text=True, timeout=60)


def _run_and_check(base, tmp_path):
    """Start node k from base/node<k>/ alone (cwd there), write through node 2's config, read from all."""
    procs = []
    try:
        for k in (1, 2, 3):
            folder = base / ("node%d" % k)
            log = open(tmp_path / ("node%d.log" % k), "wb")
            procs.append(subprocess.Popen([sys.executable, "-m", "paxos_core", "node", "node%d.toml" % k],
                                          cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True))
        client = Client.from_config(load_config(base / "node2" / "node2.toml"), default_timeout=5.0)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.propose(1, ops.encode_put(b"where", b"three hosts"))
                    break
                except PaxosError:
                    assert time.monotonic() < deadline, "no write within 60 s"
                    time.sleep(0.2)
            for node in (1, 2, 3):
                raw = client.read(1, ops.encode_get(b"where"), "linearizable", 10.0, node)
                assert ops.decode_result(raw).value == b"three hosts"
            assert {row["node"] for row in client.status()} == {1, 2, 3}
        finally:
            client.close()
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    logs = "".join((tmp_path / ("node%d.log" % k)).read_text(errors="replace") for k in (1, 2, 3))
    assert "Traceback" not in logs, logs[-3000:]


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
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert os.stat(home / ("node%d.key_secret" % k)).st_mode & 0o077 == 0
        shutil.copy(home / ("node%d.key" % k), pub)
    base = tmp_path / "cluster"
    result = _init(base, "--public-keys", str(pub))
    assert result.returncode == 0, result.stderr
    assert not list(base.rglob("*.key_secret")), "init wrote a secret key"

    refused = subprocess.run([sys.executable, "-m", "paxos_core", "node", str(base / "node1" / "node1.toml")],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "node1.key_secret" in refused.stderr and "Traceback" not in refused.stderr
    for k, home in enumerate(hosts, 1):
        shutil.copy2(home / ("node%d.key_secret" % k), base / ("node%d" % k) / "keys")
    _run_and_check(base, tmp_path)

    again = subprocess.run([sys.executable, "-m", "paxos_core", "keygen", str(hosts[0]), "--node", "1"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr

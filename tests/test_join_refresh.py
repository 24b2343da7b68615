"""`paxos-core node FILE --rebuild --bundle BUNDLE` (paxos_core/join.py's refresh): a member whose data directory
was lost gets the table's nodes and keys into its node file before it rebuilds, or, for a bundle that does not
fit, a one-line error and nothing written. tests/test_member_commands.py runs the whole path on real processes."""
import shutil
import subprocess
import sys

import pytest
import tomllib
import zmq.auth

from cluster_harness import package_env
from paxos_core.config import load_config, write_cluster
from paxos_core.errors import ConfigError
from paxos_core.join import make_bundle, refresh
from paxos_core.storage import identity


def _cluster(tmp_path):
    """Nodes 1-3 written by write_cluster; node 1's data directory lost; node 4's key pair made elsewhere.
    Returns (node 1's file, node 4's public key)."""
    files = write_cluster(tmp_path / "cluster", nodes=3, workers=1, groups=2, base_port=20000)
    config = load_config(files[0])
    shutil.rmtree(config.data_dir)
    public, _ = zmq.auth.create_certificates(str(tmp_path), "node4")
    return files[0], zmq.auth.load_certificate(public)[0].decode()


def _table(config, key4, node3_role="removed"):
    """The table after node 4 replaced node 3."""
    keys = {n: zmq.auth.load_certificate(str(config.keys_dir / ("node%d.key" % n)))[0].decode() for n in (1, 2, 3)}
    nodes = [{"id": a.id, "role": "voter", "host": a.host, "peer_port": a.peer_port, "client_port": a.client_port,
              "public_key": keys[a.id]} for a in config.nodes]
    nodes[2]["role"] = node3_role
    nodes.append({"id": 4, "role": "voter", "host": "127.0.0.1", "peer_port": 21000, "client_port": 21100,
                  "public_key": key4, "replaces": 3})
    return {"epoch": 3, "nodes": nodes}


def _state(path):
    """Everything refresh may write: the node file's bytes and the keys directory's file names."""
    config = load_config(path)
    return path.read_bytes(), sorted(p.name for p in config.keys_dir.iterdir())


def test_a_bundle_brings_the_node_file_to_the_tables_nodes_and_keys_and_keeps_the_first_voters(tmp_path):
    path, key4 = _cluster(tmp_path)
    config = load_config(path)
    bundle = make_bundle(config, _table(config, key4), 1, (1, 2, 3))
    assert refresh(bundle, path) == ((1, 2, 3), (1, 2, 4))
    now = load_config(path)
    assert now.members == (1, 2, 4) and now.first_configuration == (1, 2, 3)
    assert zmq.auth.load_certificate(str(now.keys_dir / "node4.key"))[0].decode() == key4
    # The rest of the file is as it was: its own entry (metrics port included), its settings, its paths.
    raw = tomllib.loads(path.read_text())
    assert raw["node"] == {"id": 1, "data_dir": "data/node1"} and raw["cluster"]["keys_dir"] == "keys"
    assert now.me == config.me and now.data_dir == config.data_dir and now.keys_dir == config.keys_dir
    assert not list(path.parent.glob("*.refreshing"))


@pytest.mark.parametrize("case", ["other node", "other cluster", "not listed", "data kept", "wrong own key",
                                  "other key of a peer", "unreadable key of a peer"])
def test_a_bundle_that_does_not_fit_is_refused_and_writes_nothing(tmp_path, case):
    path, key4 = _cluster(tmp_path)
    config = load_config(path)
    table = _table(config, key4)
    bundle = make_bundle(config, table, 1, (1, 2, 3))
    expected = {"other node": "the bundle is node 2's", "other cluster": "the bundle is node 1's of cluster 9",
                "not listed": "does not list this node", "data kept": "has its identity marker",
                "wrong own key": "is not the public key the table holds for node 1",
                "other key of a peer": "holds another key than the table's for node 2",
                "unreadable key of a peer": "node4.key: No public key found"}[case]
    if case == "other node":
        bundle = make_bundle(config, table, 2, (1, 2, 3))
    elif case == "other cluster":
        bundle["cluster_id"] = 9
    elif case == "not listed":
        bundle["node_file"]["cluster"]["nodes"] = [n for n in bundle["node_file"]["cluster"]["nodes"] if n["id"] != 1]
    elif case == "data kept":
        config.data_dir.mkdir(parents=True)
        identity.write_marker(config.data_dir, 1, config.cluster_id)
    elif case == "wrong own key":
        bundle["public_keys"]["1"] = key4
    elif case == "unreadable key of a peer":
        (config.keys_dir / "node4.key").write_text("not a certificate")
    else:
        bundle["public_keys"]["2"] = key4
    before = _state(path)
    with pytest.raises(ConfigError, match=expected):
        refresh(bundle, path)
    assert _state(path) == before
    assert not list(path.parent.glob("*.refreshing"))


def test_a_bundle_whose_file_would_not_load_is_undone(tmp_path):
    """The written file is checked (load_config) before it takes the old one's place: a table whose node 4
    has no key for this cluster's CURVE (the key files must all be there) leaves the folder as it was."""
    path, key4 = _cluster(tmp_path)
    config = load_config(path)
    bundle = make_bundle(config, _table(config, key4), 1, (1, 2, 3))
    del bundle["public_keys"]["4"]
    before = _state(path)
    with pytest.raises(ConfigError, match="public key of node 4 is missing"):
        refresh(bundle, path)
    assert _state(path) == before
    assert not list(path.parent.glob("*.refreshing"))


def test_the_cli_takes_a_bundle_only_with_a_file_and_rebuild(tmp_path):
    path, key4 = _cluster(tmp_path)
    for args in ([str(path), "--bundle", "b.json"], ["--join", "j.json", "--rebuild", "--bundle", "b.json"]):
        proc = subprocess.run([sys.executable, "-m", "paxos_core", "node", *args], capture_output=True, text=True,
                              timeout=60, env=package_env(), cwd=str(tmp_path))
        assert proc.returncode == 2 and "--bundle goes with FILE --rebuild" in proc.stderr, proc.stderr


def test_an_embedded_node_takes_the_bundle_as_the_cli_does(tmp_path):
    """``Node(FILE, rebuild=True, bundle=B)`` is the embedded twin of ``paxos-core node FILE --rebuild --bundle
    B``: the file is refreshed before the node is built; without rebuild=True, or with a NodeConfig in place
    of the file, it is refused and nothing is written."""
    from paxos_core.join import write_bundle
    from paxos_core.node import Node

    path, key4 = _cluster(tmp_path)
    config = load_config(path)
    bundle_path = tmp_path / "node1.json"
    write_bundle(bundle_path, make_bundle(config, _table(config, key4), 1, (1, 2, 3)))
    before = _state(path)
    for kwargs in ({"config": path}, {"config": config, "rebuild": True}):
        with pytest.raises(ConfigError, match="bundle= goes with rebuild=True and the node's file"):
            Node(bundle=bundle_path, start=False, **kwargs)
    assert _state(path) == before
    node = Node(path, start=False, rebuild=True, bundle=bundle_path)
    try:
        assert node.config.members == (1, 2, 4) and node.config.first_configuration == (1, 2, 3)
    finally:
        node.close()
    assert load_config(path).members == (1, 2, 4)

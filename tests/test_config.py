"""Node configuration files: validation, the cluster writer (`paxos-core init`), CURVE keys, sharding."""
import copy
import math
import os
import random
import socket
import stat
import subprocess
import sys

import pytest
import tomli_w
import zmq

from paxos_core.config import (DEFAULTS, NodeAddress, NodeConfig, attribute_name, load_cluster, load_config,
                               write_cluster)
from paxos_core.core.engine import Engine
from paxos_core.errors import ConfigError


def base_dict(nodes=3, workers=2):
    """A valid node file (no CURVE) as parsed from TOML."""
    return {
        "cluster": {
            "id": 1234567,
            "groups": 16,
            "workers": workers,
            "keys_dir": "",
            "nodes": [{"id": i, "host": "127.0.0.1", "peer_port": 47000 + 300 * i, "client_port": 47100 + 300 * i,
                       "metrics_port": 47200 + 300 * i} for i in range(1, nodes + 1)],
        },
        "node": {"id": 1, "data_dir": "data/node1"},
    }


def load(d, base="/base", path=None):
    return NodeConfig.from_dict(d, base, path=path)


# ------------------------------------------------------------------------------------------ valid files


def test_defaults_and_flat_attributes():
    cfg = load(base_dict())
    assert cfg.node_id == 1 and cfg.cluster_id == 1234567 and cfg.groups == 16 and cfg.workers == 2
    assert cfg.keys_dir is None and cfg.path is None
    assert str(cfg.data_dir) == "/base/data/node1"
    for name, table in DEFAULTS.items():
        for key, value in table.items():
            assert getattr(cfg, attribute_name(name, key)) == value
    assert (cfg.window, cfg.max_batch_count, cfg.max_batch_bytes, cfg.max_value_bytes) == (8, 4096, 1 << 20, 1 << 20)
    assert (cfg.tick_ms, cfg.lease_ticks, cfg.lease_margin, cfg.proposal_timeout_ticks) == (10, 300, 0.3, 500)
    assert (cfg.durability, cfg.max_pending, cfg.max_frame_bytes) == ("sync", 20000, 64 << 20)
    assert cfg.curve_public_key(2) is None and cfg.curve_secret_key() is None


def test_every_optional_setting_is_read():
    d = base_dict()
    d["paxos"] = {"window": 3, "max_batch_count": 10, "max_batch_bytes": 1000, "max_value_bytes": 500,
                  "tick_ms": 5, "lease_ticks": 100, "lease_margin": 0.25, "proposal_timeout_ticks": 50}
    d["storage"] = {"durability": "unsafe-no-sync", "retain_instances": 500, "retain_bytes": 1 << 20,
                    "peer_lag_instances": 700, "peer_lag_bytes": 1 << 22}
    d["limits"] = {"max_pending": 7, "max_frame_bytes": 1 << 16, "max_request_timeout_ms": 1500}
    d["snapshot"] = {"chunk_bytes": 8192, "window_bytes": 65536, "max_outgoing": 2, "max_incoming": 3,
                     "idle_timeout_ms": 5000, "retry_ms": 100}
    cfg = load(d)
    for table in ("paxos", "storage", "limits", "snapshot"):
        for key, value in d[table].items():
            assert getattr(cfg, attribute_name(table, key)) == value, key


def test_truncation_is_on_by_default_and_can_be_turned_off():
    cfg = load(base_dict())
    assert cfg.retain_instances == 10000 and cfg.retain_bytes == 64 << 20
    d = base_dict()
    d["storage"] = {"retain_instances": -1, "retain_bytes": 0}
    cfg = load(d)
    assert (cfg.retain_instances, cfg.retain_bytes) == (-1, 0)


def test_the_peers_floor_is_on_by_default_reaches_the_engine_and_is_off_without_truncation():
    cfg = load(base_dict())
    assert (cfg.peer_lag_instances, cfg.peer_lag_bytes) == (100000, 256 << 20)
    assert cfg.core_config(0).peer_lag_instances == 100000
    assert cfg.core_config(0).peer_live_ticks == 5 * cfg.core_config(0).leader_timeout_ticks
    d = base_dict()
    d["storage"] = {"retain_instances": -1}
    assert load(d).core_config(0).peer_lag_instances == 0
    d["storage"] = {"peer_lag_instances": -1}
    with pytest.raises(ConfigError, match=r"storage.peer_lag_instances"):
        load(d)


def test_the_snapshot_chunk_fits_a_quarter_of_a_frame():
    d = base_dict()
    d["paxos"] = {"max_batch_bytes": 1 << 16, "max_value_bytes": 1 << 16}
    assert load(d).snapshot_chunk_bytes == 256 << 10                # the default
    d["limits"] = {"max_frame_bytes": 512 << 10}
    assert load(d).snapshot_chunk_bytes == 128 << 10                # the default shrinks to a quarter frame
    d["snapshot"] = {"chunk_bytes": (128 << 10) + 1}
    with pytest.raises(ConfigError, match=r"snapshot.chunk_bytes: must be an integer <= 131072"):
        load(d)
    d["snapshot"] = {"chunk_bytes": 8192, "window_bytes": 4096}
    with pytest.raises(ConfigError, match=r"snapshot.window_bytes: must be an integer >= 8192"):
        load(d)
    d["snapshot"] = {"chunks": 1}
    with pytest.raises(ConfigError, match=r"snapshot"):
        load(d)


def test_membership_and_addresses():
    d = base_dict()
    d["cluster"]["nodes"].reverse()          # file order does not matter: nodes come sorted by id
    d["node"]["id"] = 2
    cfg = load(d)
    assert cfg.members == (1, 2, 3)
    assert cfg.me.id == 2 and [p.id for p in cfg.peers] == [1, 3]
    me = cfg.me
    assert me == NodeAddress(2, "127.0.0.1", 47600, 47700, 47800)
    assert me.peer_endpoint(1) == "tcp://127.0.0.1:47601"
    assert me.client_endpoint(0) == "tcp://127.0.0.1:47700"
    assert me.metrics_address(1) == ("127.0.0.1", 47801)
    assert NodeAddress(1, "h", 1, 2, 0).metrics_address(0) is None
    assert NodeAddress(1, "::1", 5000, 6000).peer_endpoint(2) == "tcp://[::1]:5002"
    assert cfg.address(3).peer_port == 47900
    assert cfg.worker_data_dir(1) == cfg.data_dir / "worker-1"


def test_paths_are_relative_to_the_file(tmp_path):
    d = base_dict()
    d["node"]["data_dir"] = "../elsewhere/n1"
    cfg = load(d, base=str(tmp_path / "conf"))
    assert cfg.data_dir == tmp_path / "elsewhere" / "n1"
    d["node"]["data_dir"] = str(tmp_path / "abs")
    assert load(d).data_dir == tmp_path / "abs"


def test_to_dict_round_trips():
    d = base_dict()
    d["paxos"] = {"window": 2, "lease_margin": 0.5}
    cfg = load(d)
    again = NodeConfig.from_dict(cfg.to_dict(), "/anywhere")
    assert again == cfg
    tomli_w.dumps(cfg.to_dict())


def test_to_dict_writes_only_the_settings_that_differ_from_their_defaults():
    """A node file written from a config (a join bundle's) names no optional setting at its default: a build
    that predates a setting still reads it, and a default stays a default."""
    d = base_dict()
    d["paxos"] = {"window": 2}
    out = load(d).to_dict()
    assert out["paxos"] == {"window": 2}
    assert "storage" not in out and "snapshot" not in out and "limits" not in out
    assert "first_voters" not in out["cluster"]


def test_first_voters_state_the_groups_first_configuration():
    """cluster.first_voters (a node that joined later: its join bundle writes them): the voters of a group that
    never adopted an epoch, which need not be the nodes the file lists today (a first voter since removed)."""
    assert load(base_dict()).first_configuration == (1, 2, 3)
    d = base_dict()
    d["cluster"]["first_voters"] = [3, 1, 7]
    cfg = load(d)
    assert cfg.first_voters == (1, 3, 7) and cfg.first_configuration == (1, 3, 7) and cfg.members == (1, 2, 3)
    assert load(cfg.to_dict()).first_voters == (1, 3, 7)
    for bad in ([], [1, 1], [0], ["1"], [True], 3, [1 << 20]):
        d["cluster"]["first_voters"] = bad
        with pytest.raises(ConfigError, match=r"cluster\.first_voters"):
            load(d)


def test_metrics_port_is_optional_and_zero_means_off():
    d = base_dict()
    for n in d["cluster"]["nodes"]:
        del n["metrics_port"]
    d["cluster"]["nodes"][1]["metrics_port"] = 0
    cfg = load(d)
    assert all(n.metrics_port == 0 for n in cfg.nodes)
    assert cfg.me.metrics_address(0) is None


def test_same_ports_on_different_hosts_are_fine():
    d = base_dict(nodes=2)
    a, b = d["cluster"]["nodes"]
    b.update(host="10.0.0.2", peer_port=a["peer_port"], client_port=a["client_port"],
             metrics_port=a["metrics_port"])
    assert load(d).nodes[1].peer_port == a["peer_port"]


# ------------------------------------------------------------------------------------------ broken files


def _set(path, value):
    def edit(d):
        *parents, last = path
        t = d
        for p in parents:
            t = t[p]
        t[last] = value
    return edit


def _delete(path):
    def edit(d):
        *parents, last = path
        t = d
        for p in parents:
            t = t[p]
        del t[last]
    return edit


def _node(i, **changes):
    def edit(d):
        d["cluster"]["nodes"][i].update(changes)
    return edit


def _many_nodes(n):
    def edit(d):
        d["cluster"]["nodes"] = [{"id": i, "host": "10.0.0.%d" % i, "peer_port": 1000, "client_port": 2000}
                                 for i in range(1, n + 1)]
    return edit


BROKEN = [
    # (edit, dotted field, fragment of the message)
    (_set(("cluster", "workers"), 0), "cluster.workers", "must be an integer >= 1, got 0"),
    (_set(("cluster", "workers"), 65), "cluster.workers", "<= 64"),
    (_set(("cluster", "workers"), "2"), "cluster.workers", "'2' (string)"),
    (_set(("cluster", "workers"), True), "cluster.workers", "(boolean)"),
    (_set(("cluster", "workers"), 2.0), "cluster.workers", "(float)"),
    (_delete(("cluster", "workers")), "cluster.workers", "required key is missing"),
    (_set(("cluster", "id"), 0), "cluster.id", ">= 1"),
    (_set(("cluster", "id"), -5), "cluster.id", ">= 1"),
    (_set(("cluster", "id"), 1 << 64), "cluster.id", "<= 18446744073709551615"),
    (_delete(("cluster", "id")), "cluster.id", "missing"),
    (_set(("cluster", "groups"), 0), "cluster.groups", ">= 1"),
    (_set(("cluster", "groups"), (1 << 32) + 1), "cluster.groups", "<="),
    (_delete(("cluster", "keys_dir")), "cluster.keys_dir", "missing"),
    (_set(("cluster", "keys_dir"), 5), "cluster.keys_dir", "must be a string"),
    (_set(("cluster", "keys_dir"), "no/such/keys"), "cluster.keys_dir", "not a directory"),
    (_set(("cluster",), 5), "cluster", "must be a table"),
    (_delete(("cluster",)), "cluster", "required table is missing"),
    (_delete(("node",)), "node", "required table is missing"),
    (_delete(("cluster", "nodes")), "cluster.nodes", "missing"),
    (_set(("cluster", "nodes"), []), "cluster.nodes", "at least one node"),
    (_set(("cluster", "nodes"), {"id": 1}), "cluster.nodes", "array of tables"),
    (_set(("cluster", "nodes"), [1, 2]), "cluster.nodes", "array of tables"),
    (_many_nodes(64), "cluster.nodes", "at most 63"),
    (_node(1, id=1), "cluster.nodes[1].id", "already used by cluster.nodes[0]"),
    (_node(2, id=0), "cluster.nodes[2].id", ">= 1"),
    (_node(2, id=65535), "cluster.nodes[2].id", "<= 65534"),
    (_node(0, host=""), "cluster.nodes[0].host", "must not be empty"),
    (_node(0, host="*"), "cluster.nodes[0].host", "wildcard"),
    (_node(0, host="0.0.0.0"), "cluster.nodes[0].host", "wildcard"),
    (_node(0, host="a host"), "cluster.nodes[0].host", "host name or IP address"),
    (_node(0, host="tcp://h"), "cluster.nodes[0].host", "host name or IP address"),
    (_node(0, host="h:47000"), "cluster.nodes[0].host", "ports go in"),
    (_node(0, host=17), "cluster.nodes[0].host", "must be a string"),
    (_node(1, peer_port=0), "cluster.nodes[1].peer_port", "1..65535"),
    (_node(1, peer_port=70000), "cluster.nodes[1].peer_port", "1..65535"),
    (_node(1, peer_port=65535), "cluster.nodes[1].peer_port", "above 65535"),
    (_node(1, client_port="x"), "cluster.nodes[1].client_port", "port number"),
    (_node(1, metrics_port=-1), "cluster.nodes[1].metrics_port", "or 0 (off)"),
    (_delete(("cluster", "nodes", 1, "client_port")), "cluster.nodes[1].client_port", "missing"),
    # overlapping listeners: worker 1 of node 1 uses peer_port + 1
    (_node(1, peer_port=47301), "cluster.nodes[1].peer_port", "overlap cluster.nodes[0].peer_port"),
    (_node(0, client_port=47301), "cluster.nodes[0].client_port", "overlap cluster.nodes[0].peer_port"),
    (_node(2, metrics_port=47799), "cluster.nodes[2].metrics_port", "overlap cluster.nodes[1].metrics_port"),
    (_node(1, host="localhost", peer_port=47300), "cluster.nodes[1].peer_port", "overlap"),
    (_set(("node", "id"), 9), "node.id", "not one of cluster.nodes"),
    (_set(("node", "id"), "1"), "node.id", "must be an integer"),
    (_delete(("node", "data_dir")), "node.data_dir", "missing"),
    (_set(("node", "data_dir"), ""), "node.data_dir", "must not be empty"),
    (_set(("node", "data_dir"), 3), "node.data_dir", "must be a string"),
    (_set(("paxos",), {"window": 0}), "paxos.window", ">= 1"),
    (_set(("paxos",), {"window": 9}), "paxos.window", "9 is more than cluster.alpha (8)"),
    (_set(("cluster", "alpha"), 0), "cluster.alpha", ">= 1"),
    (_set(("cluster", "alpha"), 1 << 17), "cluster.alpha", "<= 65536"),
    (_set(("cluster", "alpha"), True), "cluster.alpha", "must be an integer"),
    (_set(("paxos",), {"max_batch_count": 0}), "paxos.max_batch_count", ">= 1"),
    (_set(("paxos",), {"max_batch_bytes": 0}), "paxos.max_batch_bytes", ">= 1"),
    (_set(("paxos",), {"max_value_bytes": -1}), "paxos.max_value_bytes", ">= 1"),
    (_set(("paxos",), {"tick_ms": 0}), "paxos.tick_ms", ">= 1"),
    (_set(("paxos",), {"lease_ticks": 0}), "paxos.lease_ticks", ">= 1"),
    (_set(("paxos",), {"lease_margin": 0}), "paxos.lease_margin", "0 < lease_margin < 1"),
    (_set(("paxos",), {"lease_margin": 1.0}), "paxos.lease_margin", "0 < lease_margin < 1"),
    (_set(("paxos",), {"lease_margin": -0.1}), "paxos.lease_margin", "0 < lease_margin < 1"),
    (_set(("paxos",), {"lease_margin": math.nan}), "paxos.lease_margin", "0 < lease_margin < 1"),
    (_set(("paxos",), {"lease_margin": "0.3"}), "paxos.lease_margin", "(string)"),
    (_set(("paxos",), {"proposal_timeout_ticks": 0}), "paxos.proposal_timeout_ticks", ">= 1"),
    (_set(("paxos",), 8), "paxos", "must be a table"),
    (_set(("storage",), {"durability": "fsync"}), "storage.durability", "'sync', 'unsafe-no-sync'"),
    (_set(("storage",), {"durability": 1}), "storage.durability", "must be a string"),
    (_set(("limits",), {"max_pending": 0}), "limits.max_pending", ">= 1"),
    (_set(("limits",), {"max_request_timeout_ms": 0}), "limits.max_request_timeout_ms", ">= 1"),
    (_set(("limits",), {"max_request_timeout_ms": 1 << 32}), "limits.max_request_timeout_ms", "<= 4294967295"),
    (_set(("limits",), {"max_request_timeout_ms": 1.5}), "limits.max_request_timeout_ms", "must be an integer"),
    (_set(("limits",), {"max_frame_bytes": 1 << 20}), "limits.max_frame_bytes", "one full instance"),
    (_set(("limits",), {"max_frame_bytes": 1 << 32}), "limits.max_frame_bytes", "<= 4294967295"),
    # typos: unknown keys in every table
    (_set(("clsuter",), {}), "clsuter", "did you mean 'cluster'"),
    (_set(("cluster", "wokers"), 2), "cluster.wokers", "did you mean 'workers'"),
    (_node(2, peer_prot=1), "cluster.nodes[2].peer_prot", "did you mean 'peer_port'"),
    (_set(("node", "data_dri"), "x"), "node.data_dri", "unknown key"),
    (_set(("paxos",), {"windw": 4}), "paxos.windw", "did you mean 'window'"),
    (_set(("storage",), {"durabilty": "sync"}), "storage.durabilty", "unknown key"),
    (_set(("limits",), {"max_pendng": 1}), "limits.max_pendng", "unknown key"),
]


@pytest.mark.parametrize("edit,dotted,fragment", BROKEN, ids=["%d-%s" % (i, b[1]) for i, b in enumerate(BROKEN)])
def test_each_problem_names_its_field(edit, dotted, fragment, tmp_path):
    d = base_dict()
    edit(d)
    with pytest.raises(ConfigError) as e:
        load(d, base=str(tmp_path), path="node1.toml")
    message = str(e.value)
    assert message.startswith("node1.toml: %s: " % dotted), message
    assert fragment in message, message


def test_message_format_of_a_loaded_file(tmp_path):
    d = base_dict()
    d["cluster"]["workers"] = 0
    path = tmp_path / "node1.toml"
    path.write_text(tomli_w.dumps(d))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == "%s: cluster.workers: must be an integer >= 1, got 0" % path


@pytest.mark.parametrize("text,fragment", [
    ("[cluster\nid = 1\n", "not valid TOML"),
    ("[cluster]\nid = 1\nid = 2\n", "not valid TOML"),
    (b"\xff\xfe[cluster]", "not valid TOML"),
])
def test_malformed_toml(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(str(path) + ": " + fragment)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


# ------------------------------------------------------------------------------------------ sharding


@pytest.mark.parametrize("workers", [1, 2, 3, 5, 16])
@pytest.mark.parametrize("groups", [1, 7, 16])
def test_every_group_is_hosted_by_exactly_one_worker(workers, groups):
    d = base_dict(workers=workers)
    d["cluster"]["groups"] = groups
    cfg = load(d)
    owners = {}
    for w in range(workers):
        cc = cfg.core_config(w)
        assert (cc.node_id, cc.members) == (1, (1, 2, 3))
        assert (cc.group_offset, cc.group_stride) == (w, workers)
        assert cc.n_groups == max(1, len(cfg.worker_groups(w)))
        hosted = [cc.group_offset + k * cc.group_stride for k in range(cc.n_groups)]
        start = [g for g in hosted if g < groups]
        assert start == cfg.worker_groups(w)
        for g in start:
            assert g not in owners
            owners[g] = w
            assert cfg.worker_of(g) == w == g % workers
    assert sorted(owners) == list(range(groups))


def test_core_config_copies_the_protocol_settings_and_the_engine_hosts_the_groups():
    d = base_dict(workers=3)
    d["paxos"] = {"window": 4, "max_batch_count": 9, "max_batch_bytes": 999, "max_value_bytes": 99,
                  "proposal_timeout_ticks": 77}
    cfg = load(d)
    cc = cfg.core_config(2)
    for key, value in d["paxos"].items():
        assert getattr(cc, key) == value
    engine = Engine(cc, random.Random(1))
    assert engine.groups() == cfg.worker_groups(2) == [2, 5, 8, 11, 14]
    assert not engine.hosts(3)
    with pytest.raises(ValueError):
        cfg.core_config(3)
    with pytest.raises(ValueError):
        cfg.worker_of(-1)


# ------------------------------------------------------------------------------------------ write_cluster


def _all_ports(cfgs):
    return [(n.host, base + w) for n in cfgs[0].nodes for base in (n.peer_port, n.client_port, n.metrics_port)
            for w in range(cfgs[0].workers)]


def test_write_then_load_cluster(tmp_path):
    files = write_cluster(tmp_path / "c", nodes=3, workers=2, groups=16, cluster_id=99)
    assert [f.name for f in files] == ["node1.toml", "node2.toml", "node3.toml"]
    cfgs = load_cluster(tmp_path / "c")
    assert [c.node_id for c in cfgs] == [1, 2, 3]
    for c, f in zip(cfgs, files):
        assert c.path == f
        assert c.cluster_id == 99 and c.workers == 2 and c.groups == 16 and c.durability == "sync"
        assert c.data_dir == tmp_path / "c" / "data" / ("node%d" % c.node_id) and c.data_dir.is_dir()
        assert c.keys_dir == tmp_path / "c" / "keys"
        assert c.members == (1, 2, 3)
        assert c.nodes == cfgs[0].nodes
    # every port the cluster uses is distinct, in the random range, and free right now
    ports = _all_ports(cfgs)
    assert len(set(ports)) == len(ports) == 3 * 3 * 2
    base = min(p for _, p in ports)
    assert 10000 <= base < 32768
    for host, port in ports:
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        finally:
            s.close()


def test_curve_keys_present_with_right_modes(tmp_path):
    write_cluster(tmp_path, nodes=3, workers=1, groups=4)
    cfgs = load_cluster(tmp_path)
    keys = tmp_path / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for c in cfgs:
        n = c.node_id
        assert stat.S_IMODE((keys / ("node%d.key_secret" % n)).stat().st_mode) == 0o600
        assert stat.S_IMODE((keys / ("node%d.key" % n)).stat().st_mode) == 0o644
        public, secret = c.curve_public_key(n), c.curve_secret_key()
        assert len(public) == len(secret) == 40
        assert zmq.curve_public(secret) == public
        for other in cfgs:
            assert other.curve_public_key(n) == public
    assert len({c.curve_secret_key() for c in cfgs}) == 3


def test_no_curve_and_explicit_ports(tmp_path):
    files = write_cluster(tmp_path, nodes=2, workers=3, groups=5, curve=False, base_port=30000,
                          durability="unsafe-no-sync")
    assert not (tmp_path / "keys").exists()
    cfgs = [load_config(f) for f in files]
    assert cfgs[0].keys_dir is None and cfgs[0].curve_secret_key() is None
    assert cfgs[0].durability == "unsafe-no-sync"
    assert [(n.peer_port, n.client_port, n.metrics_port) for n in cfgs[0].nodes] == [
        (30000, 30100, 30200), (30300, 30400, 30500)]
    assert 0 < cfgs[0].cluster_id < 1 << 63


def test_write_cluster_refuses_existing_cluster_and_state(tmp_path):
    write_cluster(tmp_path / "a", nodes=1, curve=False)
    with pytest.raises(ConfigError, match="already holds node files"):
        write_cluster(tmp_path / "a", nodes=1, curve=False)
    (tmp_path / "b" / "data" / "node2").mkdir(parents=True)
    (tmp_path / "b" / "data" / "node2" / "LOG").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        write_cluster(tmp_path / "b", nodes=2, curve=False)
    (tmp_path / "c" / "keys").mkdir(parents=True)
    (tmp_path / "c" / "keys" / "node1.key").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        write_cluster(tmp_path / "c", nodes=1)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"nodes": 0}, "nodes: must be an integer >= 1"),
    ({"nodes": 64}, "nodes: must be an integer <= 63"),
    ({"workers": 0}, "workers: must be an integer >= 1"),
    ({"workers": 65}, "workers: must be an integer <= 64"),
    ({"groups": 0}, "groups: must be an integer >= 1"),
    ({"host": "*"}, "host: "),
    ({"base_port": 65000}, "base_port: must be an integer <="),
    ({"cluster_id": 0}, "cluster_id: must be an integer >= 1"),
    ({"durability": "fast"}, "durability: must be one of"),
])
def test_write_cluster_bad_arguments(tmp_path, kwargs, fragment):
    with pytest.raises(ConfigError) as e:
        write_cluster(tmp_path / "x", **kwargs)
    assert str(e.value).startswith(fragment)
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------ keys and cluster


@pytest.fixture
def cluster(tmp_path):
    write_cluster(tmp_path, nodes=3, workers=1, groups=2, base_port=40000)
    return tmp_path


def _keys_error(path):
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith("%s: cluster.keys_dir: " % path), str(e.value)
    return str(e.value)


def test_missing_public_key_of_a_member(cluster):
    (cluster / "keys" / "node2.key").unlink()
    assert "public key of node 2 is missing" in _keys_error(cluster / "node1.toml")


def test_missing_own_secret_key(cluster):
    (cluster / "keys" / "node1.key_secret").unlink()
    assert "secret key of this node (1) is missing" in _keys_error(cluster / "node1.toml")
    load_config(cluster / "node2.toml")          # other nodes do not need node 1's secret


def test_secret_key_readable_by_others(cluster):
    os.chmod(cluster / "keys" / "node3.key_secret", 0o644)
    assert "chmod 600" in _keys_error(cluster / "node3.toml")


def test_secret_key_of_another_node(cluster):
    (cluster / "keys" / "node1.key_secret").write_bytes((cluster / "keys" / "node2.key_secret").read_bytes())
    assert "different public keys" in _keys_error(cluster / "node1.toml")


def test_garbage_public_key(cluster):
    (cluster / "keys" / "node3.key").write_text("nothing here\n")
    assert "cannot read the public key of node 3" in _keys_error(cluster / "node1.toml")


def test_load_cluster_checks_agreement(cluster, tmp_path_factory):
    text = (cluster / "node2.toml").read_text()
    (cluster / "node2.toml").write_text(text.replace("workers = 1", "workers = 2"))
    with pytest.raises(ConfigError, match=r"node2.toml: cluster.workers: 2 differs from .*node1.toml"):
        load_cluster(cluster)
    (cluster / "node2.toml").write_text(text.replace("groups = 2", "groups = 3"))
    with pytest.raises(ConfigError, match=r"node2.toml: cluster.groups"):
        load_cluster(cluster)
    (cluster / "node2.toml").write_text(text.replace("peer_port = 40600", "peer_port = 40650"))
    with pytest.raises(ConfigError, match=r"node2.toml: cluster.nodes: differs"):
        load_cluster(cluster)
    cid = load_config(cluster / "node1.toml").cluster_id
    (cluster / "node2.toml").write_text(text.replace("id = %d" % cid, "id = 5"))
    with pytest.raises(ConfigError, match=r"node2.toml: cluster.id"):
        load_cluster(cluster)
    (cluster / "node2.toml").write_text(text)
    (cluster / "node9.toml").write_text((cluster / "node1.toml").read_text())
    with pytest.raises(ConfigError, match=r"node9.toml: node.id: 1 is also the node of .*node1.toml"):
        load_cluster(cluster)
    with pytest.raises(ConfigError, match="holds no node files"):
        load_cluster(tmp_path_factory.mktemp("empty"))
    with pytest.raises(ConfigError, match="not a directory"):
        load_cluster(cluster / "nope")


def test_load_cluster_sorts_by_node_id(tmp_path):
    write_cluster(tmp_path, nodes=3, curve=False)
    (tmp_path / "node1.toml").rename(tmp_path / "z.toml")
    assert [c.node_id for c in load_cluster(tmp_path)] == [1, 2, 3]


# ------------------------------------------------------------------------------------------ CLI


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "paxos_core", "init", *map(str, args)],
                          capture_output=True, text=True)


def test_cli_init_writes_a_loadable_cluster_and_refuses_an_existing_one(tmp_path):
    target = tmp_path / "cl"
    r = _cli("--nodes", 3, target, "--workers", 2, "--groups", 8, "--cluster-id", 77)
    assert r.returncode == 0, r.stderr
    cfgs = load_cluster(target)
    assert [c.node_id for c in cfgs] == [1, 2, 3]
    assert cfgs[0].cluster_id == 77 and cfgs[0].groups == 8 and cfgs[0].keys_dir is not None
    for c in cfgs:
        assert "paxos-core node %s" % (target / c.path.name) in r.stdout
    r = _cli("--nodes", 3, target)
    assert r.returncode == 2
    assert "already holds node files" in r.stderr and r.stdout == ""


def test_cli_init_bad_input_and_no_curve(tmp_path):
    r = _cli("--workers", 0, tmp_path / "x")
    assert r.returncode == 2 and "workers: must be an integer >= 1, got 0" in r.stderr
    assert not (tmp_path / "x").exists()
    r = _cli("--nodes", 1, "--no-curve", "--base-port", 31000, tmp_path / "y")
    assert r.returncode == 0, r.stderr
    (cfg,) = load_cluster(tmp_path / "y")
    assert cfg.keys_dir is None and cfg.me.peer_port == 31000


def test_base_dict_is_valid():
    # the broken variants above each change one thing of this dict
    d = base_dict()
    assert load(copy.deepcopy(d)).members == (1, 2, 3)


def test_alpha_bounds_the_window_and_init_writes_it(tmp_path):
    """cluster.alpha (issue 14): a membership change takes effect alpha instances after it is chosen, so no
    leader may run further ahead than alpha; every node's file must give the same alpha."""
    assert load(base_dict()).alpha == 8
    d = base_dict()
    d["cluster"]["alpha"] = 16
    d["paxos"] = {"window": 16}
    cfg = load(d)
    assert (cfg.alpha, cfg.window) == (16, 16)
    assert load(cfg.to_dict()).alpha == 16
    files = write_cluster(tmp_path / "c", nodes=3, curve=False, alpha=4)
    cfgs = [load_config(f) for f in files]
    assert {(c.alpha, c.window) for c in cfgs} == {(4, 4)}
    text = files[1].read_text()
    files[1].write_text(text.replace("alpha = 4", "alpha = 5"))
    with pytest.raises(ConfigError, match=r"cluster\.alpha: 5 differs from .* every node's file must agree"):
        load_cluster(tmp_path / "c")
    with pytest.raises(ConfigError, match="alpha"):
        write_cluster(tmp_path / "d", nodes=3, curve=False, alpha=0)

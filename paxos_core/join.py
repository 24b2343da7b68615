"""Joining a node to a running cluster: the join bundle (issue 14; docs/architecture.md, "Life cycle of a node").

1. On the new host, ``paxos-core keygen --dir FOLDER/keys`` makes its CURVE key pair (``new.key``,
   ``new.key_secret``); the secret key never leaves the host.
2. On any member, ``paxos-core member add --host H --peer-port P --client-port C --key-file new.key --out
   join.json`` adds the node to the membership table as a learner (it gets a new id) and writes the bundle:
   the new node's node file (the cluster's settings as this member has them, the table's nodes with their
   addresses, the new id), every node's public key, and the groups' first configuration.
3. On the new host, ``paxos-core node --join join.json --dir FOLDER`` writes the node's folder (its node file,
   the public keys, its data directory with the identity marker and the first configuration) and runs it. It
   catches up as a learner; ``member promote ID`` then makes it a voter.

Nothing secret is in the bundle. The first configuration matters: a group that never adopted an epoch votes
on it, and every node must compute the same voters for every instance, so it comes from the cluster, never
from a node file's member list (storage/identity.py's FIRST_VOTERS).
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from .errors import ConfigError

BUNDLE_VERSION = 1
NEW_KEY = "new"             # `paxos-core keygen` without --node: keys/new.key and keys/new.key_secret


def make_bundle(config, table: dict, node_id: int, first_voters) -> dict:
    """The bundle for new node `node_id`, from a member's NodeConfig and the membership table."""
    replaced = next((n.get("replaces") for n in table["nodes"] if n["id"] == node_id), 0)
    # Not the dead node the new one replaces: the new one takes its address (node files refuse two at one port).
    nodes = [n for n in table["nodes"] if n["role"] != "removed" and n["id"] != replaced]
    node_file = config.to_dict()
    node_file["cluster"]["nodes"] = [{"id": n["id"], "host": n["host"], "peer_port": n["peer_port"],
                                      "client_port": n["client_port"], "metrics_port": 0} for n in nodes]
    node_file["cluster"]["keys_dir"] = "keys" if config.keys_dir else ""
    node_file["node"] = {"id": node_id, "data_dir": "data"}
    # The groups' first configuration, in the node file too: a rebuild after this host's disk is lost (`node
    # --rebuild`) finds it there, not in the table's nodes of today that the file lists.
    node_file["cluster"]["first_voters"] = sorted(int(v) for v in first_voters)
    return {"version": BUNDLE_VERSION, "cluster_id": config.cluster_id, "node_id": node_id,
            "epoch": table["epoch"], "first_voters": list(first_voters), "node_file": node_file,
            "public_keys": {str(n["id"]): n["public_key"] for n in nodes if n["public_key"] != "-"}}


def write_bundle(path, bundle: dict) -> None:
    with open(path, "w") as f:
        json.dump(bundle, f, indent=1, sort_keys=True)
        f.write("\n")


def read_bundle(path) -> dict:
    try:
        with open(path) as f:
            bundle = json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError("%s: not a join bundle: %s" % (path, exc)) from None
    if not isinstance(bundle, dict) or bundle.get("version") != BUNDLE_VERSION:
        raise ConfigError("%s: not a bundle of version %d (from `paxos-core member add --out` or `member bundle`)"
                          % (path, BUNDLE_VERSION))
    for field in ("cluster_id", "node_id", "first_voters", "node_file", "public_keys"):
        if field not in bundle:
            raise ConfigError("%s: the join bundle lacks %r" % (path, field))
    return bundle


def _write_public_key(path, key: str) -> None:
    """A ZeroMQ certificate file holding a public key only (what zmq.auth.load_certificate reads)."""
    with open(path, "w") as f:
        f.write("#   paxos-core: a node's CURVE public key, from a join bundle\n"
                "metadata\ncurve\n    public-key = \"%s\"\n" % key)
    os.chmod(path, 0o644)


def install(bundle: dict, folder) -> Path:
    """Write the new node's folder from a bundle: ``node<ID>.toml``, ``keys/`` (its own key pair, made by
    keygen as new.key/new.key_secret, renamed to its id; every other node's public key), ``data/`` with the
    identity marker and the first configuration. Refuses a folder that holds a node already. Returns the
    node file's path."""
    from .storage import identity

    folder = Path(folder)
    node_id = int(bundle["node_id"])
    node_file = folder / ("node%d.toml" % node_id)
    data_dir = folder / "data"
    if node_file.exists() or identity.read_marker(data_dir) is not None:
        raise ConfigError("%s holds a node already; a node joins into a new folder" % folder)
    keys = folder / "keys"
    written, renamed = [], []
    try:
        return _install(bundle, folder, node_id, node_file, data_dir, keys, written, renamed)
    except BaseException:
        # A bundle or a key that does not fit: undo what was written, so the folder is as it was.
        for path in reversed(written):
            with contextlib.suppress(OSError):
                os.remove(path)
        for new_path, old_path in reversed(renamed):
            with contextlib.suppress(OSError):
                os.replace(new_path, old_path)
        raise


def _install(bundle, folder, node_id, node_file, data_dir, keys, written, renamed):
    import tomli_w

    from .config import load_config
    from .storage import identity

    if bundle["node_file"]["cluster"].get("keys_dir"):
        own_public, own_secret = keys / (NEW_KEY + ".key"), keys / (NEW_KEY + ".key_secret")
        if not own_secret.exists():
            raise ConfigError("%s: no key pair of this host: run `paxos-core keygen %s` here first (the secret "
                              "key never leaves this host)" % (own_secret, keys))
        import zmq.auth

        own = zmq.auth.load_certificate(own_public)[0].decode()
        if own != bundle["public_keys"].get(str(node_id)):
            raise ConfigError("%s is not the public key the cluster admitted for node %d (member add --key-file): "
                              "nothing was written" % (own_public, node_id))
        for other, key in bundle["public_keys"].items():
            if int(other) != node_id:
                path = keys / ("node%d.key" % int(other))
                _write_public_key(path, key)
                written.append(path)
        for stem_from, stem_to in ((own_public, keys / ("node%d.key" % node_id)),
                                   (own_secret, keys / ("node%d.key_secret" % node_id))):
            os.replace(stem_from, stem_to)
            renamed.append((stem_to, stem_from))
    folder.mkdir(parents=True, exist_ok=True)
    with open(node_file, "wb") as f:
        tomli_w.dump(bundle["node_file"], f)
    written.append(node_file)
    config = load_config(node_file)            # checks it all (and that this host's key is node ID's)
    os.makedirs(data_dir, exist_ok=True)
    identity.write_first_voters(data_dir, bundle["first_voters"])
    written.append(data_dir / identity.FIRST_VOTERS_NAME)
    identity.write_marker(data_dir, node_id, config.cluster_id)
    return node_file


def refresh(bundle: dict, config_path) -> tuple:
    """Bring the node file of a member whose data directory was lost up to the cluster's table before it
    rebuilds (``paxos-core node FILE --rebuild --bundle BUNDLE``, the bundle from ``paxos-core member bundle
    ID --out BUNDLE`` on any member). The nodes a file lists are the cluster's of the day it was written: if
    they were all replaced or removed since, the node knows no member to rebuild from, nor the keys of those
    who call it (nemesis seed 622: node 1, wiped after nodes 2 and 3 were replaced, refused every peer's
    connection and stayed repairing). With the node's data its table says who is who; without it the bundle
    does: the file's ``cluster.nodes`` become the table's, ``cluster.first_voters`` the groups' first
    configuration (the file's own list may no longer be it), and its keys directory gets every other member's
    public key. The rest of the file's settings (not its comments) and its own key pair stay as they are.

    Refused with ConfigError, nothing written, unless the bundle is this cluster's and this node's, the data
    directory lacks its identity marker (a node that has its data keeps its table), and this node's public key
    is the one the table holds. Returns (the nodes the file listed, the nodes it lists now)."""
    import tomli_w
    import tomllib

    from .config import load_config
    from .storage import identity

    config_path = Path(config_path)
    config = load_config(config_path)
    label = "%s (node %d of cluster %d)" % (config_path, config.node_id, config.cluster_id)
    if int(bundle["cluster_id"]) != config.cluster_id or int(bundle["node_id"]) != config.node_id:
        raise ConfigError("%s: the bundle is node %d's of cluster %d: nothing was written"
                          % (label, int(bundle["node_id"]), int(bundle["cluster_id"])))
    if identity.read_marker(config.data_dir) is not None:
        raise ConfigError("%s: its data directory %s has its identity marker: a node that has its data knows the "
                          "table, and --bundle is for a rebuild after the data directory was lost: nothing was "
                          "written" % (label, config.data_dir))
    nodes = bundle["node_file"]["cluster"]["nodes"]
    if config.node_id not in [int(n["id"]) for n in nodes]:
        raise ConfigError("%s: the bundle's table does not list this node: nothing was written" % label)
    keys = Path(config.keys_dir) if config.keys_dir is not None else None
    if keys is not None:
        import zmq.auth

        try:
            own = zmq.auth.load_certificate(keys / ("node%d.key" % config.node_id))[0].decode()
        except (OSError, ValueError) as exc:
            raise ConfigError("%s: this node's public key: %s: nothing was written" % (label, exc)) from None
        if own != bundle["public_keys"].get(str(config.node_id)):
            raise ConfigError("%s: %s is not the public key the table holds for node %d: nothing was written"
                              % (label, keys / ("node%d.key" % config.node_id), config.node_id))
        for other, key in bundle["public_keys"].items():
            path = keys / ("node%d.key" % int(other))
            if int(other) == config.node_id or not path.exists():
                continue
            try:
                held = zmq.auth.load_certificate(path)[0].decode()
            except (OSError, ValueError) as exc:
                raise ConfigError("%s: %s: %s: nothing was written" % (label, path, exc)) from None
            if held != key:
                raise ConfigError("%s: %s holds another key than the table's for node %s: nothing was written"
                                  % (label, path, other))
    with open(config_path, "rb") as f:
        node_file = tomllib.load(f)
    before = tuple(int(n["id"]) for n in node_file["cluster"]["nodes"])
    metrics = {int(n["id"]): n.get("metrics_port", 0) for n in node_file["cluster"]["nodes"]}
    node_file["cluster"]["nodes"] = [dict(n, metrics_port=metrics.get(int(n["id"]), n.get("metrics_port", 0)))
                                     for n in nodes]
    node_file["cluster"]["first_voters"] = sorted(int(v) for v in bundle["first_voters"])
    written = []
    staged = config_path.with_name(config_path.name + ".refreshing")
    try:
        if keys is not None:
            for other, key in bundle["public_keys"].items():
                path = keys / ("node%d.key" % int(other))
                if int(other) != config.node_id and not path.exists():
                    _write_public_key(path, key)
                    written.append(path)
        with open(staged, "wb") as f:
            written.append(staged)
            tomli_w.dump(node_file, f)
            f.flush()
            os.fsync(f.fileno())
        load_config(staged)                    # checks it all before it takes the file's place
    except BaseException:
        for path in reversed(written):         # a bundle that does not fit: the folder is as it was
            with contextlib.suppress(OSError):
                os.remove(path)
        raise
    os.replace(staged, config_path)
    return before, tuple(int(n["id"]) for n in nodes)

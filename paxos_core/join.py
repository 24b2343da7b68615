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
        raise ConfigError("%s: not a join bundle of version %d (from `paxos-core member add --out`)"
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

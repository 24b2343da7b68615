"""A worker's peer set changes at run time (runtime/transport.py `set_peers`, for membership changes, issue
14): a node added is connected to and its key admitted, a node removed is cut off both ways, a node whose
address changed is reached at the new one, and a bad peer list changes nothing. Real ZeroMQ sockets with
CURVE keys on 127.0.0.1."""
import dataclasses
import socket

import pytest
import zmq

from paxos_core.config import load_cluster, write_cluster
from paxos_core.errors import ConfigError
from paxos_core.runtime.transport import PeerTransport
from paxos_core.wire.message import ACCEPT, Message

from cluster_harness import wait_for


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def four(tmp_path):
    write_cluster(tmp_path / "c", nodes=4, workers=1, groups=1, curve=True)
    configs = {cfg.node_id: cfg for cfg in load_cluster(tmp_path / "c")}
    contexts = []

    def transport(cfg):
        """A worker's transport in a context of its own, as in a worker process (one ZAP handler each)."""
        contexts.append(zmq.Context())
        return PeerTransport(contexts[-1], cfg, 0)

    transports = {}
    yield transport, configs, transports
    for t in transports.values():
        t.close()
    for ctx in contexts:
        ctx.destroy(linger=0)


def _keys(configs):
    return {n: configs[1].curve_public_key(n) for n in configs}


def _probe(value):
    return Message(ACCEPT, 0, 1, 1, 0, 0, 0, value)


def _arrives(sender, receiver, dest, value, got, timeout=10):
    def sent_and_seen():
        sender.send([(dest, _probe(value))])
        got.extend(receiver.receive())
        return any(m.value == value for m in got)
    wait_for(sent_and_seen, timeout, message="%r reached node %d" % (value, dest))


def test_peers_added_removed_and_moved_at_run_time(four):
    transport, configs, t = four
    keys = _keys(configs)
    nodes = configs[1].nodes
    # Node 1 starts knowing nodes 1-3 only (node 4 is new to it): its key is not admitted.
    t[1] = transport(dataclasses.replace(configs[1], nodes=tuple(n for n in nodes if n.id != 4)))
    t[4] = transport(configs[4])
    assert sorted(t[1].push) == [2, 3]

    def refused_from_4():
        got = []

        def refused():
            t[4].send([(1, _probe(b"from node 4"))])
            got.extend(t[1].receive())
            return t[1].zap.denied or t[1].rejected.get("UnknownSender")
        wait_for(refused, 10, message="node 4's frames refused (its key not admitted, or an unknown sender)")
        assert not [m for m in got if m.src == 4]

    refused_from_4()
    assert t[1].zap.denied, "a key node 1 never knew is refused by the handshake"

    # Node 4 joins node 1's peers: its key is admitted and both ways work.
    assert t[1].set_peers(nodes, keys) == ([4], [], [])
    _arrives(t[4], t[1], 1, b"4 to 1", [])
    _arrives(t[1], t[4], 4, b"1 to 4", [])

    # Node 4 leaves: nothing goes to it, nothing of it is taken in.
    assert t[1].set_peers([n for n in nodes if n.id != 4], keys) == ([], [4], [])
    before = t[1].sent_frames
    t[1].send([(4, _probe(b"to the removed node"))])
    assert t[1].sent_frames == before
    refused_from_4()
    assert 4 not in t[1].zap.members.values()

    # Node 2 moves to another port: node 1 reaches it there.
    port = _free_port()
    moved = [dataclasses.replace(n, peer_port=port) if n.id == 2 else n for n in nodes]
    t[2] = transport(dataclasses.replace(configs[2], nodes=tuple(moved)))
    assert t[1].set_peers(moved, keys) == ([4], [], [2])
    assert t[1].peer_at[2][0] == "tcp://127.0.0.1:%d" % port
    _arrives(t[1], t[2], 2, b"1 to the moved 2", [])
    assert t[1].set_peers(moved, keys) == ([], [], []), "the same list again changes nothing"


def test_a_bad_peer_list_is_refused_and_changes_nothing(four):
    transport, configs, t = four
    t[1] = transport(configs[1])
    keys = _keys(configs)
    nodes = configs[1].nodes
    before = dict(t[1].peer_at)
    with pytest.raises(ConfigError, match="no CURVE public key for node 3"):
        t[1].set_peers(nodes, {n: k for n, k in keys.items() if n != 3})
    with pytest.raises(ConfigError, match="node 2's public key must be 40 z85 characters"):
        t[1].set_peers(nodes, {**keys, 2: b"short"})
    assert t[1].peer_at == before and sorted(t[1].push) == [2, 3, 4]
    assert len(t[1].zap.members) == 4

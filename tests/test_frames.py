"""Bounded frames (issue 10, section 3): catch-up replies are cut to a byte budget, the transport splits frames
below max_frame_bytes, and no message a peer legitimately sends can make a worker raise while encoding."""
import os
import re

import pytest
import zmq

from paxos_core.config import load_cluster, write_cluster
from paxos_core.core.learner import chain_of
from paxos_core.runtime.transport import PeerTransport
from paxos_core.sim.loopback import LoopbackCluster
from paxos_core.statemachine import kv as kv_ops
from paxos_core.storage.records import CHAIN_RECORD, group_key
from paxos_core.wire.codec import decode_entries
from paxos_core.wire.message import ACCEPT, CATCHUP_REPLY, Message

from cluster_harness import LocalCluster, wait_for


# ---------------------------------------------------------------------------------------------- engine level


def _recording(cluster):
    """Every (src, dest, Message) the loopback cluster routes, from now on."""
    seen = []
    route = cluster._route

    def record(src, messages):
        seen.extend((src, dest, msg) for dest, msg in messages)
        route(src, messages)

    cluster._route = record
    return seen


def _lagging_catch_up(budget, value_bytes, count, drop_chain_records=()):
    cluster = LoopbackCluster(nodes=3, groups=1, window=1, max_reply_bytes=budget)
    cluster.propose(1, 0, b"first")
    cluster.crash(3)
    for k in range(count):
        cluster.propose(1, 0, (b"%05d" % k) * (value_bytes // 5))
    for instance in drop_chain_records:
        for node in (1, 2):
            cluster.stores[node].pop(group_key(CHAIN_RECORD, 0, instance), None)
    seen = _recording(cluster)
    cluster.restart(3)
    cluster.propose(1, 0, b"after")          # its Accept tells node 3 how far behind it is
    for _ in range(200):
        if cluster.engines[3].learned(0) == cluster.engines[1].learned(0):
            break
        cluster.tick()
    return cluster, [msg for _, dest, msg in seen if dest == 3 and msg.kind == CATCHUP_REPLY]


@pytest.mark.parametrize("budget,value_bytes", [(4096, 1000), (50_000, 3000), (1, 700)])
def test_lagging_engine_catches_up_in_replies_within_the_byte_budget(budget, value_bytes):
    count = 300
    cluster, replies = _lagging_catch_up(budget, value_bytes, count)
    total = count * value_bytes
    assert total > 5 * budget
    assert cluster.engines[3].learned(0) == cluster.engines[1].learned(0)
    values = [v for _, _, v in cluster.chosen[1]]
    assert cluster.engines[3].learned(0)[1] == chain_of(values)
    assert len(replies) > 1
    for msg in replies:
        entries = decode_entries(msg.value)
        # Within the budget, or one value alone when a single value is larger than the budget.
        assert len(msg.value) <= budget or len(entries) == 1, (len(msg.value), len(entries))
        assert msg.mark == msg.instance + len(entries)
    assert cluster.engines[3].counters_dict()["catchup_rejected"] == 0


def test_cut_reply_without_the_chain_record_below_it_walks_back_to_an_earlier_one():
    # The CHAIN records at 64 and 128 are gone on the servers: the chain at a cut is carried from 0.
    cluster, replies = _lagging_catch_up(4096, 1000, 200, drop_chain_records=(64, 128))
    assert cluster.engines[3].learned(0) == cluster.engines[1].learned(0)
    assert max(len(msg.value) for msg in replies) <= 4096
    assert cluster.engines[3].counters_dict()["catchup_rejected"] == 0


def test_unbounded_replies_are_what_the_budget_prevents():
    """The same catch-up without a budget sends replies far above it: the test above can see the bug."""
    cluster, replies = _lagging_catch_up(None, 1000, 300)
    assert cluster.engines[3].learned(0) == cluster.engines[1].learned(0)
    assert max(len(msg.value) for msg in replies) > 50 * 4096


# ---------------------------------------------------------------------------------------------- transport


@pytest.fixture
def transports(tmp_path):
    """Node 1's and node 2's worker-0 transports of a 2-node cluster with CURVE keys, max_frame_bytes small."""
    write_cluster(tmp_path / "c", nodes=2, workers=1, groups=1, curve=True, base_port=None)
    for path in (tmp_path / "c").glob("*.toml"):
        text = path.read_text()
        text = re.sub(r"max_frame_bytes = \d+", "max_frame_bytes = 262144", text)
        text = re.sub(r"max_batch_bytes = \d+", "max_batch_bytes = 65536", text)
        text = re.sub(r"max_value_bytes = \d+", "max_value_bytes = 65536", text)
        text = re.sub(r"max_batch_count = \d+", "max_batch_count = 16", text)
        path.write_text(text)
    cfg1, cfg2 = load_cluster(tmp_path / "c")
    assert cfg1.max_frame_bytes == 262144
    ctx1, ctx2 = zmq.Context(), zmq.Context()          # one per worker process, as in a real cluster
    t1 = PeerTransport(ctx1, cfg1, 0)
    t2 = PeerTransport(ctx2, cfg2, 0)
    yield t1, t2
    t1.close()
    t2.close()
    ctx1.term()
    ctx2.term()


PROBE = b"probe"


def _receive_all(transport, want, timeout=10.0):
    """`want` messages that are not connection probes."""
    got = []

    def more():
        got.extend(m for m in transport.receive() if m.value != PROBE)
        return len(got) >= want

    wait_for(more, timeout, message="%d messages received" % want)
    return got


def connect(sender, receiver, dest):
    """Send a small message until one arrives (a PUSH socket drops what it sends before it is connected)."""
    probe = Message(ACCEPT, 0, 0, 1, 0, 0, 0, PROBE)
    wait_for(lambda: sender.send([(dest, probe)]) or receiver.receive(), 10, message="the peers connected")


def test_transport_splits_frames_below_max_frame_bytes_and_drops_what_fits_no_frame(transports):
    t1, t2 = transports
    limit = t1.max_frame_bytes
    big = [(2, Message(ACCEPT, 0, k, 1, 0, 0, 0, os.urandom(60_000))) for k in range(40)]   # ~9x the limit
    huge = (2, Message(ACCEPT, 0, 99, 1, 0, 0, 0, b"x" * (limit + 1)))      # fits no frame at all
    connect(t1, t2, 2)
    sent = t1.sent_frames
    t1.send(big + [huge])             # must not raise FrameTooLarge
    got = _receive_all(t2, len(big))
    assert [m.instance for m in got] == [k for k in range(40)]
    assert [m.value for m in got] == [m.value for _, m in big]
    assert t1.sent_frames - sent >= 9           # split: each frame at most half the limit
    assert t1.oversize_messages == 1
    assert t2.rejected == {}                    # no frame the receiver refused (FrameTooLarge)


def test_a_message_longer_than_any_frame_is_refused_by_the_socket_before_it_is_buffered(transports):
    """A member's socket sends one 4 MB message (16x max_frame_bytes): ZeroMQ drops it (and that connection)
    before the transport ever holds it; frames from the real peer still arrive."""
    t1, t2 = transports
    cfg1 = t1.config
    ctx = zmq.Context()
    rogue = ctx.socket(zmq.PUSH)
    rogue.linger = 0
    rogue.curve_serverkey = cfg1.curve_public_key(2)
    rogue.curve_publickey = cfg1.curve_public_key(1)
    rogue.curve_secretkey = cfg1.curve_secret_key()
    try:
        rogue.connect(cfg1.peers[0].peer_endpoint(0))
        rogue.send(os.urandom(16 * t2.max_frame_bytes))
        connect(t1, t2, 2)
        t1.send([(2, Message(ACCEPT, 0, 7, 1, 0, 0, 0, b"after"))])
        got = _receive_all(t2, 1)
        assert [m.value for m in got] == [b"after"]
        assert t2.rejected == {}            # the big message never reached the decoder
    finally:
        rogue.close()
        ctx.term()


# ---------------------------------------------------------------------------------------------- real cluster


def test_lagging_node_catches_up_on_several_max_frame_bytes_of_values(tmp_path):
    """A node that missed values totalling ~8x max_frame_bytes catches up; no worker dies doing it."""
    paxos = {"max_batch_count": 16, "max_batch_bytes": 65536, "max_value_bytes": 65536}
    cluster = LocalCluster(tmp_path, nodes=3, workers=1, groups=1, paxos=paxos,
                           limits={"max_frame_bytes": 262144})
    try:
        kv = cluster.kv(prefer=1)
        kv.put(b"k-first", b"x")
        pids = {n: cluster.worker_pids(n) for n in (1, 2)}
        wait_for(lambda: cluster.converged(), 15, message="all nodes applied the first write")
        cluster.stop(3)
        value = os.urandom(50_000)
        for k in range(42):                      # ~2.1 MB: 8x max_frame_bytes
            assert kv.put(b"k%02d" % k, value) == (kv_ops.OK, None)
        cluster.start(3)
        kv.put(b"k-last", b"y")
        wait_for(lambda: cluster.converged(), 60, message="node 3 caught up")
        client = cluster.client(prefer=3)
        for k in (0, 20, 41):
            raw = client.read(0, kv_ops.encode_get(b"k%02d" % k), mode="stale", node=3)
            assert kv_ops.decode_result(raw) == (kv_ops.OK, value)
        # No worker was restarted (a FrameTooLarge raised while encoding used to kill the serving worker),
        # nothing was refused as too large, and no traceback is in any node's log.
        assert {n: cluster.worker_pids(n) for n in (1, 2)} == pids
        for node in cluster.node_ids:
            transport = cluster.worker_status(node, 0)["transport"]
            assert "FrameTooLarge" not in transport["rejected"], transport
            assert transport["oversize_messages"] == 0
        for path in cluster.logs.iterdir():
            assert "Traceback" not in path.read_text(errors="replace"), path
    finally:
        cluster.close()

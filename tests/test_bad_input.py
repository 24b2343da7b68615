"""Bad input on the client side and on every port of a live cluster: a clear error, no crash, nothing changed.

* Client and KV arguments are checked in the caller's thread: a bad one fails its own call (TypeError or
  ValueError) and nothing else; whatever goes wrong in the client's I/O thread ends requests in Timeout only
  (their outcome is unknown), never in a plain PaxosError.
* Garbage to each worker's client, peer and metrics port of a running 3-node cluster (raw TCP bytes, a ZMTP
  message declaring a huge length, undecodable requests, frames of another cluster, with a bad checksum, a
  huge body length, truncated, from keys that are not the cluster's): afterwards every process is the same
  one, alive, the cluster serves, and nothing changed (a key written before reads the same, every node
  hosts the same groups). That each kind of frame reached the worker is checked in its status counters.
"""
import random
import socket
import struct
import time
import urllib.request

import pytest
import zmq
import zmq.auth

from paxos_core import errors
from paxos_core.client import Client
from paxos_core.kv import KV
from paxos_core.wire import codec, rpc
from paxos_core.wire.message import Message

from cluster_harness import LocalCluster, alive, free_base_port, wait_for


def _idle_client(**kw):
    """A Client of a 'cluster' nobody listens on: requests stay in flight until their timeout."""
    port = free_base_port(1, 1)
    return Client({1: ["tcp://127.0.0.1:%d" % port]}, 1, 4, **kw)


# ---------------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("call", [
    lambda kv: kv.put(b"k", 12),
    lambda kv: kv.put(b"k", "text"),
    lambda kv: kv.put(12, b"v"),
    lambda kv: kv.put("key", b"v"),
    lambda kv: kv.cas(b"k", 12, b"v"),
    lambda kv: kv.cas(b"k", b"v", 3),
    lambda kv: kv.get(7),
    lambda kv: kv.delete(None),
    lambda kv: kv.client.propose(0, 12),
    lambda kv: kv.client.propose(0, "text"),
    lambda kv: kv.client.propose_batch(0, [b"a", 5]),
    lambda kv: kv.client.propose_batch(0, b"abc"),
    lambda kv: kv.client.read(0, 12),
    lambda kv: kv.client.read_stale(0, "q"),
    lambda kv: kv.client.propose(0, b"x", request_id=("a", 1)),
    lambda kv: kv.client.propose("0", b"x"),
    lambda kv: kv.client.propose(0, b"x", timeout="soon"),
])
def test_values_that_are_not_bytes_are_type_errors(call):
    """Issue 10: kv.put(key, 12) stored 12 zero bytes. Anything that is not bytes, bytearray or memoryview is
    a TypeError of the call itself."""
    with _idle_client() as client:
        with pytest.raises(TypeError):
            call(KV(client, 4))


@pytest.mark.parametrize("call", [
    lambda c: c.propose(-1, b"x"),
    lambda c: c.propose(1 << 32, b"x"),
    lambda c: c.propose(0, b"x", node=9),
    lambda c: c.propose(0, b"x", timeout=-1),
    lambda c: c.propose(0, b"x", timeout=float("nan")),
    lambda c: c.propose(0, b"x", request_id=(1 << 64, 1)),
    lambda c: c.read(0, b"q", mode="fast"),
    lambda c: c.status(node=9),
    lambda c: c.group_info(1 << 40, 1),
])
def test_values_out_of_range_are_value_errors(call):
    with _idle_client() as client:
        with pytest.raises(ValueError):
            call(client)


def test_bytes_like_values_are_taken_as_their_bytes():
    from paxos_core.statemachine import kv as kv_ops

    assert kv_ops.encode_put(bytearray(b"k"), memoryview(b"v")) == kv_ops.encode_put(b"k", b"v")


def test_a_bad_argument_fails_only_its_own_call():
    """Issue 10: one bad argument failed every request in flight with a plain PaxosError (the I/O thread hit
    it). Now it fails in the caller's thread, and the requests in flight go on (here: to their Timeout, as
    nobody answers)."""
    with _idle_client() as client:
        in_flight = [client.propose_future(0, b"op", timeout=1.0) for _ in range(3)]
        with pytest.raises(TypeError):
            client.propose(0, 12)
        with pytest.raises(ValueError):
            client.propose(0, b"x", node=42)
        for f in in_flight:
            with pytest.raises(errors.Timeout) as info:
                f.result(timeout=30)
            assert info.value.request_id is not None


def test_a_bug_sending_one_request_ends_that_request_in_timeout():
    """A bug met while sending one request (planted: routing raises once) ends that request only, in Timeout
    (its outcome is unknown: an earlier attempt may have been proposed), with its request id."""
    with _idle_client(attempt_timeout=60) as client:
        first = client.propose_future(0, b"op", timeout=3.0)
        wait_for(lambda: client._pending or client._retry, 10, message="the first request is in flight")
        pick = client._pick_node
        calls = []

        def broken(req):
            if not calls:
                calls.append(req)
                raise RuntimeError("planted routing bug")
            return pick(req)

        client._pick_node = broken
        second = client.propose_future(0, b"op2", timeout=30)
        with pytest.raises(errors.Timeout) as info:
            second.result(timeout=30)
        assert info.value.request_id is not None and "outcome" in str(info.value)
        assert not first.done() or isinstance(first.exception(), errors.Timeout)
        with pytest.raises(errors.Timeout):
            first.result(timeout=30)                       # its own deadline, nobody answers


def test_an_io_thread_error_ends_requests_in_timeout_only():
    """A bug in the I/O thread's loop (planted: its poll raises once) must not fail the requests in flight
    with anything but Timeout, which says that their outcome is unknown, with the request id to retry with."""
    with _idle_client(attempt_timeout=60) as client:
        in_flight = [client.propose_future(0, b"op%d" % k, timeout=30) for k in range(3)]
        wait_for(lambda: len(client._pending) + len(client._retry) == 3, 10, message="the requests are in flight")
        poll = client._poller.poll
        calls = []

        def broken(timeout=None):
            if not calls:
                calls.append(1)
                raise RuntimeError("planted I/O thread bug")
            return poll(timeout)

        client._poller.poll = broken
        client.propose_future(0, b"wake", timeout=30)
        for f in in_flight:
            with pytest.raises(errors.PaxosError) as info:
                f.result(timeout=30)
            assert isinstance(info.value, errors.Timeout), repr(info.value)
            assert info.value.request_id is not None and "outcome" in str(info.value)


def test_an_undecodable_reply_is_not_an_answer(tmp_path):
    """A reply the client cannot decode (a broken or hostile worker) counts as no answer: the request goes on
    (here to its Timeout), and the I/O thread is not disturbed (another request still completes)."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        with Client({1: ["tcp://127.0.0.1:%d" % port]}, 1, 4, attempt_timeout=60) as client:
            f = client.propose_future(0, b"op", timeout=2.0)
            assert router.poll(10000)
            identity, frame = router.recv_multipart()
            req_id = rpc.decode_request(frame)[1]
            router.send_multipart([identity, rpc.reply(rpc.OK, req_id, b"\x01")])          # 1 byte, not 8
            with pytest.raises(errors.Timeout):
                f.result(timeout=30)
            g = client.read_future(0, b"q", mode="stale", timeout=30.0)
            while not g.done():
                if router.poll(100):
                    identity, frame = router.recv_multipart()
                    request = rpc.decode_request(frame)
                    if request[0] == rpc.READ:
                        router.send_multipart([identity, rpc.reply(rpc.OK, request[1], b"answer")])
            assert g.result() == b"answer"
    finally:
        router.close(0)
        ctx.term()


# ---------------------------------------------------------------------------------------------- live cluster
def _zmtp_huge_message():
    """A ZMTP 3.0 NULL handshake (DEALER), then a message declaring 2**40 bytes (and none following)."""
    greeting = b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + bytes(31)
    prop = bytes([11]) + b"Socket-Type" + struct.pack(">I", 6) + b"DEALER"
    ready = b"\x05READY" + prop
    return greeting + b"\x04" + bytes([len(ready)]) + ready + b"\x02" + struct.pack(">Q", 1 << 40) + b"x" * 64


def _raw_tcp(port, payloads):
    for payload in payloads:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(payload)
            time.sleep(0.05)
        except OSError:
            pass                      # the server may close first: that is a refusal
        finally:
            s.close()


def _client_garbage(rng):
    """Client requests every worker must refuse (never one that could change anything)."""
    out = [rng.randbytes(rng.randrange(1, 200)) for _ in range(20)]
    out = [bytes([rng.choice((0, 9, 200))]) + f[1:] for f in out]                  # no valid op
    out += [rpc.propose_request(1, 0, 100, 5, 1, b"x")[:n] for n in (1, 8, 9, 20, 40)]
    batch = rpc.propose_batch_request(2, 0, 100, 5, 1, [b"ab"])
    out.append(batch[:41] + struct.pack("<I", 0xFFFFFFFF) + batch[45:])            # 4 billion operations
    out.append(rpc.simple_request(rpc.REMOVE_GROUP, 3, 1) + b"\x00")                # trailing bytes
    out.append(rpc.read_request(4, 0, 7, 100, b"q"))                                # unknown read mode
    return out


def _peer_garbage(cluster_id, node, rng):
    """Frames a worker's peer port must refuse, and the reason each is counted under."""
    msgs = [Message(kind=3, group=0, instance=1, ballot=(9 << 16) | 2, value=b"v")]
    good = codec.encode_frame(cluster_id, 2 if node != 2 else 3, node, msgs)
    flipped = bytearray(good)
    flipped[-1] ^= 1
    huge = bytearray(good)
    struct.pack_into("<I", huge, 20, 0xFFFFFFFF)
    return [
        (codec.encode_frame(cluster_id + 1, 2, node, msgs), "WrongCluster"),
        (bytes(flipped), "FrameChecksumError"),
        (good[:40], "FrameTruncated"),
        (bytes(huge), "FrameTooLarge"),
        (codec.encode_frame(cluster_id, 2, node + 7, msgs), "MalformedFrame"),      # addressed elsewhere
        (rng.randbytes(100), None),
        (b"", None),
    ]


def _groups(cluster, node):
    """What the node hosts: per worker its group count, and the ids of its groups."""
    rows = cluster.status(node)
    return ({(r["worker"], r["groups"]) for r in rows}, {g["group"] for r in rows for g in r["group_detail"]})


def test_garbage_on_every_port_changes_nothing(tmp_path):
    rng = random.Random(10)
    with LocalCluster(tmp_path, nodes=3, workers=2, groups=8) as cluster:
        kv = cluster.kv(prefer=1)
        kv.put(b"before", b"kept")
        pids = {n: (cluster.procs[n].pid, cluster.worker_pids(n)) for n in cluster.node_ids}
        groups = {n: _groups(cluster, n) for n in cluster.node_ids}
        cfg = cluster.config()
        keys = cfg.keys_dir
        member_public, member_secret = zmq.auth.load_certificate(keys / "node2.key_secret")
        ctx = zmq.Context()
        sockets = []
        try:
            for node in cfg.nodes:
                server_key = zmq.auth.load_certificate(keys / ("node%d.key" % node.id))[0]
                for w in range(cluster.workers):
                    ports = {"client": node.client_port + w, "peer": node.peer_port + w,
                             "metrics": node.metrics_port + w}
                    raw = [rng.randbytes(1024), b"\xff" + bytes(8) + b"\x7f", _zmtp_huge_message(),
                           b"GET /metrics HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nxx", b""]
                    for port in ports.values():
                        _raw_tcp(port, raw)
                    # Client port (ZeroMQ, as a client connects): requests that do not decode, or ask too much.
                    dealer = ctx.socket(zmq.DEALER)
                    sockets.append(dealer)
                    dealer.linger = 0
                    # With a member's key pair: administrative requests too reach the decoder (a client
                    # without the cluster's keys cannot connect; tests/test_auth.py).
                    dealer.curve_publickey, dealer.curve_secretkey = member_public, member_secret
                    dealer.curve_serverkey = server_key
                    dealer.connect("tcp://127.0.0.1:%d" % ports["client"])
                    # A group id of this worker's far above limits.max_group_id, and the system group's id (reserved:
                    # never added).
                    frames = _client_garbage(rng) + [rpc.add_group_request(99, 0xFFFFFFFC + w)[:13],
                                                     rpc.add_group_request(98, 0xFFFFFFFE)[:13]]
                    for frame in frames:
                        dealer.send(frame)
                    answers = []
                    deadline = time.monotonic() + 20
                    while len(answers) < len(frames) and time.monotonic() < deadline:
                        if dealer.poll(500):
                            status, req_id, body = rpc.decode_reply(dealer.recv())
                            inner = (rpc.split_reply_batch(body) if status == rpc.BATCH else
                                     [rpc.reply(status, req_id, body)])
                            answers.extend(rpc.decode_reply(f) for f in inner)
                    assert len(answers) == len(frames), "node %d worker %d: %d of %d requests answered" % (
                        node.id, w, len(answers), len(frames))
                    assert {s for s, _, _ in answers} == {rpc.BAD_REQUEST}, answers
                    assert any(r == 99 and b"max_group_id" in b for _, r, b in answers), answers
                    assert any(r == 98 and b"reserved" in b for _, r, b in answers), answers
                    # Peer port: frames from a member's key that a worker must refuse, and from strangers.
                    frames = _peer_garbage(cfg.cluster_id, node.id, rng)
                    push = ctx.socket(zmq.PUSH)
                    sockets.append(push)
                    push.linger = 0
                    push.sndtimeo = 10000
                    push.curve_publickey, push.curve_secretkey = member_public, member_secret
                    push.curve_serverkey = server_key
                    push.connect("tcp://127.0.0.1:%d" % ports["peer"])
                    for frame, _ in frames:
                        push.send(frame)
                    stranger = ctx.socket(zmq.PUSH)
                    sockets.append(stranger)
                    stranger.linger = 0
                    stranger.curve_publickey, stranger.curve_secretkey = zmq.curve_keypair()
                    stranger.curve_serverkey = server_key
                    stranger.connect("tcp://127.0.0.1:%d" % ports["peer"])
                    try:
                        stranger.send(frames[0][0], zmq.NOBLOCK)         # refused at the handshake (ZAP)
                    except zmq.Again:
                        pass
                    keyless = ctx.socket(zmq.PUSH)
                    sockets.append(keyless)
                    keyless.linger = 0
                    keyless.connect("tcp://127.0.0.1:%d" % ports["peer"])
                    expected = {reason for _, reason in frames if reason}

                    def refused(node=node.id, w=w, expected=expected):
                        row = cluster.worker_status(node, w)
                        return expected <= set(row["transport"]["rejected"]) and row["transport"]["auth_denied"]

                    wait_for(refused, 30, message="node %d worker %d counted every refused frame" % (node.id, w))
                    # Metrics port still serves.
                    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ports["metrics"], timeout=10) as r:
                        assert r.status == 200 and b"paxos" in r.read()
        finally:
            for s in sockets:
                s.close(0)
            ctx.term()

        # Every process is the one from before, alive; the cluster serves; nothing changed.
        for n in cluster.node_ids:
            assert alive(pids[n][0]) and cluster.procs[n].popen.poll() is None
            assert cluster.worker_pids(n) == pids[n][1]
            assert all(alive(p) for p in pids[n][1].values())
            assert _groups(cluster, n) == groups[n]
        for mode in ("linearizable", "lease"):
            assert kv.get(b"before", mode=mode) == b"kept"
        kv.put(b"after", b"ok")
        assert KV(cluster.client(prefer=3), cluster.groups).get(b"after", mode="linearizable") == b"ok"

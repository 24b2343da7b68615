"""Node-to-node transport of one worker: ZeroMQ PUSH/PULL, one packed frame per destination per cycle.

Topology: worker i of every node talks only to worker i of the other nodes (group g lives on worker
g % workers everywhere). Each worker binds one PULL socket on its node's `peer_port + i` and connects one
PUSH socket to each peer's worker i. ZeroMQ reconnects by itself after a peer restarts.

Queues are bounded: a PUSH socket holds at most `SEND_HWM` frames and sends never block; a frame that does
not fit (or has no live connection: ZMQ_IMMEDIATE) is dropped and counted. Paxos retransmits what matters.

With CURVE keys configured, the PULL socket is a CURVE server and a ZAP handler admits only the cluster
members' public keys: a process without the cluster's keys cannot deliver a frame (denials are counted).
Every frame also carries the cluster id and a crc32c; frames from another cluster or damaged ones are
refused and counted by reason.
"""
import errno
import logging
import threading

import zmq
from zmq.utils import z85

from ..errors import FrameError, StartError
from ..wire.codec import FrameEncoder, decode_frame

log = logging.getLogger("paxos_core.transport")

SEND_HWM = 2000
RECV_HWM = 20000
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"paxos-core"


def bind(sock, endpoint):
    """Bind `sock` to `endpoint`; StartError with one line ("address in use: 127.0.0.1:15167") if it cannot."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        address = endpoint.split("://", 1)[-1]
        if exc.errno == errno.EADDRINUSE:
            raise StartError("address in use: %s" % address) from None
        raise StartError("cannot listen on %s: %s" % (address, exc.strerror)) from None


class ZapHandler(threading.Thread):
    """Answers ZeroMQ's authentication requests: CURVE clients whose key is a cluster member's pass."""

    def __init__(self, ctx, allowed_public_keys):
        super().__init__(name="paxos-zap", daemon=True)
        self.allowed = {z85.decode(k) if len(k) == 40 else bytes(k) for k in allowed_public_keys}
        self.socket = ctx.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.bind(ZAP_ENDPOINT)
        self.accepted = 0
        self.denied = 0
        self._halt = threading.Event()

    def run(self):
        try:
            self._serve()
        finally:
            # This thread owns the socket: it must close it, or the context's term() waits for it forever.
            self.socket.close(0)

    def _serve(self):
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while not self._halt.is_set():
            try:
                if not poller.poll(100):
                    continue
                frames = self.socket.recv_multipart()
            except zmq.ZMQError:
                break
            version, request_id, domain, address, identity, mechanism = frames[:6]
            credentials = frames[6:]
            ok = mechanism == b"CURVE" and credentials and credentials[0] in self.allowed
            if ok:
                self.accepted += 1
                reply = [version, request_id, b"200", b"OK", b"member", b""]
            else:
                self.denied += 1
                log.warning("refused a %s connection from %s: key not in the cluster",
                            mechanism.decode(errors="replace"), address.decode(errors="replace"))
                reply = [version, request_id, b"400", b"not a cluster member", b"", b""]
            try:
                self.socket.send_multipart(reply)
            except zmq.ZMQError:
                break

    def stop(self):
        """Ask the thread to end and wait for it (it closes its socket), so that the context can terminate."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)


class PeerTransport:
    def __init__(self, ctx, config, worker):
        self.config = config
        self.worker = worker
        self.node_id = config.node_id
        self.cluster_id = config.cluster_id
        self.max_frame_bytes = config.max_frame_bytes
        self.max_value_bytes = config.max_frame_bytes
        self.sent_frames = 0
        self.sent_messages = 0
        self.dropped_frames = 0
        self.received_frames = 0
        self.rejected = {}            # reason -> frames refused
        self.zap = None
        self.push = {}
        self.encoders = {}
        secret = config.curve_secret_key()
        public = config.curve_public_key(self.node_id) if secret else None
        if secret:
            self.zap = ZapHandler(ctx, [config.curve_public_key(n) for n in config.members])
            self.zap.start()
        self.pull = ctx.socket(zmq.PULL)
        self.pull.rcvhwm = RECV_HWM
        self.pull.linger = 0
        if secret:
            self.pull.curve_server = True
            self.pull.curve_secretkey = secret
            self.pull.curve_publickey = public
            self.pull.zap_domain = ZAP_DOMAIN
        try:
            bind(self.pull, config.me.peer_endpoint(worker))
        except StartError:
            self.close()
            raise
        for peer in config.peers:
            sock = ctx.socket(zmq.PUSH)
            sock.sndhwm = SEND_HWM
            sock.immediate = True
            sock.linger = 0
            if secret:
                sock.curve_serverkey = config.curve_public_key(peer.id)
                sock.curve_publickey = public
                sock.curve_secretkey = secret
            sock.connect(peer.peer_endpoint(worker))
            self.push[peer.id] = sock
            self.encoders[peer.id] = FrameEncoder(self.cluster_id, self.node_id, peer.id, self.max_frame_bytes)

    def send(self, messages):
        """Pack [(dest, Message)] into one frame per destination and push them (never blocks)."""
        used = []
        for dest, msg in messages:
            enc = self.encoders.get(dest)
            if enc is None:
                continue
            if enc.count == 0:
                used.append(dest)
            enc.add(msg)
        for dest in used:
            enc = self.encoders[dest]
            count = enc.count
            frame = enc.finish()
            try:
                self.push[dest].send(frame, zmq.NOBLOCK)
                self.sent_frames += 1
                self.sent_messages += count
            except zmq.Again:
                self.dropped_frames += 1

    def receive(self, max_frames=4096):
        """Every message waiting (up to max_frames frames), decoded; bad frames are counted and skipped."""
        out = []
        pull = self.pull
        for _ in range(max_frames):
            try:
                frame = pull.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self.received_frames += 1
            try:
                sender, msgs = decode_frame(frame.buffer, self.cluster_id, self.node_id, self.max_frame_bytes,
                                            self.max_value_bytes)
            except FrameError as exc:
                reason = type(exc).__name__
                self.rejected[reason] = self.rejected.get(reason, 0) + 1
                if self.rejected[reason] in (1, 10, 100, 1000) or self.rejected[reason] % 10000 == 0:
                    log.warning("worker %d refused a frame (%s): %s [%d so far]", self.worker, reason, exc,
                                self.rejected[reason])
                continue
            if sender not in self.push:
                self.rejected["UnknownSender"] = self.rejected.get("UnknownSender", 0) + 1
                continue
            out.extend(msgs)
        return out

    def auth_denied(self):
        return self.zap.denied if self.zap else 0

    def close(self):
        if self.zap is not None:
            self.zap.stop()
        for sock in self.push.values():
            sock.close(0)
        self.pull.close(0)

"""Node-to-node transport of one worker: ZeroMQ PUSH/PULL, messages packed into bounded frames per destination.

Topology: worker i of every node talks only to worker i of the other nodes (group g lives on worker
g % workers everywhere). Each worker binds one PULL socket on its node's `peer_port + i` and connects one
PUSH socket to each peer's worker i. ZeroMQ reconnects by itself after a peer restarts.

Queues are bounded: a PUSH socket holds at most `SEND_HWM` frames and sends never block; a frame that does
not fit (or has no live connection: ZMQ_IMMEDIATE) is dropped and counted. Paxos retransmits what matters.

With CURVE keys configured, the PULL socket is a CURVE server and a ZAP handler admits only the cluster
members' public keys: a process without the cluster's keys cannot deliver a frame (denials are counted).
The handler also names the connection by the member the key belongs to (its ZAP user id is the node id), and
a frame whose header declares another sender is dropped (``ImpersonatedSender``): a member cannot speak as
another. Every frame also carries the cluster id and a crc32c; frames from another cluster or damaged ones
are refused and counted by reason. Without CURVE keys nothing is authenticated: the declared sender is
believed (the README says so; run such a cluster only on a trusted network).

Frames are bounded: messages to one peer are packed into frames of at most ``frame_target_bytes`` (half of
max_frame_bytes; a single bigger message still goes alone, as long as it fits max_frame_bytes), so no
legitimate batch of messages produces a frame the receiver refuses. A message too big for any frame is
dropped, counted (``oversize_messages``) and logged: a FrameTooLarge while encoding never leaves ``send``.
"""
import errno
import logging
import threading
import time

import zmq
from zmq.utils import z85

from ..errors import ConfigError, FrameError, FrameTooLarge, StartError
from ..wire.codec import FRAME_HEADER_SIZE, MESSAGE_HEADER_SIZE, FrameEncoder, decode_frame

log = logging.getLogger("paxos_core.transport")

SEND_HWM = 2000
# A socket that has not sent one frame since it was made, and could queue none for this long, is made again.
# ZeroMQ reconnects by itself after a connection breaks, but not after a handshake its peer refused (a ZAP
# denial is a protocol error that ends the session for good): a node that joins before its peers admit its key
# would otherwise never reach them, and nor would any node after a peer that refused it restarts with the right
# keys. A socket that did send is left alone (a full queue to a slow peer is not a refused handshake).
RECONNECT_STALLED_S = 2.0
RECV_HWM = 20000
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"paxos-core"                 # the peer sockets: members only, user id = the member's node id
CLIENT_ZAP_DOMAIN = b"paxos-core-client"  # the client sockets: any CURVE key, user id ADMIN_USER for members
ADMIN_USER = "admin"
CLIENT_USER = "client"


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
    """Answers ZeroMQ's authentication requests (one handler serves every CURVE socket of a context).

    Peer sockets (ZAP_DOMAIN): only a member's public key passes, and the connection's user id is that
    member's node id, so each received message says which member's key sent it. Client sockets
    (CLIENT_ZAP_DOMAIN): every CURVE client passes (the traffic is encrypted and the server authenticated),
    with user id ADMIN_USER when its key is a member's (it holds the cluster's credentials) and CLIENT_USER
    otherwise; administrative operations need ADMIN_USER."""

    def __init__(self, ctx, member_public_keys):
        """`member_public_keys`: {node id: public key (z85, 40 bytes, or raw 32 bytes)}."""
        super().__init__(name="paxos-zap", daemon=True)
        self.members = self._by_key(member_public_keys)
        self.socket = ctx.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.bind(ZAP_ENDPOINT)
        self.accepted = 0
        self.denied = 0
        self.clients = 0
        self._halt = threading.Event()

    @staticmethod
    def _by_key(member_public_keys):
        return {(z85.decode(k) if len(k) == 40 else bytes(k)): node for node, k in member_public_keys.items()}

    def set_members(self, member_public_keys):
        """Admit exactly these members' keys from now on (connections already admitted stay open: the
        transport closes those of a node that left). One assignment, so the handler's thread sees the old
        table or the new one, never a mix."""
        self.members = self._by_key(member_public_keys)

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
            key = credentials[0] if mechanism == b"CURVE" and credentials else None
            node = self.members.get(key) if key is not None else None
            if domain == CLIENT_ZAP_DOMAIN and key is not None:
                self.clients += 1
                user = ADMIN_USER if node is not None else CLIENT_USER
                reply = [version, request_id, b"200", b"OK", user.encode(), b""]
            elif domain == ZAP_DOMAIN and node is not None:
                self.accepted += 1
                reply = [version, request_id, b"200", b"OK", str(node).encode(), b""]
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
        self.oversize_messages = 0    # messages too big for any frame: dropped (a bug upstream; logged)
        # Frames to one peer are closed before they pass this body size: half the receiver's limit.
        self.frame_target_bytes = max(1, self.max_frame_bytes // 2)
        self.zap = None
        self.push = {}
        self.encoders = {}
        self.peer_at = {}             # node id -> (endpoint, its public key or None): what push[id] is connected to
        # node id -> the monotonic time of the first of its frames dropped in a row since one last left (None: a
        # new socket, nothing dropped yet); a peer absent has its frames leaving
        self.unproven = {}
        self.reconnects = 0           # sockets made again for a peer stalled RECONNECT_STALLED_S
        self.ctx = ctx
        secret = config.curve_secret_key()
        public = config.curve_public_key(self.node_id) if secret else None
        self.secret, self.public = secret, public
        if secret:
            self.zap = ZapHandler(ctx, {n: config.curve_public_key(n) for n in config.members})
            self.zap.start()
        self.pull = ctx.socket(zmq.PULL)
        self.pull.rcvhwm = RECV_HWM
        # ZeroMQ itself refuses a message longer than any frame we accept (it drops that connection): a
        # peer declaring a huge length never makes this process buffer it.
        self.pull.maxmsgsize = FRAME_HEADER_SIZE + self.max_frame_bytes
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
            self._connect(peer.id, peer.peer_endpoint(worker), config.curve_public_key(peer.id) if secret else None)

    def _connect(self, peer_id, endpoint, server_key):
        sock = self.ctx.socket(zmq.PUSH)
        sock.sndhwm = SEND_HWM
        sock.immediate = True
        sock.linger = 0
        if self.secret:
            sock.curve_serverkey = server_key
            sock.curve_publickey = self.public
            sock.curve_secretkey = self.secret
        sock.connect(endpoint)
        self.push[peer_id] = sock
        self.unproven[peer_id] = None
        if peer_id not in self.encoders:       # kept across a reconnect: send() may be filling it
            self.encoders[peer_id] = FrameEncoder(self.cluster_id, self.node_id, peer_id, self.max_frame_bytes)
        self.peer_at[peer_id] = (endpoint, server_key)

    def set_peers(self, nodes, public_keys=None):
        """Talk to exactly these nodes from now on (membership changes, issue 14): `nodes` are NodeAddress
        entries (this node's own is skipped), `public_keys` {node id: z85 key} (needed with CURVE keys on).
        A new node is connected to; a node no longer listed is disconnected, its frames refused
        (UnknownSender) and, with CURVE, its key no longer admitted; a node whose address or key changed is
        connected to again. Without a key for a listed node (CURVE on), ConfigError and nothing changes.
        Returns (added, removed, moved) node ids."""
        wanted = {}
        for node in nodes:
            if node.id == self.node_id:
                continue
            key = None
            if self.secret:
                key = (public_keys or {}).get(node.id)
                if key is None:
                    raise ConfigError("no CURVE public key for node %d: with keys on, every peer needs one" % node.id)
                key = key.encode() if isinstance(key, str) else bytes(key)
                if len(key) != 40:
                    raise ConfigError("node %d's public key must be 40 z85 characters, got %d" % (node.id, len(key)))
            wanted[node.id] = (node.peer_endpoint(self.worker), key)
        removed = sorted(set(self.push) - set(wanted))
        added = sorted(set(wanted) - set(self.push))
        moved = sorted(i for i in wanted if i in self.peer_at and self.peer_at[i] != wanted[i])
        if self.zap is not None:
            members = {i: k for i, (_, k) in wanted.items()}
            members[self.node_id] = self.public
            self.zap.set_members(members)
        for peer_id in removed + moved:
            self.push.pop(peer_id).close(0)
            self.encoders.pop(peer_id, None)
            self.peer_at.pop(peer_id, None)
            self.unproven.pop(peer_id, None)
        for peer_id in added + moved:
            endpoint, key = wanted[peer_id]
            self._connect(peer_id, endpoint, key)
        if added or removed or moved:
            log.info("worker %d: peers now %s (added %s, removed %s, moved %s)", self.worker,
                     sorted(self.push), added, removed, moved)
        return added, removed, moved

    def send(self, messages):
        """Pack [(dest, Message)] into frames per destination and push them (never blocks, never raises over a
        message's size): a frame is pushed before the next message would take it past frame_target_bytes."""
        used = []
        target = self.frame_target_bytes
        for dest, msg in messages:
            enc = self.encoders.get(dest)
            if enc is None:
                continue
            size = MESSAGE_HEADER_SIZE + len(msg.value)
            if enc.count and enc.nbytes - FRAME_HEADER_SIZE + size > target:
                self._push(dest, enc)
            try:
                enc.add(msg)
            except FrameTooLarge as exc:
                self._oversize(dest, msg, exc)
                continue
            if enc.count == 1:
                used.append(dest)
        for dest in used:
            enc = self.encoders[dest]
            if enc.count:
                self._push(dest, enc)

    def _push(self, dest, enc):
        count = enc.count
        frame = enc.finish()
        try:
            self.push[dest].send(frame, zmq.NOBLOCK)
            self.sent_frames += 1
            self.sent_messages += count
            if dest in self.unproven:
                del self.unproven[dest]
        except zmq.Again:
            self.dropped_frames += 1
            # No frame could leave since `since`: connect again after RECONNECT_STALLED_S. Also a connection
            # that worked once: a peer that restarted may refuse our key until it reads the membership table
            # (it starts from its node file's members), and ZeroMQ does not reconnect after a refusal
            # (nemesis seed 302: a replacement node never heard from a restarted peer again).
            now = time.monotonic()
            since = self.unproven.get(dest)
            if since is None:
                self.unproven[dest] = now
            elif now - since >= RECONNECT_STALLED_S:
                self._reconnect(dest)

    def _reconnect(self, dest):
        endpoint, key = self.peer_at[dest]
        self.push.pop(dest).close(0)
        self._connect(dest, endpoint, key)
        self.reconnects += 1
        if self.reconnects in (1, 10, 100, 1000) or self.reconnects % 10000 == 0:
            log.info("worker %d: no frame to node %d could leave for %.0f s: connecting to it again [%d so far]",
                     self.worker, dest, RECONNECT_STALLED_S, self.reconnects)

    def _oversize(self, dest, msg, exc):
        self.oversize_messages += 1
        if self.oversize_messages in (1, 10, 100, 1000) or self.oversize_messages % 10000 == 0:
            log.error("worker %d dropped a message of kind %d for group %d to node %d: %s [%d so far]",
                      self.worker, msg.kind, msg.group, dest, exc, self.oversize_messages)

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
            if self.zap is not None:
                try:
                    bound = int(frame.get("User-Id"))
                except (zmq.ZMQError, ValueError, TypeError):
                    bound = -1
            try:
                sender, msgs = decode_frame(frame.buffer, self.cluster_id, self.node_id, self.max_frame_bytes,
                                            self.max_value_bytes)
            except FrameError as exc:
                self._reject(type(exc).__name__, str(exc))
                continue
            if sender not in self.push:
                self._reject("UnknownSender", "sender %d is not a peer" % sender)
                continue
            if self.zap is not None and sender != bound:
                # CURVE proved the key is member `bound`'s; the header claims another member: not believed.
                self._reject("ImpersonatedSender", "the frame says node %d, the connection's key is node %d's"
                             % (sender, bound))
                continue
            out.extend(msgs)
        return out

    def _reject(self, reason, detail):
        """Count a refused frame by reason; log the 1st, 10th, 100th, ... of each reason."""
        n = self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if n in (1, 10, 100, 1000) or n % 10000 == 0:
            log.warning("worker %d refused a frame (%s): %s [%d so far]", self.worker, reason, detail, n)

    def auth_denied(self):
        return self.zap.denied if self.zap else 0

    def close(self):
        if self.zap is not None:
            self.zap.stop()
        for sock in self.push.values():
            sock.close(0)
        self.pull.close(0)

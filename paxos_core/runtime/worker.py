"""A worker process: the groups `g % workers == i` of one node, driven by one event loop.

The worker only does I/O: it polls ZeroMQ (peer frames and client requests), hands everything of one poll to
the replica loop (replica/loop.py: the sans-I/O logic the simulator drives too) in one turn, and sends the
replies it produced. It brings the real ports: RocksDB (one log for all its groups, group commit), the peer
transport and the monotonic clock (CLOCK_BOOTTIME where the platform has it, so a suspended machine does not
seem to have stood still).
"""
import gc
import json
import logging
import os
import signal
import sys
import time

import numpy as np
import zmq

from ..config import NodeAddress, NodeConfig, load_config
from ..core.config import SYSTEM_GROUP
from ..core.engine import GROUP_ABSENT
from ..errors import ConfigError, PaxosError, StartError
from ..replica.loop import LoopSettings, ReplicaLoop, default_rng
from ..replica.membership_driver import seed_command
from ..replica.snapshots import SnapshotSettings
from ..statemachine import loader
from ..statemachine.store import RocksStore
from ..storage import identity
from ..storage.log import RocksLog, is_damage
from ..storage.snapfiles import SnapshotFiles
from . import trace
from .channel import EXIT_START_FAILED, ParentChannel, ParentLogHandler, set_parent_death_signal
from .metrics import WorkerCollector, serve_metrics
from .transport import ADMIN_USER, CLIENT_ZAP_DOMAIN, PeerTransport, bind

log = logging.getLogger("paxos_core.worker")


def monotonic_clock():
    """Seconds on a clock that never goes back and, where possible, keeps counting while suspended."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        try:
            time.clock_gettime(boottime)
            return lambda: time.clock_gettime(boottime)
        except OSError:
            pass
    return time.monotonic


def lost_state_reason(data_dir, index, log, recovery):
    """One line saying why this worker's log may have lost synced promises or votes, or "" if it did not."""
    if log.amnesia or recovery.amnesia:
        return log.open_report or recovery.report or "the log lost synced state"
    reason = identity.rebuilding_reason(data_dir, index)
    if reason is not None:
        return reason or "a rebuild from peers was interrupted before it was on record"
    state = identity.worker_log_state(data_dir, index, log.created)
    if state == identity.WIPED:
        if identity.read_marker(data_dir) is None:
            return "the data directory %s lacks its identity marker (lost, or never set up by paxos-core init)" % (
                data_dir,)
        return "worker %d's log under %s is gone although the worker had created it before" % (index, data_dir)
    return ""


def lock_holder(path):
    """Pid of the process holding the RocksDB LOCK of the database at `path` (from /proc/locks), or None."""
    try:
        st = os.stat(os.path.join(path, "LOCK"))
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    file_id = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for fields in (line.split() for line in lines):
        if file_id in fields:
            try:
                return int(fields[fields.index(file_id) - 1])
            except (ValueError, IndexError):
                return None
    return None


def open_log(config, index):
    """The worker's RocksLog; StartError with one line if another process has the database open."""
    path = str(config.worker_data_dir(index))
    try:
        return RocksLog(path, config.node_id, config.cluster_id, config.durability)
    except Exception as exc:
        # RocksDB's lock failures name the lock file ("IO error: While lock file: <path>/LOCK: Resource
        # temporarily unavailable"; in-process: "lock hold by current process ... <path>/LOCK: ..."). Match
        # that, not any message with "lock" in it ("block checksum mismatch" is damage, not a lock).
        if "/LOCK:" not in str(exc) or not os.path.exists(os.path.join(path, "LOCK")):
            raise
        pid = lock_holder(path)
        raise StartError("data directory %s is in use by another process%s" % (
            config.data_dir, " (pid %d)" % pid if pid else "")) from None


def start_loop(log, data_dir, index, make_loop):
    """Recover worker `index`'s state from `log` and build its replica loop with ``make_loop(recovery,
    amnesia)``; returns (loop, amnesia reason or None).

    Building the loop reads the state machine's column family of the same DB (masters, sessions, applied
    marks). Damage met there (a flipped bit in one of its tables: nemesis seed 211) is synced damage like the
    log's own, never a crash loop: the DB goes aside (RocksLog.set_aside), the loop is built on the fresh one,
    and every group rebuilds from its peers before it votes. The same happens at the start after a run that
    met such damage in a read (identity.mark_damage_found, written by worker_main before the worker exits):
    the damaged table would otherwise be met again at the next read of it, at every restart. A damaged GROUP
    record goes the same way (recovery.py: the log can no longer say which groups it holds, in which
    incarnation: soak seed 6,016,081)."""
    finding = identity.damage_found(data_dir, index)
    if finding is None:
        recovery = log.recover()
        finding = recovery.registry_damage or None
    if finding is None:
        amnesia = lost_state_reason(data_dir, index, log, recovery)
        if amnesia:
            # Until the rebuild is on record, a restart must find it again (the flag goes after the loop has
            # durably marked every group as rebuilding).
            identity.mark_rebuilding(data_dir, index)
        try:
            return make_loop(recovery, amnesia), amnesia
        except Exception as exc:
            if not is_damage(exc):
                raise
            finding = "the state machine's tables: %s" % " ".join(str(exc).split())
    # Outside the except block: the half-built loop (and its column family handle on the old DB) is gone now.
    recovery = log.set_aside(finding)
    amnesia = lost_state_reason(data_dir, index, log, recovery)
    identity.mark_rebuilding(data_dir, index)
    identity.clear_damage_found(data_dir, index)
    return make_loop(recovery, amnesia), amnesia


def note_damage_met(data_dir, index, exc):
    """If `exc`, raised out of a running worker's loop, is damage of its synced data (RocksDB "Corruption":
    a read of a damaged table of the state machine), record it for the next start (start_loop sets the DB
    aside then) and return one line saying so; None for any other failure."""
    if not is_damage(exc):
        return None
    finding = "met while running: %s" % " ".join(str(exc).split())
    identity.mark_damage_found(data_dir, index, finding)
    return finding


def start_failure_reason(exc, index):
    """One line saying why worker `index` could not start."""
    text = " ".join(str(exc).split())
    if isinstance(exc, PaxosError):
        return text
    if isinstance(exc, OSError):
        return "worker %d: %s" % (index, text)
    return "worker %d failed to start: %s: %s" % (index, type(exc).__name__, text)


PLANT_ENV = "PAXOS_CORE_PLANT"
PLANT_PREFIX = "unsafe-test-only:"


def plant_from_env(node_id, index):
    """The planted bug named by PAXOS_CORE_PLANT, for testing the tests only (`paxos-core nemesis --plant`).

    It BREAKS SAFETY on purpose. So that it is never on by accident, the value must read
    ``unsafe-test-only:<plant>`` with a plant of core/config.py PLANTS; anything else stops the worker from
    starting (ConfigError), and a plant that is on is logged as an error at every start."""
    value = os.environ.get(PLANT_ENV, "")
    if not value:
        return ""
    from ..core.config import PLANTS

    if not value.startswith(PLANT_PREFIX) or value[len(PLANT_PREFIX):] not in PLANTS:
        raise ConfigError("%s=%r: a planted bug for tests is set as %s<plant>, plant one of %s; unset it to run "
                          "normally" % (PLANT_ENV, value, PLANT_PREFIX, ", ".join(PLANTS)))
    plant = value[len(PLANT_PREFIX):]
    log.error("node %d worker %d: PLANTED BUG %r IS ON (%s): this node is unsafe on purpose, for testing the "
              "tests only", node_id, index, plant, PLANT_ENV)
    return plant


class Worker:
    def __init__(self, config, index, state_machine_factory=None):
        self.config = config
        self.index = index
        self.node_id = config.node_id
        self.stopping = False
        self.ctx = zmq.Context()
        self.transport = self.client = self.log = None
        self.published_epoch = 0          # the newest membership table handed to the supervisor
        self.reported_left = False        # told the supervisor this node was removed and left its groups
        self.peers_of = ((), 0)           # the driver's (members, epoch) the transport was last set to: at first,
                                          # the node file's
        self.trace = trace.trace_for(self.node_id, index)      # None unless PAXOS_CORE_TRACE_DIR is set
        try:
            self._start(state_machine_factory)
        except BaseException:
            self._close_partial()
            raise
        log.info("node %d worker %d up: %d groups, log %s", self.node_id, index, self.loop.group_count(),
                 config.worker_data_dir(index))

    def _start(self, state_machine_factory):
        config, index = self.config, self.index
        if state_machine_factory is None and config.state_machine:
            # Resolved before anything is opened: a bad import path is one line (ConfigError), never a
            # half-started worker. The factory itself is called once the store exists (in the loop).
            state_machine_factory = loader.factory_for(config.state_machine)
        # The sockets first: a node already running with these ports is refused ("address in use") before
        # anything touches the data directory.
        self.transport = PeerTransport(self.ctx, config, index)
        self.client = self.ctx.socket(zmq.ROUTER)
        self.client.linger = 0
        self.client.rcvhwm = config.max_pending
        self.client.sndhwm = config.max_pending
        # A client message longer than max_frame_bytes is refused by ZeroMQ before it is buffered (the
        # connection is dropped; the client times out): no request legitimately needs more.
        self.client.maxmsgsize = config.max_frame_bytes
        # With CURVE keys the client socket is a CURVE server too: the transport's ZAP handler admits every
        # CURVE client and marks those holding a member's key as admin (see client_frames); a client without
        # CURVE cannot connect. Without keys, nothing is authenticated and every client may administer.
        self.client_auth = self.transport.zap is not None
        if self.client_auth:
            self.client.curve_server = True
            self.client.curve_secretkey = config.curve_secret_key()
            self.client.curve_publickey = config.curve_public_key(config.node_id)
            self.client.zap_domain = CLIENT_ZAP_DOMAIN
        bind(self.client, config.me.client_endpoint(index))
        data_dir = config.data_dir
        os.makedirs(config.worker_data_dir(index), exist_ok=True)
        identity.check_marker(data_dir, config.node_id, config.cluster_id)      # another node's data: refuse
        self.log = open_log(config, index)
        settings = LoopSettings(
            node_id=config.node_id, index=index, workers=config.workers, tick_s=config.tick_ms / 1000.0,
            lease_ticks=config.lease_ticks, lease_margin=config.lease_margin, max_pending=config.max_pending,
            max_value_bytes=config.max_value_bytes, max_group_id=config.max_group_id,
            request_timeout_ticks=config.proposal_timeout_ticks, max_stale_lag=config.max_stale_lag,
            max_request_timeout_ms=config.max_request_timeout_ms,
            # PAXOS_CORE_BATCH_ENVELOPE=0 proposes a batch's operations one by one; PAXOS_CORE_RENEW_ON_WRITE=1
            # also claims for written groups; PAXOS_CORE_COALESCE_REPLIES=0 sends every reply on its own (all
            # kept to measure what the default gains).
            batch_envelope=os.environ.get("PAXOS_CORE_BATCH_ENVELOPE", "1") != "0",
            renew_on_write=os.environ.get("PAXOS_CORE_RENEW_ON_WRITE", "0") == "1",
            coalesce_replies=os.environ.get("PAXOS_CORE_COALESCE_REPLIES", "1") != "0",
            # PAXOS_CORE_UNLOAD_AFTER_S=0 unloads the state machine's groups at every idle poll (the old way).
            unload_after_s=float(os.environ.get("PAXOS_CORE_UNLOAD_AFTER_S", "1.0")),
            # A catch-up reply fits a quarter of a frame (one value bigger than that still goes, alone): the
            # transport splits frames at half of max_frame_bytes, the receiver refuses frames above it.
            max_reply_bytes=max(1, config.max_frame_bytes // 4),
            plant=plant_from_env(config.node_id, index),
            retain_instances=config.retain_instances, retain_bytes=config.retain_bytes,
            peer_lag_instances=config.peer_lag_instances, peer_lag_bytes=config.peer_lag_bytes,
            # A snapshot chunk fits a quarter of a frame, as a catch-up reply does.
            snapshots=SnapshotSettings(
                chunk_bytes=config.snapshot_chunk_bytes, window_bytes=config.snapshot_window_bytes,
                build_bytes_per_turn=config.snapshot_chunk_bytes, send_bytes_per_turn=16 * config.snapshot_chunk_bytes,
                stage_bytes_per_turn=2 * config.snapshot_chunk_bytes, max_outgoing=config.snapshot_max_outgoing,
                max_incoming=config.snapshot_max_incoming, idle_timeout_s=config.snapshot_idle_timeout_ms / 1000,
                retry_s=config.snapshot_retry_ms / 1000),
            membership_seed=seed_command(config, {n: config.curve_public_key(n) for n in config.members}
                                         if config.keys_dir else None) if index == 0 else b"",
        )
        core_config = config.core_config(index)
        first_voters = identity.read_first_voters(config.data_dir)
        if first_voters is not None:
            # The cluster's first voters, not the node file's list (a node that joined later lists the nodes of
            # its time; a first voter removed since is a member only until the membership table says otherwise).
            core_config = core_config.replace(voters=first_voters,
                                              members=tuple(sorted(set(core_config.members) | set(first_voters))))
        if os.environ.get("PAXOS_CORE_FILL_AT_TAKE", "1") == "0":
            # One instance per proposal while the window has room (the old way; kept to measure the default).
            core_config = core_config.replace(fill_at_take=False)
        if os.environ.get("PAXOS_CORE_RETRANSMIT_BACKOFF", "1") == "0":
            # Every resend of an Accept after retransmit_ticks (the old way; kept to measure the default).
            core_config = core_config.replace(retransmit_backoff=False)
        if settings.plant:
            core_config = core_config.replace(plant=settings.plant)
        self.loop, amnesia = start_loop(self.log, data_dir, index, lambda recovery, amnesia: ReplicaLoop(
            settings, core_config, clock=monotonic_clock(), log=self.log, store=RocksStore(self.log.rdict, "sm"),
            send=self._send_peers, hosted=config.worker_groups(index), recovery=recovery, rng=default_rng(),
            state_machine_factory=state_machine_factory, amnesia=amnesia,
            snapfiles=SnapshotFiles(os.path.join(data_dir, "worker-%d.snap" % index))))
        self.loop.status_hook = self.status
        if amnesia:
            identity.restore_marker(data_dir, config.node_id, config.cluster_id)
            identity.write_worker_flag(data_dir, index)
            identity.clear_rebuilding(data_dir, index)
        self.metrics_server = None
        address = config.me.metrics_address(index)
        if address:
            self._start_metrics(address)

    def _close_partial(self):
        """After a failed start: close whatever _start opened, so the process can exit at once."""
        if self.transport is not None:
            self.transport.close()
        if self.client is not None:
            self.client.close(0)
        if self.log is not None:
            try:
                self.log.close()
            except Exception:
                pass
        self.ctx.destroy(linger=0)

    # Views the metrics collector and the tests read.
    @property
    def engine(self):
        return self.loop.engine

    @property
    def applier(self):
        return self.loop.applier

    @property
    def masters(self):
        return self.loop.masters

    @property
    def sm(self):
        return self.loop.sm

    @property
    def stats(self):
        return self.loop.stats

    @property
    def latency(self):
        return self.loop.latency

    @property
    def batch_sizes(self):
        return self.loop.batch_sizes

    @property
    def write_seconds(self):
        return self.loop.write_seconds

    @property
    def slow_writes(self):
        return self.loop.slow_writes

    def group_count(self):
        return self.loop.group_count()

    def masters_held(self):
        return self.loop.masters_held()

    def pending_count(self):
        return self.loop.pending_count()

    def _start_metrics(self, address):
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        registry.register(WorkerCollector(self))
        try:
            self.metrics_server = serve_metrics(address[0], address[1], registry)
        except OSError as exc:
            log.error("metrics endpoint %s:%d not started: %s", address[0], address[1], exc)

    # ------------------------------------------------------------------ the loop
    def run(self, parent=None):
        """Serve until asked to stop (SIGTERM sets `stopping`) or until `parent`, the channel to the
        supervisor (runtime/channel.py), reaches end of file: the supervisor is gone."""
        poller = zmq.Poller()
        poller.register(self.transport.pull, zmq.POLLIN)
        poller.register(self.client, zmq.POLLIN)
        if parent is not None:
            poller.register(parent.fileno(), zmq.POLLIN)
        loop = self.loop
        if self.trace is not None:
            self._run_traced(poller, parent)
            return
        while not self.stopping:
            ready = poller.poll(loop.poll_timeout() * 1000.0)
            if parent is not None and any(item[0] == parent.fileno() for item in ready) and parent.parent_gone():
                log.error("node %d worker %d: the supervisor is gone; stopping", self.node_id, self.index)
                break
            loop.turn(self.transport.receive(), self._client_frames())
            replies = loop.take_replies()
            if replies:
                self._send_replies(replies)
            if parent is not None:
                self._membership(parent)
        self.close()

    def _membership(self, parent):
        """The membership table between this worker and the others (through the supervisor): the worker that
        hosts the system group hands up every newer table it applied; every worker takes the tables handed
        down; and the transport talks to the nodes its driver sends to."""
        driver = self.loop.membership
        if parent.inbox:
            messages, parent.inbox = parent.inbox, []
            for message in messages:
                if message.get("kind") == "membership" and isinstance(message.get("table"), dict):
                    driver.on_table(self.loop, message["table"])
        if driver.epoch > self.published_epoch:
            self.published_epoch = driver.epoch
            if self.loop.engine.hosts(SYSTEM_GROUP):
                parent.send({"kind": "membership", "table": driver.table})
        if driver.members != self.peers_of[0] or driver.epoch != self.peers_of[1]:
            self._set_peers(driver)
        if driver.left and not self.reported_left:
            self.reported_left = True
            log.warning("node %d worker %d: this node was removed from the cluster at epoch %d, and its groups here "
                        "go on without it", self.node_id, self.index, driver.removed_epoch)
            parent.send({"kind": "removed", "epoch": driver.removed_epoch})

    def _set_peers(self, driver):
        """Connect the transport to the driver's members, at the table's addresses with its keys (an epoch may
        move a node to another address without changing who the members are)."""
        nodes = {n["id"]: n for n in driver.table.get("nodes", ())}
        if any(m not in nodes for m in driver.members):
            self.peers_of = (driver.members, driver.epoch)
            return                        # a member the table does not know (the node file's, before the seed)
        addresses = [NodeAddress(m, nodes[m]["host"], nodes[m]["peer_port"], nodes[m]["client_port"])
                     for m in driver.members]
        keys = {m: nodes[m]["public_key"] for m in driver.members} if self.config.keys_dir else None
        try:
            added, removed, moved = self.transport.set_peers(addresses, keys)
        except ConfigError as exc:
            log.error("node %d worker %d: the membership table's peers were not taken: %s", self.node_id,
                      self.index, exc)
        else:
            if added or removed or moved:
                log.info("node %d worker %d: peers now %s (added %s, removed %s, moved %s) at epoch %d",
                         self.node_id, self.index, list(driver.members), added, removed, moved, driver.epoch)
        self.peers_of = (driver.members, driver.epoch)

    def _run_traced(self, poller, parent):
        """run() with every step of a turn noted in self.trace (runtime/trace.py; bench --trace-one)."""
        loop, note = self.loop, self.trace.note
        send = self.transport.send

        def traced_send(messages):
            note(trace.PEER_OUT, trace.kinds_mask(messages, at=1))
            send(messages)

        self.transport.send = traced_send
        loop.log = trace.TracedLog(loop.log, self.trace)
        while not self.stopping:
            timeout = loop.poll_timeout()
            ready = poller.poll(timeout * 1000.0)
            note(trace.POLL, int(timeout * 1e6))
            if parent is not None and any(item[0] == parent.fileno() for item in ready) and parent.parent_gone():
                log.error("node %d worker %d: the supervisor is gone; stopping", self.node_id, self.index)
                break
            messages = self.transport.receive()
            if messages:
                note(trace.PEER_IN, trace.kinds_mask(messages))
            frames = self._client_frames()
            if frames:
                note(trace.CLIENT_IN, len(frames))
            loop.turn(messages, frames)
            note(trace.TURN_END)
            replies = loop.take_replies()
            if replies:
                note(trace.REPLY_OUT, len(replies))
                self._send_replies(replies)
            if parent is not None:
                self._membership(parent)
        self.close()

    def _client_frames(self, limit=10000):
        """[(identity, frame, admin)] waiting on the client socket. `admin`: the connection may run
        administrative operations (its CURVE key is a member's; always true without CURVE)."""
        sock = self.client
        frames = []
        auth = self.client_auth
        for _ in range(limit):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            if len(parts) != 2:
                continue                    # a client sent a multipart message: not a request
            admin = True
            if auth:
                try:
                    admin = parts[1].get("User-Id") == ADMIN_USER
                except zmq.ZMQError:
                    admin = False
            frames.append((parts[0].bytes, parts[1].bytes, admin))
        return frames

    def _send_peers(self, messages):
        self.transport.send(messages)

    def _send_replies(self, replies):
        sock = self.client
        for client_identity, frame in replies:
            try:
                sock.send_multipart([client_identity, frame], zmq.NOBLOCK)
            except zmq.Again:
                pass            # the client is gone or not reading; it times out on its side
            except zmq.ZMQError as exc:
                log.debug("reply not sent: %s", exc)

    def status(self, max_groups=64):
        out = self.loop.status(max_groups)
        out.update({
            "pid": os.getpid(), "log": self.log.stats(), "added_groups": self.added_groups(),
            "transport": {"sent_frames": self.transport.sent_frames, "dropped_frames": self.transport.dropped_frames,
                          "received_frames": self.transport.received_frames, "rejected": dict(self.transport.rejected),
                          "auth_denied": self.transport.auth_denied(),
                          "oversize_messages": self.transport.oversize_messages,
                          "reconnects": self.transport.reconnects},
        })
        return out

    def added_groups(self):
        """Ids of the groups hosted here beyond those of the node file (added while the cluster ran), ascending.
        A node that joins gets its node file's groups only: `member promote` compares these lists to find the
        groups a learner lacks (membership.py). Array operations from this worker's first id past the node
        file's: cheap with a million groups."""
        engine, config = self.loop.engine, self.config
        if self.loop.settings.plant == "status-omits-added-groups":
            return []                   # planted: promote then finds nothing missing on a learner
        first = config.groups + (self.index - config.groups) % config.workers
        start = engine.slot_index(first)
        if start < 0 or start >= engine.n_slots:
            return []
        hosted = np.flatnonzero(engine.status_array[start:] != int(GROUP_ABSENT))
        return [int(engine.group_at(start + slot)) for slot in hosted]

    def close(self):
        if self.metrics_server is not None:
            try:
                self.metrics_server.shutdown()
                self.metrics_server.server_close()
            except Exception:
                pass
        self.transport.close()
        self.client.close(0)
        self.loop.close()
        self.loop.store.close()
        self.log.close()
        self.ctx.term()
        if self.trace is not None:
            self.trace.save()


def worker_main(config_path, index, log_level=logging.INFO):
    """Entry point of a worker process: `python -m paxos_core.runtime.worker CONFIG INDEX [LEVEL]`.

    CONFIG is a node's TOML file, or a JSON file of NodeConfig.to_dict() (written by the supervisor). Stdin
    is the channel to the supervisor (runtime/channel.py): log records, "ready" or why the start failed go
    up it, and its end of file stops the worker. Run by hand (stdin not a socket), the worker logs to stderr.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # Ctrl-C reaches the process group: the supervisor decides
    parent = ParentChannel.from_stdin()
    if parent is not None:
        set_parent_death_signal(signal.SIGTERM)
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(ParentLogHandler(parent))
        root.setLevel(log_level)
    else:
        logging.basicConfig(level=log_level,
                            format="%(asctime)s %(levelname)s %(name)s[w" + str(index) + "]: %(message)s")
    if os.environ.get("PAXOS_CORE_GC_TUNING", "1") != "0":
        # The loop allocates many short-lived objects; the default thresholds run a collection every 700
        # allocations, scanning everything long-lived each time. Objects alive after start-up are frozen
        # out of the collector, and young collections run 100x less often.
        gc.set_threshold(70_000, 20, 100)
    try:
        if str(config_path).endswith(".json"):
            with open(config_path) as f:
                config = NodeConfig.from_dict(json.load(f), "/")
        else:
            config = load_config(config_path)
        worker = Worker(config, index)
    except Exception as exc:
        # One line for the supervisor (it stops the node with it); the traceback only at debug level.
        reason = start_failure_reason(exc, index)
        if not isinstance(exc, PaxosError):
            log.debug("worker %d did not start", index, exc_info=True)
        if parent is not None:
            parent.send({"kind": "failed", "reason": reason}, block=True)
            parent.close()
        else:
            print(reason, file=sys.stderr)
        os._exit(EXIT_START_FAILED)
    if os.environ.get("PAXOS_CORE_GC_TUNING", "1") != "0":
        gc.collect()
        gc.freeze()

    def stop(signum, frame):
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    if parent is not None:
        parent.send({"kind": "ready", "pid": os.getpid()}, block=True)
    try:
        worker.run(parent)
    except Exception as exc:
        finding = note_damage_met(config.data_dir, index, exc)
        if finding is not None:
            # Not a bug of ours: the disk returned damaged data. The restart sets the DB aside and rebuilds.
            log.critical("node %d worker %d: damaged data in its database (%s); exiting: it restarts on a fresh "
                         "database and its groups rebuild from their peers", worker.node_id, index, finding)
        else:
            log.critical("node %d worker %d crashed", worker.node_id, index, exc_info=True)
        if parent is not None:
            parent.close()
        os._exit(1)
    if parent is not None:
        parent.close()


if __name__ == "__main__":
    worker_main(sys.argv[1], int(sys.argv[2]), logging.getLevelName(sys.argv[3]) if len(sys.argv) > 3 else logging.INFO)

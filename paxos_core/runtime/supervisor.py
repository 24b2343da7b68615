"""The supervisor: starts a node's worker processes, waits until each is up, and restarts any that dies.

Workers are spawned, never forked: each is a fresh interpreter (`python -m paxos_core.runtime.worker`),
started with subprocess, so no RocksDB handle or thread of the parent leaks into it (a fork after RocksDB
is open makes children hang), and a program that embeds a Node needs no `if __name__ == "__main__"` guard.

Every worker gets a private channel to the supervisor as its stdin (runtime/channel.py): its log records
come up it and are re-emitted here through `logging` (the embedding program's configuration applies), and
so do "ready" and, for a worker that cannot start, the one line saying why. One thread, the supervisor's
own, spawns every worker (a parent-death signal follows the thread that spawned), reads the channels and
watches the processes.

Start: `start()` returns once every worker said it is ready. A worker that fails before it is up stops
the node: every worker started is stopped and `start()` raises StartError with that worker's one line
("address in use: 127.0.0.1:15167", "data directory /x is in use by another process (pid N)").
Running: a worker that exits without being asked to is reported (log line, restart counter) and started
again after a backoff (0.2 s doubling to 5 s); it recovers its groups from its log. It is restarted at most
`restart_limit` times in a row without staying up `stable_s` seconds: when the last of those restarts fails
too (it does not start, or crashes soon), the node stops: `failure` holds the one line, `failed` is set and
`on_failure(reason)` is called. Stopping sends SIGTERM to every worker, which finishes its cycle, closes its
log and exits; one that does not within the grace period is killed. Workers stop by themselves within
moments when the supervisor process dies (channel end of file; on Linux also SIGTERM from the kernel).
"""
import json
import logging
import os
import selectors
import signal
import subprocess
import tempfile
import threading
import time

from ..core.config import SYSTEM_GROUP
from ..errors import StartError
from ..statemachine.user import decode_user_result
from ..storage import identity
from ..statemachine.loader import SYS_PATH_ENV, parent_sys_path
from . import channel, spawn

log = logging.getLogger("paxos_core.supervisor")

FIRST_BACKOFF = 0.2
MAX_BACKOFF = 5.0
# How often a running node asks the cluster whether it was removed (a removal it did not hear of: see
# Supervisor._watch_removal); 0: never. PAXOS_CORE_REMOVAL_WATCH_S overrides it (tests).
REMOVAL_WATCH_S = float(os.environ.get("PAXOS_CORE_REMOVAL_WATCH_S", "30"))


class _Worker:
    """The supervisor's view of one worker slot (one process at a time)."""

    def __init__(self, index):
        self.index = index
        self.proc = None             # Popen of the current process
        self.sock = None             # the supervisor's end of its channel
        self.reader = None
        self.ready = False           # the current process said it is up
        self.up_since = 0.0
        self.reason = ""             # why the current process could not start (its own line)
        self.left = 0                # the epoch that removed this node, once this worker's groups go on without it
        self.failures = 0            # failed starts and early crashes in a row
        self.backoff = FIRST_BACKOFF
        self.restart_at = None       # monotonic time of a scheduled restart


class Supervisor:
    def __init__(self, config, config_source, log_level=logging.INFO, restart_limit=5, stable_s=30.0,
                 rebuild=False):
        """`rebuild`: the data directory may lack its identity marker (a replaced disk): rebuild every group
        from the peers (`paxos-core node --rebuild`); without it such a start is refused."""
        self.config = config
        self.rebuild = rebuild
        self.log_level = log_level
        self.restart_limit = restart_limit
        self.stable_s = stable_s
        if isinstance(config_source, dict):
            fd, path = tempfile.mkstemp(prefix="paxos-node%d-" % config.node_id, suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(config_source, f)
            self._temp_config = path
            self.config_path = path
        else:
            self._temp_config = None
            self.config_path = str(config_source)
        self.processes = {}                  # index -> Popen of the worker's current process
        self.restarts = {i: 0 for i in range(config.workers)}
        self.failure = None                  # one line, once the node has failed (it is then stopped)
        self.failed = threading.Event()
        self.on_failure = None               # called with the failure line from the supervisor's thread
        self._workers = {i: _Worker(i) for i in range(config.workers)}
        self.table = None               # the newest membership table a worker handed up
        self.removed_epoch = None       # the epoch that removed this node, once every worker left
        self._selector = selectors.DefaultSelector()
        self._up = threading.Event()         # every worker ready, or the start failed
        self._stopping = threading.Event()
        self._grace = 10.0
        self._thread = None
        self.removal_watch_s = REMOVAL_WATCH_S
        self._watch = None
        self._removed_late = None       # an epoch whose table removed this node, found by the watch

    # ------------------------------------------------------------------ the caller's side
    def start(self, timeout=30.0):
        """Spawn every worker and wait until each says it is up (at most `timeout` seconds). Raises
        StartError (one line) after stopping everything it started if a worker fails or is not up in time."""
        removed = identity.read_removed(self.config.data_dir)
        if removed is not None:
            raise StartError("%s: a removed node never starts again (its id is never used again); to bring this "
                             "host back, wipe %s and join it as a new node" % (removed, self.config.data_dir))
        self._mark_lost_marker()
        recorded = identity.read_first_voters(self.config.data_dir)
        stated = self.config.first_configuration
        if recorded is None:
            # The groups' first configuration, recorded at the first start (or the start of a rebuild) from the
            # node file: cluster.first_voters where a join bundle wrote it, else the nodes `init` listed. From
            # here on the record is the truth, whatever the file says later.
            identity.write_first_voters(self.config.data_dir, stated)
        elif self.config.first_voters and tuple(sorted(recorded)) != tuple(sorted(stated)):
            raise StartError("node %d: %s states the groups' first voters %s, but this node's data directory "
                             "recorded %s: the node file is not this node's, or was edited; refusing to start"
                             % (self.config.node_id, self.config.path or "the node file",
                                ",".join(map(str, stated)), ",".join(map(str, recorded))))
        self._thread = threading.Thread(target=self._run, name="paxos-supervisor", daemon=True)
        self._thread.start()
        if not self._up.wait(timeout):
            late = sorted(w.index for w in self._workers.values() if not w.ready)
            self.stop()
            raise StartError("node %d: worker%s %s not up after %.0fs" % (
                self.config.node_id, "s" if len(late) > 1 else "", ", ".join(map(str, late)), timeout))
        if self.failure is not None:
            self.stop()
            raise StartError(self.failure)
        if self.removal_watch_s:
            self._watch = threading.Thread(target=self._watch_removal, name="paxos-removal-watch", daemon=True)
            self._watch.start()

    # ------------------------------------------------------------------ a removal this node did not hear of
    def _watch_removal(self):
        """Now and then, ask the cluster (as a client: a removed node's key is still let in there, without the
        cluster's credentials) whether the membership table removed this node. A node that was down or cut off
        when it was removed hears of it no other way: its peers refuse its key once every group left it. The
        answer is a linearizable read of the system group, which only a quorum of the cluster can give."""
        wait = min(5.0, self.removal_watch_s)          # soon after a start, then every removal_watch_s
        while not self._stopping.wait(wait):
            wait = self.removal_watch_s
            if self.removed_epoch is not None or self.failure is not None:
                return
            try:
                epoch = self._removed_in_cluster()
            except Exception as exc:           # no answer now (a partition, a start): ask again later
                log.debug("node %d: removal watch: no answer: %r", self.config.node_id, exc)
                continue
            if epoch is not None:
                self._removed_late = epoch         # the supervisor's thread stops the node (_check)
                return

    def _removed_in_cluster(self):
        """The epoch that removed this node according to the cluster's table, or None."""
        from ..client import Client
        from ..membership import client_endpoints

        config = self.config
        known = (self.table or {}).get("nodes", ())
        endpoints = {n.id: [n.client_endpoint(w) for w in range(config.workers)] for n in config.nodes}
        keys = {n.id: config.curve_public_key(n.id) for n in config.nodes} if config.keys_dir else None
        for n in known:
            if n.get("role") != "removed" and n["id"] not in endpoints and n["id"] != config.node_id:
                endpoints[n["id"]] = client_endpoints(n, config.workers)
                if keys is not None:
                    keys[n["id"]] = n["public_key"].encode()
        others = sorted(i for i in endpoints if i != config.node_id)
        if not others:
            return None
        pair = (config.curve_public_key(config.node_id), config.curve_secret_key()) if keys is not None else None
        # Every node, this one too (a redirect may name it), asked first: another one.
        client = Client(endpoints, config.workers, config.groups, prefer=others[0], default_timeout=5.0,
                        curve_server_keys=keys, curve_keypair=pair)
        try:
            # A lease read: the system group's master answers from its applied table (no log entry per ask).
            table = json.loads(decode_user_result(client.read(SYSTEM_GROUP, b"table", "lease", 5.0)))
        finally:
            client.close()
        if table.get("epoch", 0) < 1:
            return None
        for n in table.get("nodes", ()):
            if n["id"] == config.node_id and n["role"] == "removed":
                return int(table["epoch"])
        return None

    def _left_cluster(self, epoch, how=""):
        self.removed_epoch = epoch
        identity.write_removed(self.config.data_dir, self.config.node_id, epoch)
        self._fail("node %d was removed from the cluster at membership epoch %d%s; it stops for good (its id is "
                   "never used again)" % (self.config.node_id, epoch, " " + how if how else ""))

    def _mark_lost_marker(self):
        """The data directory lacks its identity marker (wiped, or never set up by `paxos-core init`): every
        worker must rebuild before it votes. Found here, before any worker runs: the first worker to finish
        its rebuild record puts the marker back, and a worker starting after that would otherwise take its
        empty log for a first start and vote with no memory (found by tests/test_snapshot_cluster.py).

        Only when asked (`rebuild`), or when an earlier start asked and its rebuild is still under way (a
        worker's rebuilding flag is there): otherwise StartError and nothing is written. An empty directory
        may be a replaced disk, but also a wrong path or a disk that did not mount; an operator says which."""
        data_dir = self.config.data_dir
        if identity.read_marker(data_dir) is not None:
            return
        under_way = os.path.isdir(data_dir) and any(identity.rebuilding(data_dir, i) for i in self._workers)
        if not (self.rebuild or under_way):
            raise StartError(
                "node %d: the data directory %s has no identity marker: it was wiped or replaced, is not this "
                "node's, or was never set up by paxos-core init; refusing to start with no memory of what this "
                "node promised and voted. If its disk was replaced, start it with --rebuild (it votes again "
                "only after rebuilding every group from its peers)" % (self.config.node_id, data_dir))
        os.makedirs(data_dir, exist_ok=True)
        reason = ("the data directory %s lacks its identity marker (lost, or never set up by paxos-core init)"
                  % data_dir)
        for index in self._workers:
            if not identity.rebuilding(data_dir, index):
                identity.mark_rebuilding(data_dir, index, reason)

    def pids(self):
        return {i: p.pid for i, p in self.processes.items()}

    def stop(self, grace=10.0):
        """Stop every worker (SIGTERM, SIGKILL after `grace` seconds) and wait for them."""
        self._grace = grace
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(grace + 10)
            if thread.is_alive():
                log.error("node %d: the supervisor thread did not end", self.config.node_id)
        if self._temp_config:
            try:
                os.unlink(self._temp_config)
            except OSError:
                pass
            self._temp_config = None

    # ------------------------------------------------------------------ the supervisor's thread
    def _run(self):
        try:
            for index in self._workers:
                if not self._stopping.is_set():
                    self._start_worker(index)
            while not self._stopping.is_set():
                self._pump(0.1)
                self._check()
        except BaseException as exc:
            log.exception("node %d: the supervisor failed; stopping the workers", self.config.node_id)
            self._fail("node %d: the supervisor failed: %s: %s" % (
                self.config.node_id, type(exc).__name__, " ".join(str(exc).split())), log_it=False)
        finally:
            self._shutdown(self._grace)
            self._selector.close()
            self._up.set()

    def _start_worker(self, index):
        w = self._workers[index]
        sock, child = channel.pair()
        # spawn.py: the worker imports this very paxos_core, whatever its current directory holds.
        argv = spawn.python_command("paxos_core.runtime.worker", self.config_path, index,
                                    logging.getLevelName(self.log_level))
        try:
            # A state machine of the user's is imported in the worker: hand it this process's sys.path, so a
            # module the embedding program can import is found there too (statemachine/loader.py).
            extra = {SYS_PATH_ENV: parent_sys_path()} if self.config.state_machine else None
            proc = subprocess.Popen(argv, stdin=child.fileno(), close_fds=True, env=spawn.environment(extra))
        finally:
            child.close()
        sock.setblocking(False)
        w.proc, w.sock, w.reader = proc, sock, channel.MessageReader()
        w.ready, w.reason, w.restart_at = False, "", None
        self._selector.register(sock, selectors.EVENT_READ, w)
        self.processes[index] = proc
        log.debug("node %d: worker %d started (pid %d)", self.config.node_id, index, proc.pid)

    def _pump(self, timeout):
        """Read what the channels hold (waiting up to `timeout` seconds for something) and act on it."""
        for key, _ in self._selector.select(timeout):
            self._read(key.data)

    def _read(self, w):
        """Everything the worker's channel holds now; at end of file the channel is closed."""
        while w.sock is not None:
            try:
                data = w.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._selector.unregister(w.sock)
                w.sock.close()
                w.sock = None
                return
            for message in w.reader.feed(data):
                self._on_message(w, message)

    def _on_message(self, w, message):
        kind = message.get("kind")
        if kind == "log":
            channel.forward_record(message.get("record") or {}, self.config.node_id, w.index)
        elif kind == "ready" and message.get("pid") == w.proc.pid:
            w.ready = True
            w.up_since = time.monotonic()
            if self.table is not None:
                self._tell(w, {"kind": "membership", "table": self.table})
            if all(x.ready for x in self._workers.values()):
                self._up.set()
        elif kind == "failed":
            w.reason = str(message.get("reason") or "")
        elif kind == "removed":
            # The membership table removed this node, and this worker's groups go on without it: once every
            # worker says so, the node records it (it never starts again) and stops.
            w.left = int(message.get("epoch") or 0)
            if all(x.left for x in self._workers.values()) and self.removed_epoch is None:
                self._left_cluster(w.left)
        elif kind == "membership":
            # The worker hosting the system group applied a newer membership table: every worker takes it.
            table = message.get("table")
            if isinstance(table, dict) and table.get("epoch", 0) > (self.table or {}).get("epoch", 0):
                self.table = table
                for other in self._workers.values():
                    if other.ready:
                        self._tell(other, {"kind": "membership", "table": table})

    def _tell(self, w, message):
        """Send a message down a worker's channel (small and rare: the membership table)."""
        if w.sock is None:
            return
        try:
            w.sock.setblocking(True)
            w.sock.sendall(channel.encode(message))
        except OSError:
            pass                        # the worker is gone: it gets the table when it starts again
        finally:
            if w.sock is not None:
                w.sock.setblocking(False)

    def _check(self):
        now = time.monotonic()
        if self._removed_late is not None and self.removed_epoch is None:
            self._left_cluster(self._removed_late, "(it heard of it late: it was down or cut off when it was "
                                                   "removed, and the table at that epoch says so)")
            return
        for w in self._workers.values():
            if w.proc is not None and w.proc.poll() is not None and not self._stopping.is_set():
                self._read(w)                # what it said before it exited
                self._on_exit(w)
                if self.failure is not None:
                    return
            if w.restart_at is not None and now >= w.restart_at and not self._stopping.is_set():
                self._start_worker(w.index)

    def _on_exit(self, w):
        node, proc = self.config.node_id, w.proc
        self._close_channel(w)
        w.proc = None
        if not self._up.is_set():
            # The node is starting: it does not run without this worker.
            self._fail(w.reason or "worker %d (pid %d) exited with code %s before it was up"
                       % (w.index, proc.pid, proc.returncode))
            return
        if w.ready and time.monotonic() - w.up_since >= self.stable_s:
            w.failures, w.backoff = 0, FIRST_BACKOFF
        w.failures += 1
        self.restarts[w.index] += 1
        what = ("could not start again: %s" % w.reason if w.reason else
                "(pid %d) died with exit code %s" % (proc.pid, proc.returncode))
        if w.failures > self.restart_limit:
            self._fail("worker %d %s (%d failures in a row; giving up)" % (w.index, what, w.failures))
            return
        log.error("node %d: worker %d %s; restarting it in %.1fs (restart #%d)", node, w.index, what, w.backoff,
                  self.restarts[w.index])
        w.restart_at = time.monotonic() + w.backoff
        w.backoff = min(w.backoff * 2, MAX_BACKOFF)

    def _fail(self, reason, log_it=True):
        """The node cannot run: remember why (one line) and stop every worker."""
        if self.failure is not None:
            return
        self.failure = reason
        if log_it and self._up.is_set():
            log.error("node %d stops: %s", self.config.node_id, reason)
        self._stopping.set()
        self._shutdown(self._grace)
        self.failed.set()
        self._up.set()
        if self.on_failure is not None:
            try:
                self.on_failure(reason)
            except Exception:
                log.exception("node %d: on_failure callback failed", self.config.node_id)

    def _shutdown(self, grace):
        """SIGTERM to every live worker; forward their last log records; SIGKILL what is left after `grace`."""
        live = [w for w in self._workers.values() if w.proc is not None and w.proc.poll() is None]
        for w in live:
            try:
                w.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while any(w.proc.poll() is None for w in live) and time.monotonic() < deadline:
            self._pump(0.05)
        for w in live:
            if w.proc.poll() is None:
                log.error("node %d: worker %d did not stop in %.0fs; killing it", self.config.node_id, w.index,
                          grace)
                w.proc.kill()
            try:
                w.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for w in self._workers.values():
            if w.sock is not None:
                self._read(w)
            self._close_channel(w)
            w.restart_at = None

    def _close_channel(self, w):
        if w.sock is not None:
            self._selector.unregister(w.sock)
            w.sock.close()
            w.sock = None

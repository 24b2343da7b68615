"""The cluster under test: node files, real node processes (``paxos-core node FILE``, fsync on), their PIDs.

Each node runs in its namespace (topology.py) as ``python -m paxos_core node FILE`` in a session of its own;
its stdout and stderr go to ``<dir>/logs/node<id>.log`` (appended across restarts). The node process is the
supervisor (``nsenter`` execs it, so the PID Popen gives is the supervisor's); its workers are its
children, found in /proc. Everything is stopped by PID, never by name.

Storage: with ``xfs=True`` every node's data directory is an XFS filesystem on a loop device of its own
(power cuts and disk stalls need one); the identity marker ``paxos-core init`` wrote is copied in.
"""
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from ..config import load_cluster, write_cluster


def _children(pid):
    """PIDs whose parent is ``pid`` (from /proc/PID/task/*/children)."""
    out = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                out.extend(int(x) for x in f.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


class PowerCutRefused(OSError):
    """A power cut was not injected: the filesystem was left as it was."""


def _run(*cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError("%s: %s" % (" ".join(cmd), result.stderr.strip() or "exit %d" % result.returncode))
    return result.stdout


class XfsDisk:
    """A sparse image file, its loop device and its XFS mount at ``mount``."""

    def __init__(self, image, mount, size=512 << 20):
        self.image, self.mount, self.loop = image, mount, None
        with open(image, "wb") as f:
            f.truncate(size)
        _run("mkfs.xfs", "-q", image)
        self.loop = _run("losetup", "-f", "--show", image).strip()
        _run("mount", self.loop, mount)

    def holders(self):
        """{pid: command line} of every process with its cwd, root, an open file or a mapping on this
        filesystem (from /proc)."""
        inside = lambda path: path == self.mount or path.startswith(self.mount + "/")
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            base = "/proc/" + entry
            try:
                links = [os.readlink(base + "/cwd"), os.readlink(base + "/root")]
                links += [os.readlink(base + "/fd/" + fd) for fd in os.listdir(base + "/fd")]
                with open(base + "/maps") as f:
                    links += [line.split(None, 5)[-1].strip() for line in f if "/" in line]
                if any(inside(link) for link in links):
                    with open(base + "/cmdline", "rb") as f:
                        found[int(entry)] = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
                continue
        return found

    def let_go(self, ours, timeout):
        """Kill (SIGKILL) the processes that ``ours(command line)`` says belong to this disk's node and still
        hold the filesystem (a worker spawned just before its node was killed), and wait up to ``timeout`` s
        until nothing holds it. Returns {pid: command line} of what still does."""
        deadline = time.monotonic() + timeout
        while True:
            held = self.holders()
            for pid, cmdline in held.items():
                if ours(cmdline):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if not held or time.monotonic() > deadline:
                return held
            time.sleep(0.1)

    def power_cut(self, ours=lambda cmdline: False, wait=10.0):
        """Every write not yet synced is lost: shut the filesystem down, then mount it again. The node must be
        down: its processes that still hold the filesystem (``ours``) are killed first; if anything else
        holds it, nothing is done (PowerCutRefused: the filesystem is left as it was)."""
        held = self.let_go(ours, wait)
        if held:
            raise PowerCutRefused("the filesystem is busy: %s" % "; ".join(
                "pid %d (%s)" % (pid, " ".join(cmd.split())[:80]) for pid, cmd in sorted(held.items())))
        _run("xfs_io", "-x", "-c", "shutdown", self.mount)
        self.remount(ours)

    def remount(self, ours):
        """Unmount (retried while the node's late processes let go) and mount again. If something that is
        not the node's keeps the shut-down filesystem busy, it is detached lazily and the image is mounted
        afresh through a new loop device (``nouuid``: the old superblock lives on until its holder exits)."""
        for _ in range(30):
            if subprocess.run(("umount", self.mount), capture_output=True).returncode == 0:
                _run("mount", self.loop, self.mount)
                return
            self.let_go(ours, 0.2)
        _run("umount", "-l", self.mount)
        subprocess.run(("losetup", "-d", self.loop), capture_output=True)     # freed when its holder exits
        self.loop = _run("losetup", "-f", "--show", self.image).strip()
        _run("mount", "-o", "nouuid", self.loop, self.mount)

    def freeze(self):
        _run("fsfreeze", "-f", self.mount)

    def thaw(self):
        subprocess.run(("fsfreeze", "-u", self.mount), capture_output=True)

    def close(self):
        if self.loop is None:
            return
        self.thaw()
        for _ in range(20):
            if subprocess.run(("umount", self.mount), capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        subprocess.run(("losetup", "-d", self.loop), capture_output=True)
        self.loop = None


class NodeProcess:
    def __init__(self, cluster, node_id, path, data_dir):
        self.cluster = cluster
        self.node_id = node_id
        self.path = path
        self.data_dir = data_dir
        self.proc = None
        self.paused = False
        self.env_extra = {}            # e.g. libfaketime for the clock fault
        self.starts = 0
        self.rebuild_next = False       # the next start passes --rebuild (set by the wipe fault)
        self.rebuild_bundle = None      # ... and --bundle this (the wipe fault, when its file lists no member left)
        self.join_bundle = None         # the first start is `node --join BUNDLE --dir FOLDER` (a joining node)
        self.log_path = os.path.join(cluster.dir, "logs", "node%d.log" % node_id)
        self.disk = None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        """Start the node's process; with `--rebuild` once after a wipe (`rebuild_next`). Not once the cluster
        is being closed (a fault's thread may still be healing while the run tears down)."""
        if self.cluster.closing:
            return
        env = dict(os.environ)
        env.update(self.cluster.env)
        env.update(self.env_extra)
        if self.join_bundle is not None and not os.path.exists(self.path):
            # A joining node's first start writes its folder from the bundle (join.py), as an operator does.
            how = ["--join", self.join_bundle, "--dir", os.path.dirname(self.path)]
        else:
            how = [self.path] + (["--rebuild"] if self.rebuild_next else []) + (
                ["--bundle", self.rebuild_bundle] if self.rebuild_next and self.rebuild_bundle else [])
        cmd = self.cluster.topology.exec_prefix(self.node_id) + [
            sys.executable, "-m", "paxos_core", "node"] + how + ["--log-level", "info"]
        self.rebuild_next = False
        self.rebuild_bundle = None
        with open(self.log_path, "ab") as log:
            log.write(b"=== nemesis: start %d of node %d (%s)\n" % (self.starts + 1, self.node_id,
                                                                  repr(sorted(self.env_extra.items())).encode()))
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        self.starts += 1
        self.paused = False

    def owns(self, cmdline):
        """True if a process's command line is this node's supervisor's or one of its workers'."""
        return " " + self.path in cmdline and "paxos_core" in cmdline

    def worker_pids(self):
        return _children(self.pid) if self.alive() else []

    def pids(self):
        return ([self.pid] + self.worker_pids()) if self.alive() else []

    def signal_all(self, sig):
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        """kill -9 of the supervisor and of every worker at once (a crash of the whole host)."""
        if not self.alive():
            return
        workers = self.worker_pids()
        for pid in [self.pid] + workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self._reap(workers)
        self.paused = False

    def stop(self, timeout=15.0):
        """SIGTERM (SIGCONT first if paused), then SIGKILL if it does not stop in time."""
        if not self.alive():
            return
        workers = self.worker_pids()
        self.signal_all(signal.SIGCONT)
        try:
            os.kill(self.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reap(workers)
        self.paused = False

    @staticmethod
    def _reap(pids, timeout=10.0):
        """Wait until the given workers (children of a dead supervisor) are gone; SIGKILL them at the end."""
        deadline = time.monotonic() + timeout
        for pid in pids:
            while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
                try:
                    with open("/proc/%d/stat" % pid) as f:
                        if f.read().split(")")[-1].split()[0] == "Z":
                            break
                except FileNotFoundError:
                    break
                time.sleep(0.05)
            else:
                if os.path.exists("/proc/%d" % pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def pause(self):
        self.signal_all(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal_all(signal.SIGCONT)
        self.paused = False


class ThreadStop:
    """Stops ONE thread of a process with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT) while its other threads run
    on: a worker's loop thread stands still, its ZeroMQ I/O threads keep taking in peer and client frames.
    ``resume`` (PTRACE_DETACH) lets it go. Both must be called from the same thread (ptrace's tracer is a
    thread); a tracer thread that exits lets its tracees go too."""

    SEIZE, INTERRUPT, DETACH = 0x4206, 0x4207, 17
    WALL = 0x40000000

    def __init__(self, tid):
        self.tid = tid
        self.signal = 0                # a signal that arrived while stopping it: delivered at the detach
        self.stopped = False
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self._libc.ptrace.restype = ctypes.c_long

    def _ptrace(self, request, data=0):
        if self._libc.ptrace(request, self.tid, None, ctypes.c_void_p(data) if data else None) == -1:
            err = ctypes.get_errno()
            raise OSError(err, "ptrace(%#x, %d): %s" % (request, self.tid, os.strerror(err)))

    def stop(self):
        self._ptrace(self.SEIZE)
        self._ptrace(self.INTERRUPT)
        _, status = os.waitpid(self.tid, self.WALL)
        if not os.WIFSTOPPED(status):
            raise OSError("thread %d ended instead of stopping (status %#x)" % (self.tid, status))
        if os.WSTOPSIG(status) != signal.SIGTRAP:
            self.signal = os.WSTOPSIG(status)          # a signal-delivery stop: hand the signal back later
        self.stopped = True

    def resume(self):
        if not self.stopped:
            return
        self.stopped = False
        try:
            self._ptrace(self.DETACH, self.signal)
        except OSError:
            try:                                       # it died meanwhile: collect what ptrace holds of it
                os.waitpid(self.tid, self.WALL | os.WNOHANG)
            except ChildProcessError:
                pass


class Cluster:
    """``nodes`` node files written as ``paxos-core init`` writes them, with the topology's addresses.

    ``spares``: hosts for nodes that join later (the `member` fault), ids nodes + 1, nodes + 2, ... (the ids
    the membership table gives out, in that order): each has its address in the topology, its key pair made
    by ``paxos-core keygen`` in ``<dir>/host<id>/keys`` (the secret key stays in that folder), and the client
    ports of node 1 on its own address. Clients are given every host's endpoint from the start: a node that
    is not there (yet, or any more) has no connection, and a client skips it at once.

    ``nodes`` holds the processes of the current members (voters and learners); it is replaced as a whole,
    never changed in place, so other threads may iterate it while the `member` fault changes it. A removed
    node's process moves to ``removed``."""

    def __init__(self, directory, topology, nodes=3, workers=2, groups=4, xfs=False, env=None, retain_instances=None,
                 spares=0):
        self.dir = directory
        self.topology = topology
        self.env = dict(env or {})
        # The nodes import this very paxos_core (the one running the nemesis), wherever the cwd is.
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.env["PYTHONPATH"] = package_root + os.pathsep + os.environ.get("PYTHONPATH", "")
        os.makedirs(os.path.join(directory, "logs"), exist_ok=True)
        conf_dir = os.path.join(directory, "cluster")
        # Ports: the same layout init writes; on namespaces every node has its own address anyway.
        base = 20000 if topology.mode == "netns" else None
        paths = write_cluster(conf_dir, nodes=nodes, workers=workers, groups=groups, host="127.0.0.1",
                              base_port=base, curve=True)
        for path in paths:
            self._set_hosts(str(path))
            if retain_instances is not None:
                self._set_retain(str(path), retain_instances)
        self.configs = load_cluster(conf_dir)
        self.conf_dir = conf_dir
        self.groups = groups
        self.workers = workers
        self.lease_s = self.configs[0].lease_ticks * self.configs[0].tick_ms / 1000.0
        self.nodes = {}
        for config in self.configs:
            node = NodeProcess(self, config.node_id, os.path.join(conf_dir, "node%d.toml" % config.node_id),
                               str(config.data_dir))
            self.nodes[config.node_id] = node
        self.removed = {}
        self.lock = threading.Lock()
        self.closing = False
        self.keypairs = {c.node_id: (c.curve_public_key(c.node_id), c.curve_secret_key()) for c in self.configs}
        first = self.configs[0]
        self.host_endpoints = {n.id: [n.client_endpoint(w) for w in range(workers)] for n in first.nodes}
        self.spare_ids = list(range(nodes + 1, nodes + 1 + spares))
        self.spare_ports = (first.address(first.node_id).peer_port, first.address(first.node_id).client_port)
        for node_id in self.spare_ids:
            self.keypairs[node_id] = self._keygen(os.path.join(directory, "host%d" % node_id, "keys"))
            self.host_endpoints[node_id] = ["tcp://%s:%d" % (topology.address(node_id), self.spare_ports[1] + w)
                                            for w in range(workers)]
        if xfs:
            for node in self.nodes.values():
                self._put_on_xfs(node)

    @staticmethod
    def _set_retain(path, retain):
        """Turn truncation on: ``storage.retain_instances`` in the node file."""
        with open(path) as f:
            text = f.read()
        if re.search(r"^\[storage\]\s*$", text, re.M):
            text = re.sub(r"^\[storage\]\s*$", "[storage]\nretain_instances = %d" % retain, text, count=1, flags=re.M)
        else:
            text += "\n[storage]\nretain_instances = %d\n" % retain
        with open(path, "w") as f:
            f.write(text)

    def _set_hosts(self, path):
        """Give node k (k-th [[cluster.nodes]] entry) the topology's address."""
        with open(path) as f:
            text = f.read()
        ids = iter(int(x) for x in re.findall(r'^\[\[cluster\.nodes\]\]\s*\nid = (\d+)', text, re.M))
        text = re.sub(r'^host = "127\.0\.0\.1"$', lambda m: 'host = "%s"' % self.topology.address(next(ids)),
                      text, flags=re.M)
        with open(path, "w") as f:
            f.write(text)

    def _put_on_xfs(self, node):
        saved = os.path.join(self.dir, "saved-node%d" % node.node_id)
        shutil.copytree(node.data_dir, saved)
        node.disk = XfsDisk(os.path.join(self.dir, "disk-node%d.img" % node.node_id), node.data_dir)
        for name in os.listdir(saved):
            shutil.copy2(os.path.join(saved, name), os.path.join(node.data_dir, name))
        shutil.rmtree(saved)
        os.sync()

    def _keygen(self, keys_dir):
        """A new host's key pair, made there as an operator makes it (``paxos-core keygen DIR``): (public,
        secret), z85 bytes."""
        import zmq.auth

        env = dict(os.environ)
        env.update(self.env)
        result = subprocess.run([sys.executable, "-m", "paxos_core", "keygen", keys_dir], capture_output=True,
                                text=True, env=env)
        if result.returncode != 0:
            raise OSError("paxos-core keygen %s: %s" % (keys_dir, result.stderr.strip()))
        return zmq.auth.load_certificate(os.path.join(keys_dir, "new.key_secret"))

    def joining_node(self, node_id, bundle_path):
        """The process of spare host ``node_id``'s node, which joins with ``bundle_path`` at its first start."""
        folder = os.path.join(self.dir, "host%d" % node_id)
        node = NodeProcess(self, node_id, os.path.join(folder, "node%d.toml" % node_id), os.path.join(folder, "data"))
        node.join_bundle = bundle_path
        return node

    def set_members(self, nodes, removed=None):
        """Replace ``nodes`` (and ``removed``) as a whole: see the class docstring."""
        with self.lock:
            self.nodes = dict(nodes)
            if removed is not None:
                self.removed = dict(removed)

    def any_node(self, node_id):
        """The node `node_id`, a member or one the member fault removed or replaced (KeyError if neither)."""
        node = self.nodes.get(node_id)
        return node if node is not None else self.removed[node_id]

    def everyone(self):
        """Every node process this cluster started: the members and those removed since."""
        return list(self.nodes.values()) + list(self.removed.values())

    def endpoints(self):
        """Every host's client endpoints, spare hosts included."""
        return {n: list(eps) for n, eps in self.host_endpoints.items()}

    def client_keys(self, admin=False, avoid=()):
        """Client options for this CURVE cluster: the nodes' public keys; `admin`: also a current member's key
        pair (administrative operations need one; other clients make their own pair), not one of `avoid`'s (a
        node being removed: its key stops being a member's)."""
        options = {"curve_server_keys": {n: pair[0] for n, pair in self.keypairs.items()}}
        if admin:
            members = [n for n in sorted(self.nodes) if n not in avoid] or sorted(self.nodes) or sorted(self.keypairs)
            options["curve_keypair"] = self.keypairs[members[0]]
        return options

    def start_all(self):
        for node in self.nodes.values():
            node.start()

    def stop_all(self):
        everyone = self.everyone()
        for node in everyone:
            if node.paused:
                node.resume()
        for node in everyone:
            node.stop()

    def close(self):
        """Stop every process by PID, then unmount the disks (the caller then deletes the namespaces)."""
        self.closing = True
        everyone = self.everyone()
        try:
            for node in everyone:
                if node.disk is not None:
                    node.disk.thaw()
            self.stop_all()
        finally:
            for node in everyone:
                if node.disk is not None:
                    node.disk.close()

    def worker_log_dirs(self, node_id):
        """The node's live worker directories (``worker-<i>``), not those set aside after damage
        (``worker-<i>.damaged-<time>``: never read again, so a bit flipped there could not be detected)."""
        node = self.nodes[node_id]
        return [os.path.join(node.data_dir, name) for name in sorted(os.listdir(node.data_dir))
                if re.fullmatch(r"worker-\d+", name) and os.path.isdir(os.path.join(node.data_dir, name))]

    def tracebacks(self):
        """{node id: number of 'Traceback' lines in its log}."""
        out = {}
        for node in sorted(self.everyone(), key=lambda n: n.node_id):
            node_id = node.node_id
            try:
                with open(node.log_path, "rb") as f:
                    out[node_id] = f.read().count(b"Traceback (most recent call last)")
            except FileNotFoundError:
                out[node_id] = 0
        return out

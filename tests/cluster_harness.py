"""A real paxos-core cluster on loopback for integration tests: one `paxos-core node` subprocess per node.

    cluster = LocalCluster(tmp_path, nodes=3, workers=2, groups=16)     # written and started
    client = cluster.client(prefer=2)
    cluster.kv(prefer=2).put(b"k", b"v")
    cluster.kill(3)                   # SIGKILL to the supervisor AND its workers, by pid
    cluster.start(3)
    cluster.close()                   # stops everything it started; raises if any process survived

Every process the harness starts, or learns of (workers and other children of a node, found in the status
replies and in /proc), is remembered by pid; close() stops them all (SIGTERM, SIGKILL after a grace period)
and checks in /proc that none is left.
"""
import os
import random
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import tomli_w

from paxos_core.client import Client
from paxos_core.config import load_cluster, write_cluster
from paxos_core.kv import KV

READY_TIMEOUT = 30.0
STOP_GRACE = 10.0
# Listening ports are taken below Linux's ephemeral range (32768-60999 by default): a port inside it can be
# grabbed, between write_cluster's check and the bind, as the source port of some outgoing connection (the
# nodes' own sockets reconnecting to peers that are not up yet), and the worker then fails with EADDRINUSE.
PORT_RANGE = (10000, 32000)


def package_env(env=None):
    """The environment for a `python -m paxos_core` subprocess that imports the paxos_core this test process
    imported (the checkout under test), whatever its cwd and whatever else is installed."""
    import paxos_core

    env = dict(os.environ if env is None else env)
    root = os.path.dirname(os.path.dirname(os.path.abspath(paxos_core.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_base_port(nodes, workers, host="127.0.0.1"):
    """A base port for write_cluster at which every port of the cluster is free now, below the ephemeral range."""
    span = 100 * (3 * nodes - 1) + workers
    lo, hi = PORT_RANGE[0], min(PORT_RANGE[1], _ephemeral_low()) - span
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(lo, hi)
        ports = [base + 100 * (3 * k + j) + w for k in range(nodes) for j in range(3) for w in range(workers)]
        socks = []
        try:
            for port in ports:
                s = socket.socket()
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port block found in %r" % (PORT_RANGE,))


def wait_for(predicate, timeout=10.0, interval=0.05, message=None):
    """Call `predicate` until it returns something truthy (returned) or `timeout` seconds pass
    (AssertionError naming `message` and the last value or exception seen)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:            # a node restarting, a request timing out: try again
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not true after %.1fs (last: %r)"
                                 % (message or getattr(predicate, "__name__", "condition"), timeout, last))
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------- /proc


def _proc_table():
    """{pid: (ppid, state)} of every process now, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        rest = stat[stat.rfind(")") + 2:].split()
        table[int(entry)] = (int(rest[1]), rest[0])
    return table


def descendants(pid):
    """Pids of every live descendant of `pid` (children, grandchildren, ...)."""
    table = _proc_table()
    children = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    out, todo = [], list(children.get(pid, ()))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def alive(pid):
    """True while `pid` exists and is not a zombie (a zombie has exited; only its exit status is left)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X")


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------- the cluster


class NodeProcess:
    """One `paxos-core node` subprocess (one incarnation of a node)."""

    def __init__(self, node_id, popen, stdout, stderr):
        self.node_id = node_id
        self.popen = popen
        self.stdout = stdout
        self.stderr = stderr

    @property
    def pid(self):
        return self.popen.pid

    def running_line(self):
        text = Path(self.stdout).read_text(errors="replace")
        return "running" in text


class LocalCluster:
    def __init__(self, tmp_path, nodes=3, workers=2, groups=16, lease_ticks=60, tick_ms=10, max_pending=None,
                 curve=True, paxos=None, limits=None, start=True, directory=None, command=None, storage=None):
        """Write a cluster under tmp_path (write_cluster, then the [paxos]/[limits]/[storage] overrides) and
        start it.

        `directory`: use the node files already there (e.g. from `paxos-core init`) as they are instead.
        `command`: how to run paxos-core (default ``[sys.executable, "-m", "paxos_core"]``); the node is
        started as ``command + ["node", FILE, "--log-level", "info"]``.
        """
        self.tmp = Path(tmp_path)
        self.logs = self.tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.command = list(command or [sys.executable, "-m", "paxos_core"])
        if directory is None:
            self.dir = self.tmp / "cluster"
            write_cluster(self.dir, nodes=nodes, workers=workers, groups=groups, curve=curve,
                          base_port=free_base_port(nodes, workers))
            paxos_overrides = {"lease_ticks": lease_ticks, "tick_ms": tick_ms}
            paxos_overrides.update(paxos or {})
            limit_overrides = dict(limits or {})
            if max_pending is not None:
                limit_overrides["max_pending"] = max_pending
            for path in sorted(self.dir.glob("*.toml")):
                self._edit(path, paxos_overrides, limit_overrides, storage)
        else:
            self.dir = Path(directory)
        self.configs = {cfg.node_id: cfg for cfg in load_cluster(self.dir)}
        self.node_ids = sorted(self.configs)
        first = self.configs[self.node_ids[0]]
        self.workers = first.workers
        self.groups = first.groups
        self.procs = {}                     # node id -> NodeProcess of the running incarnation
        self.known_pids = set()             # every pid started or learned of, for the final check
        self.down = set()                   # nodes stopped or killed by the test
        self._incarnation = {n: 0 for n in self.node_ids}
        self._clients = []
        self._admin = Client.from_config(self.configs[self.node_ids[0]], attempt_timeout=1.0)
        self._closed = False
        if start:
            try:
                self.start_all()
            except BaseException:
                self.close(check=False)
                raise

    @staticmethod
    def _edit(path, paxos, limits, storage=None):
        with open(path, "rb") as f:
            data = tomllib.load(f)
        data.setdefault("paxos", {}).update(paxos)
        data.setdefault("limits", {}).update(limits)
        if storage:
            data.setdefault("storage", {}).update(storage)
        with open(path, "wb") as f:
            tomli_w.dump(data, f)

    def config(self, node=None):
        return self.configs[node or self.node_ids[0]]

    def config_path(self, node):
        return self.configs[node].path

    # ------------------------------------------------------------------ processes
    def _spawn(self, node, rebuild=False):
        self._incarnation[node] += 1
        stem = self.logs / ("node%d-%d" % (node, self._incarnation[node]))
        stdout, stderr = str(stem) + ".out", str(stem) + ".err"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            popen = subprocess.Popen(self.command + ["node", str(self.config_path(node)), "--log-level", "info"]
                                     + (["--rebuild"] if rebuild else []),
                                     stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=str(self.tmp),
                                     env=package_env())
        self.known_pids.add(popen.pid)
        proc = NodeProcess(node, popen, stdout, stderr)
        self.procs[node] = proc
        self.down.discard(node)
        return proc

    def log_tail(self, node, lines=40):
        proc = self.procs.get(node)
        if proc is None:
            return "(node %d never started)" % node
        out = []
        for path in (proc.stdout, proc.stderr):
            try:
                text = Path(path).read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(no %s)" % path]
            out.append("---- %s ----\n%s" % (path, "\n".join(text)))
        return "\n".join(out)

    def _wait_ready(self, node, timeout=READY_TIMEOUT):
        proc = self.procs[node]
        deadline = time.monotonic() + timeout
        while True:
            code = proc.popen.poll()
            if code is not None:
                raise AssertionError("node %d exited with code %s while starting\n%s"
                                     % (node, code, self.log_tail(node)))
            if proc.running_line():
                rows = self._admin.status(node, timeout=1.0)
                if len(rows) == self.workers and all("error" not in r for r in rows):
                    self._learn(node, rows)
                    return rows
            if time.monotonic() >= deadline:
                raise AssertionError("node %d not ready after %.0fs\n%s" % (node, timeout, self.log_tail(node)))
            time.sleep(0.05)

    def _learn(self, node, rows=None):
        """Remember the pids of the node's workers (status) and of every other child (/proc)."""
        proc = self.procs.get(node)
        if proc is not None and proc.popen.poll() is None:
            self.known_pids.update(descendants(proc.pid))
        for r in rows or ():
            if "pid" in r:
                self.known_pids.add(int(r["pid"]))

    def start(self, node, wait=True, rebuild=False):
        """Start a node (`rebuild`: with --rebuild, after its data directory was wiped)."""
        if node in self.procs and self.procs[node].popen.poll() is None:
            raise AssertionError("node %d is already running" % node)
        self._spawn(node, rebuild)
        if wait:
            return self._wait_ready(node)

    def start_all(self):
        for node in self.node_ids:
            self._spawn(node)
        for node in self.node_ids:
            self._wait_ready(node)

    def alive_nodes(self):
        return [n for n in self.node_ids if n in self.procs and self.procs[n].popen.poll() is None
                and n not in self.down]

    def kill(self, node, sig=signal.SIGKILL):
        """Signal the node's supervisor AND its workers (and any other child) by pid: kill -9 of a whole node.

        The supervisor goes first, so that it cannot restart a worker it sees die. Waits until they are gone
        when `sig` is SIGKILL."""
        proc = self.procs[node]
        pids = set(descendants(proc.pid))
        try:
            pids.update(self.worker_pids(node, timeout=1.0).values())
        except Exception:
            pass
        self.known_pids.update(pids)
        _signal(proc.pid, sig)
        for pid in pids:
            _signal(pid, sig)
        self.down.add(node)
        if sig == signal.SIGKILL:
            proc.popen.wait(timeout=10)
            wait_for(lambda: not any(alive(p) for p in pids), 10, message="node %d's processes gone" % node)
        return sorted(pids)

    def stop(self, node, timeout=STOP_GRACE + 10):
        """SIGTERM to the node (it stops its workers); wait for it. Returns its exit code."""
        proc = self.procs[node]
        self._learn(node)
        children = set(descendants(proc.pid))
        _signal(proc.pid, signal.SIGTERM)
        try:
            code = proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("node %d did not stop within %.0fs of SIGTERM\n%s"
                                 % (node, timeout, self.log_tail(node)))
        self.down.add(node)
        wait_for(lambda: not any(alive(p) for p in children), 10, message="node %d's workers gone" % node)
        return code

    def restart(self, node):
        code = self.stop(node)
        self.start(node)
        return code

    # ------------------------------------------------------------------ clients and status
    def client(self, prefer=None, **options):
        """A Client of the whole cluster preferring node `prefer`; closed by close()."""
        c = Client.from_config(self.config(), prefer=prefer, **options)
        self._clients.append(c)
        return c

    def kv(self, prefer=None, client=None, **options):
        return KV(client or self.client(prefer, **options), self.groups)

    def status(self, node, timeout=5.0):
        """The node's per-worker status dicts; AssertionError if a worker does not answer."""
        rows = self._admin.status(node, timeout=timeout)
        bad = [r for r in rows if "error" in r]
        if bad:
            raise AssertionError("node %d: no status from %s" % (node, bad))
        self._learn(node, rows)
        return rows

    def worker_status(self, node, worker, timeout=5.0):
        rows = [r for r in self.status(node, timeout) if r["worker"] == worker]
        return rows[0]

    def worker_pids(self, node, timeout=5.0):
        return {r["worker"]: int(r["pid"]) for r in self.status(node, timeout)}

    def group_detail(self, node, timeout=5.0):
        """{group: that group's status entry} of every group the node hosts (first 64 per worker)."""
        return {g["group"]: g for r in self.status(node, timeout) for g in r["group_detail"]}

    def master_of(self, group, nodes=None):
        """The group's master as every (live) node's status reports it, or None while they disagree or
        know of none."""
        seen = set()
        for node in nodes or self.alive_nodes():
            detail = self.group_detail(node, timeout=2.0).get(group)
            if detail is None:
                return None
            seen.add(detail["master"])
        if len(seen) == 1 and 0 not in seen:
            return seen.pop()
        return None

    def converged(self, nodes=None, groups=None):
        """True when every node's applied == chosen on every group, and equal across the nodes."""
        nodes = nodes or self.alive_nodes()
        views = [self.group_detail(n, timeout=2.0) for n in nodes]
        for group in groups if groups is not None else views[0]:
            marks = set()
            for view in views:
                g = view.get(group)
                if g is None or g["applied"] != g["chosen"]:
                    return False
                marks.add(g["applied"])
            if len(marks) != 1:
                return False
        return True

    # ------------------------------------------------------------------ teardown
    def close(self, check=True):
        """Stop every process started or learned of; raise AssertionError if any survives."""
        if self._closed:
            return
        self._closed = True
        for c in self._clients:
            c.close()
        for node, proc in self.procs.items():
            if proc.popen.poll() is None:
                self.known_pids.update(descendants(proc.pid))
                _signal(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs.values():
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        survivors = [p for p in self.known_pids if alive(p)]
        while survivors and time.monotonic() < deadline:
            time.sleep(0.05)
            survivors = [p for p in survivors if alive(p)]
        for pid in survivors:
            _signal(pid, signal.SIGKILL)
        for proc in self.procs.values():
            try:
                proc.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._admin.close()
        if survivors:
            wait_for(lambda: not any(alive(p) for p in survivors), 5, message="killed processes gone")
        left = sorted(p for p in self.known_pids if alive(p))
        if check:
            assert not left, "processes left running after the cluster was closed: %s" % left
            if survivors:
                raise AssertionError("processes had to be killed with SIGKILL at teardown: %s" % sorted(survivors))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(check=exc[0] is None)

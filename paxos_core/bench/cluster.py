"""`paxos-core bench`: a local 3-replica cluster under load, measured.

Every point of a sweep starts a fresh cluster of 3 nodes (real processes, fsync on, storage in a temporary
directory deleted afterwards), elects a master for every group, then starts client processes
(paxos_core.bench.loadgen) that drive key-value puts for `duration` seconds after a warm-up. Closed loop,
each client process keeps `concurrency` requests in flight. The batching mode says what a request is:

* `server` (the default, and the headline): one operation per request (`Client.propose`, what `KV.put`
  does), the master packing concurrent requests into Paxos instances (adaptive batching);
* `client`: `batch` operations per request (`Client.propose_batch`, 32 by default), proposed as one value:
  what a caller that batches its own writes gets;
* `off`: one operation per request and one request per Paxos instance (`paxos.max_batch_count` = 1).

So operations in flight = client processes x concurrency x operations per request (2 x 128 x 1 = 256 by
default; 2 x 128 x 32 = 8,192 in client mode).

It reports committed ops/s, latency percentiles (per operation), fsyncs and messages per op (summed over the
3 replicas), and, read from /proc at the start and end of the measured window for every process by pid:
CPU microseconds per op and CPU in cores by role (replica workers; the node supervisors/facades; the
client processes, which include the facade's client library), and per replica (its supervisor and
workers) CPU seconds and cores, RSS, PSS (shared pages split between processes) and the sum of its
processes' peak RSS. A figure that would miss a process that did not live through the window is None.
"""
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass, field

import numpy as np
import tomli_w

from ..client import Client
from ..config import load_cluster, write_cluster
from ..runtime import spawn
from ..statemachine import kv

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Point:
    groups: int = 64
    workers: int = 2
    value_size: int = 100
    batching: str = "server"      # "server", "client" or "off" (see the module's doc)
    clients: int = 2              # client processes
    concurrency: int = 128        # requests in flight per client process (closed loop), of request_batch() ops
    batch: int = 0                # operations per request in client mode (0: 32)
    mode: str = "closed"
    rate: float = 0.0             # open loop: total ops/s over all clients
    duration: float = 5.0
    warmup: float = 1.0
    curve: bool = False
    env: dict = field(default_factory=dict)    # environment of the node processes (e.g. an optimisation off)
    loadgen: str = "client"       # "client": the real Client (bench/loadgen.py); "lean": bench/leanload.py
    label: str = ""

    def request_batch(self):
        if self.batching != "client":
            return 1
        if self.batch:
            return self.batch
        if self.value_size >= 16 * 1024:
            return 1                  # large values: one per request (a request of 32 would be megabytes)
        return 32


# ---------------------------------------------------------------------------------------------- /proc
def cpu_seconds(pid):
    """User + system CPU seconds the process has used so far (/proc/PID/stat), or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def _kb_field(path, field):
    """A "kB" field of a /proc file in bytes (None if the process is gone or the field is missing)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss(pid):
    """The highest resident set size the process has had (VmHWM)."""
    return _kb_field("/proc/%d/status" % pid, "VmHWM:")


def rss(pid):
    """Resident set size now (VmRSS): shared pages (libraries) count in every process that maps them."""
    return _kb_field("/proc/%d/status" % pid, "VmRSS:")


def pss(pid):
    """Proportional set size now: each shared page split between the processes that map it, so that sums
    over processes count it once (/proc/PID/smaps_rollup, Linux 4.14+)."""
    return _kb_field("/proc/%d/smaps_rollup" % pid, "Pss:")


def _total(values):
    """Sum, or None if any value is None (a process gone: a sum without it would be too low)."""
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def _mb(n):
    return None if n is None else n / 2 ** 20


# ---------------------------------------------------------------------------------------------- cluster
class BenchCluster:
    """Three nodes on loopback in a temporary directory, stopped and deleted on close()."""

    def __init__(self, point, base_dir=None, storage=None, nodes=3):
        """`storage`: overrides of the node files' [storage] table (e.g. {"retain_instances": 256}); `nodes`:
        how many (3 unless a benchmark needs more, as `bench member` does)."""
        self.point = point
        self.dir = tempfile.mkdtemp(prefix="paxos-bench-", dir=base_dir)
        self.procs = {}
        self.logs = {}
        self.client = None
        cluster_dir = os.path.join(self.dir, "cluster")
        write_cluster(cluster_dir, nodes=nodes, workers=point.workers, groups=point.groups, curve=point.curve)
        self.cluster_dir = cluster_dir
        for path in sorted(p for p in os.listdir(cluster_dir) if p.endswith(".toml")):
            full = os.path.join(cluster_dir, path)
            with open(full, "rb") as f:
                doc = tomllib.load(f)
            paxos = doc.setdefault("paxos", {})
            if point.batching == "off":
                paxos["max_batch_count"] = 1
            if point.value_size > 512 * 1024:
                paxos["max_value_bytes"] = point.value_size + 1024
                paxos["max_batch_bytes"] = point.value_size + 1024
            doc.setdefault("limits", {})["max_pending"] = max(20000, point.clients * point.concurrency
                                                              * point.request_batch() * 2)
            if storage:
                doc.setdefault("storage", {}).update(storage)
            with open(full, "wb") as f:
                f.write(tomli_w.dumps(doc).encode())
        self.configs = load_cluster(cluster_dir)

    def config(self, node_id):
        return next(cfg for cfg in self.configs if cfg.node_id == node_id)

    def start_node(self, node_id, rebuild=False):
        """Start one node's process (its log is appended to node<id>.log); `rebuild`: with --rebuild (after
        wipe_node)."""
        cfg = self.config(node_id)
        if node_id in self.logs:
            self.logs[node_id].close()
        log = open(os.path.join(self.dir, "node%d.log" % node_id), "ab")
        self.logs[node_id] = log
        self.procs[node_id] = subprocess.Popen(
            spawn.python_command("paxos_core", "node", cfg.path, "--log-level", "warning",
                                 *(["--rebuild"] if rebuild else [])),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=spawn.environment(self.point.env))

    def stop_node(self, node_id, timeout=20.0):
        """Stop one node (SIGTERM, then SIGKILL after `timeout`) and wait for its process to exit."""
        proc = self.procs[node_id]
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def wipe_node(self, node_id):
        """Delete a stopped node's data directory (its keys and node file stay): a replaced disk."""
        data_dir = self.config(node_id).data_dir
        shutil.rmtree(data_dir)
        os.makedirs(data_dir)

    def disk_bytes(self, node_id):
        """Bytes of the node's data directory on disk (what `du --apparent-size` counts)."""
        total = 0
        for root, _, files in os.walk(self.config(node_id).data_dir):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    pass
        return total

    def start(self, timeout=60.0):
        for cfg in self.configs:
            self.start_node(cfg.node_id)
        self.client = Client.from_config(self.configs[0], default_timeout=10.0)
        deadline = time.monotonic() + timeout
        while True:
            statuses = self.client.status(timeout=1.0)
            if all("error" not in s for s in statuses):
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs.values()):
                problems = [s for s in statuses if "error" in s]
                logs = []
                for node_id in self.logs:
                    self.logs[node_id].flush()
                    with open(os.path.join(self.dir, "node%d.log" % node_id), "rb") as f:
                        logs.append("--- node %d log:\n%s" % (node_id, f.read()[-3000:].decode(errors="replace")))
                raise RuntimeError("bench cluster did not start: %s\n%s" % (problems, "\n".join(logs)))
            time.sleep(0.2)
        return self

    def elect(self, concurrency=256):
        """One put per group, so that every group has a master before the measurement."""
        pending = []
        for g in range(self.point.groups):
            pending.append(self.client.propose_future(g, kv.encode_put(b"warm", b"up"), timeout=30.0))
            if len(pending) >= concurrency:
                pending.pop(0).result()
        for f in pending:
            f.result()

    def worker_stats(self):
        statuses = self.client.status(timeout=10.0)
        return statuses

    def pids(self):
        roles = {"workers": [], "supervisors": [p.pid for p in self.procs.values()]}
        per_node = {n: [p.pid] for n, p in self.procs.items()}
        for s in self.worker_stats():
            if "pid" in s:
                roles["workers"].append(s["pid"])
                per_node[s["node"]].append(s["pid"])
        return roles, per_node

    def close(self):
        if self.client is not None:
            self.client.close()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for log in self.logs.values():
            log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _max(values):
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _sum_stat(statuses, *path):
    total = 0
    for s in statuses:
        v = s
        for key in path:
            v = v.get(key, 0) if isinstance(v, dict) else 0
        total += v or 0
    return total


# ---------------------------------------------------------------------------------------------- one point
def run_point(point, base_dir=None, progress=None):
    cluster = BenchCluster(point, base_dir)
    clients = []
    try:
        cluster.start()
        if progress:
            progress("electing masters for %d groups" % point.groups)
        cluster.elect()
        roles, per_node = cluster.pids()
        if len(roles["workers"]) != 3 * point.workers:     # a figure must not silently leave a worker out
            raise RuntimeError("bench: %d of %d workers told their pid" % (len(roles["workers"]), 3 * point.workers))
        out_prefix = os.path.join(cluster.dir, "client")
        per_client_rate = point.rate / point.clients if point.rate else 0
        for k in range(point.clients):
            argv = spawn.python_command(
                "paxos_core.bench.leanload" if point.loadgen == "lean" else "paxos_core.bench.loadgen", "--cluster", cluster.cluster_dir, "--out", "%s%d" % (out_prefix, k),
                "--groups", point.groups, "--concurrency", point.concurrency, "--value-size", point.value_size,
                "--batch", point.request_batch(), "--mode", point.mode, "--rate", per_client_rate or 1000,
                "--warmup", point.warmup, "--duration", point.duration)
            clients.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, text=True, env=spawn.environment(point.env)))
        for proc in clients:
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError("bench client did not start")
        for proc in clients:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        roles["clients"] = [p.pid for p in clients]
        every_pid = [pid for pids in roles.values() for pid in pids]
        time.sleep(point.warmup)
        before_stats = cluster.worker_stats()
        before_cpu = {pid: cpu_seconds(pid) for pid in every_pid}
        t0 = time.monotonic()
        if progress:
            progress("measuring for %.0fs" % point.duration)
        time.sleep(point.duration)
        elapsed = time.monotonic() - t0
        after_cpu = {pid: cpu_seconds(pid) for pid in every_pid}
        memory = {pid: (rss(pid), pss(pid), peak_rss(pid)) for pid in every_pid}
        after_stats = cluster.worker_stats()
        for proc in clients:
            proc.stdin.close()              # the clients wait for this to exit: alive while measured above
        for proc in clients:
            proc.wait(timeout=point.duration + 60)
        ops = 0
        errors = {}
        rates = []
        lat = []
        for k in range(point.clients):
            with open("%s%d.json" % (out_prefix, k)) as f:
                summary = json.load(f)
            ops += summary["ops"]
            rates.append(summary["ops"] / summary["window"])
            for name, n in summary["errors"].items():
                errors[name] = errors.get(name, 0) + n
            lat.append(np.load("%s%d.npy" % (out_prefix, k)))
        latencies = np.concatenate(lat) if lat else np.zeros(0)
        ops_per_sec = sum(rates)
        measured_ops = max(1, ops_per_sec * elapsed)
        fsyncs = _sum_stat(after_stats, "log", "syncs") - _sum_stat(before_stats, "log", "syncs")
        messages = (_sum_stat(after_stats, "counters", "msg_out") - _sum_stat(before_stats, "counters", "msg_out"))
        instances = (_sum_stat(after_stats, "counters", "chosen") - _sum_stat(before_stats, "counters", "chosen")) / 3

        def used(pids):
            """CPU seconds of `pids` in the measured window (None if one of them did not live through it)."""
            return _total(None if before_cpu[p] is None or after_cpu[p] is None else after_cpu[p] - before_cpu[p]
                          for p in pids)

        role_cpu = {role: used(pids) for role, pids in roles.items()}
        replicas = {}
        for node, pids in sorted(per_node.items()):
            seconds = used(pids)
            replicas[str(node)] = {
                "cpu_seconds": seconds, "cpu_cores": None if seconds is None else seconds / elapsed,
                "rss_mb": _mb(_total(memory[p][0] for p in pids)), "pss_mb": _mb(_total(memory[p][1] for p in pids)),
                "peak_rss_mb": _mb(_total(memory[p][2] for p in pids))}
        processes = [{"pid": pid, "role": role, "cpu_seconds": used([pid]), "rss_mb": _mb(memory[pid][0]),
                      "pss_mb": _mb(memory[pid][1]), "peak_rss_mb": _mb(memory[pid][2])}
                     for role, pids in roles.items() for pid in pids]
        pct = (lambda q: float(np.percentile(latencies, q) * 1000)) if len(latencies) else (lambda q: None)
        closed = point.mode == "closed"
        return {
            "point": asdict(point),
            "groups": point.groups, "workers": point.workers, "value_size": point.value_size,
            "mode": point.batching, "loadgen": point.loadgen, "clients": point.clients, "concurrency": point.concurrency,
            "loop": point.mode, "offered_rate": point.rate or None, "variant": point.label or "default",
            # closed loop: each client process keeps `concurrency` requests outstanding, each of
            # `ops_per_request` operations (Client.propose_batch when > 1)
            "ops_per_request": point.request_batch(),
            "requests_in_flight": point.clients * point.concurrency if closed else None,
            "ops_in_flight": point.clients * point.concurrency * point.request_batch() if closed else None,
            "ops_per_sec": round(ops_per_sec, 1),
            "p50_ms": pct(50), "p99_ms": pct(99), "p999_ms": pct(99.9),
            "fsyncs_per_op": fsyncs / measured_ops, "messages_per_op": messages / measured_ops,
            "ops_per_instance": measured_ops / instances if instances else None,
            "cpu_us_per_op": {role: None if t is None else t / measured_ops * 1e6 for role, t in role_cpu.items()},
            "cpu_cores": {role: None if t is None else t / elapsed for role, t in role_cpu.items()},
            "replicas": replicas,
            "rss_mb_per_replica": _max(r["rss_mb"] for r in replicas.values()),
            "pss_mb_per_replica": _max(r["pss_mb"] for r in replicas.values()),
            "peak_rss_mb_per_replica": _max(r["peak_rss_mb"] for r in replicas.values()),
            "processes": processes,
            "errors": errors, "duration": elapsed,
        }
    finally:
        for proc in clients:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        cluster.close()


# ---------------------------------------------------------------------------------------------- sweeps
def points_from(args):
    grid = itertools.product(args.groups, args.workers, args.value_size, args.batching, args.clients, args.loadgen)
    env = dict(kv.split("=", 1) for kv in (args.env or ()))
    out = []
    for groups, workers, value, batching, clients, loadgen in grid:
        variants = [("default", env)]
        if args.compare:
            changed = dict(env)
            changed.update(dict(kv.split("=", 1) for kv in args.compare))
            variants.append((",".join(args.compare), changed))
        for _ in range(args.repeat or 1):
            for label, variant_env in variants:       # alternate, so both see the same machine noise
                out.append(Point(groups=groups, workers=workers, value_size=value, batching=batching,
                                 clients=clients, concurrency=args.concurrency, batch=args.batch, mode=args.mode,
                                 rate=args.rate, duration=args.duration, warmup=args.warmup, curve=args.curve,
                                 env=dict(variant_env), label=label, loadgen=loadgen))
    return out


def medians(results):
    """One row per (point, variant): the median of its repeated runs (figures only; first run's settings)."""
    groups = {}
    for r in results:
        p = r["point"]
        key = (p["groups"], p["workers"], p["value_size"], p["batching"], p["loadgen"], p["clients"], p["mode"], p["rate"],
               r["variant"])
        groups.setdefault(key, []).append(r)
    out = []
    for runs in groups.values():
        row = dict(runs[0])
        row["runs"] = len(runs)
        row["ops_per_sec_runs"] = [x["ops_per_sec"] for x in runs]
        for k in ("ops_per_sec", "p50_ms", "p99_ms", "p999_ms", "fsyncs_per_op", "messages_per_op",
                  "rss_mb_per_replica", "pss_mb_per_replica", "peak_rss_mb_per_replica"):
            row[k] = _median(x[k] for x in runs)
        for k in ("cpu_us_per_op", "cpu_cores"):
            row[k] = {role: _median(x[k][role] for x in runs) for role in runs[0][k]}
        row["replicas"] = {node: {k: _median(x["replicas"][node][k] for x in runs) for k in figures}
                           for node, figures in runs[0]["replicas"].items()}
        out.append(row)
    return out


def _median(values):
    """The median of the values that are not None (None if none is)."""
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


OPEN_RATES_ONE_OP = (1000, 2500, 5000, 7500, 10000)
OPEN_RATES_BATCHED = (10000, 20000, 40000, 60000, 80000)


def full_sweep(duration=5.0):
    """The sweep docs/BENCHMARKS.md reports: groups x batching mode, then workers, then value sizes, then
    open-loop rates (the latency-throughput curve)."""
    pts = []
    for batching in ("off", "server", "client"):
        for g in (1, 4, 16, 64, 100, 256, 1024, 10000):
            pts.append(Point(groups=g, batching=batching, duration=duration))
        pts.append(Point(groups=100, workers=1, batching=batching, duration=duration))
        for v in (16, 1024, 100 * 1024):
            pts.append(Point(groups=100, value_size=v, batching=batching, duration=duration,
                             concurrency=16 if v > 10000 else 128))
    # Latency against throughput: open loop at fixed offered rates, 100 groups, up to past the closed-loop peak.
    for batching, rates in (("off", OPEN_RATES_ONE_OP), ("server", OPEN_RATES_ONE_OP), ("client", OPEN_RATES_BATCHED)):
        for rate in rates:
            pts.append(Point(groups=100, batching=batching, mode="open", rate=rate, duration=duration))
    return pts


def in_flight(r):
    """E.g. "2x128x32": client processes x requests in flight each x operations per request (or "open")."""
    if r.get("loop") != "closed":
        return "open"
    return "%dx%dx%d" % (r["clients"], r["concurrency"], r["ops_per_request"])


def _f(value, form):
    return "-" if value is None else form % value


def table(results):
    head = ("%7s %3s %7s %6s %10s %9s %8s %8s %8s %7s %7s %8s %8s %8s %6s %7s %7s  %s"
            % ("groups", "wrk", "value", "mode", "in-flight", "ops/s", "p50ms", "p99ms", "p999ms", "fsync/op",
               "msg/op", "cpu-w", "cpu-f", "cpu-c", "cores", "PSS/rep", "MB/rep", "variant"))
    lines = [head, "-" * len(head)]
    for r in results:
        c = r["cpu_us_per_op"]
        cores = _total(r["cpu_cores"][role] for role in ("workers", "supervisors"))
        lines.append("%7d %3d %7d %6s %10s %9.0f %8s %8s %8s %7.3f %7.2f %8s %8s %8s %6s %7s %7s  %s%s" % (
            r["groups"], r["workers"], r["value_size"], r["mode"], in_flight(r), r["ops_per_sec"],
            _f(r["p50_ms"], "%.2f"), _f(r["p99_ms"], "%.2f"), _f(r["p999_ms"], "%.2f"), r["fsyncs_per_op"],
            r["messages_per_op"], _f(c["workers"], "%.1f"), _f(c["supervisors"], "%.1f"), _f(c["clients"], "%.1f"),
            _f(cores, "%.2f"), _f(r["pss_mb_per_replica"], "%.0f"), _f(r["peak_rss_mb_per_replica"], "%.0f"),
            r.get("variant", "default") + (" (lean load generator)" if r.get("loadgen") == "lean" else ""),
            (" open loop @%d/s" % r["offered_rate"] if r.get("loop") == "open" else "")
            + (" (median of %d)" % r["runs"] if r.get("runs", 1) > 1 else "")))
    lines.append("in-flight: client processes x requests in flight per process (--concurrency) x operations per "
                 "request (1, or --batch in client mode: 32) = operations in flight; mode: server = one op per request, "
                 "the master batches; client = propose_batch; off = one op per Paxos instance")
    lines.append("cpu-w/f/c: CPU microseconds per op of the replica workers / node supervisors / client "
                 "processes, summed over the 3 replicas; cores: CPU of the 3 replicas (workers + supervisors) "
                 "in cores busy over the measurement")
    lines.append("PSS/rep: memory of the largest replica (supervisor + workers, shared pages split) at the end; "
                 "MB/rep: the sum of its processes' peak RSS")
    return "\n".join(lines)


SUMMARY_KEYS = ("ops_per_sec", "p50_ms", "p99_ms", "p999_ms", "fsyncs_per_op", "messages_per_op", "groups",
                "workers", "value_size", "mode", "loop", "loadgen", "clients", "concurrency", "ops_per_request",
                "requests_in_flight", "ops_in_flight", "cpu_us_per_op", "cpu_cores", "rss_mb_per_replica",
                "pss_mb_per_replica", "peak_rss_mb_per_replica", "replicas")


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def summary_json(results):
    """The last line of `paxos-core bench`: one object per point (an object alone for one point)."""
    rows = [{k: _rounded(r[k]) for k in SUMMARY_KEYS} for r in results]
    return json.dumps(rows[0] if len(rows) == 1 else rows)


def plot(results, directory):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    files = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for batching in ("off", "server", "client"):
        rows = sorted((r for r in results if r["mode"] == batching and r["value_size"] == 100
                       and r["workers"] == 2 and r["loop"] == "closed"), key=lambda r: r["groups"])
        if rows:
            ax.plot([r["groups"] / 2 for r in rows], [r["ops_per_sec"] for r in rows], marker="o",
                    label="%s batching" % batching)
    ax.set_xscale("log")
    ax.set_xlabel("groups per core (3 replicas on one 2-core machine)")
    ax.set_ylabel("committed ops/s")
    files.append(_save(plt, fig, ax, "paxos-core: throughput against groups per core",
                       os.path.join(directory, "ops_vs_groups.png")))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for batching in ("off", "server", "client"):
        rows = sorted((r for r in results if r["mode"] == batching and r["p99_ms"] is not None),
                      key=lambda r: r["ops_per_sec"])
        curve = [r for r in rows if r["loop"] == "open"]
        if curve:
            # open-loop runs at fixed offered rates: a latency-throughput curve
            ax.plot([r["ops_per_sec"] for r in curve], [r["p99_ms"] for r in curve], marker="o",
                    label="p99, %s batching (open loop)" % batching)
            ax.plot([r["ops_per_sec"] for r in curve], [r["p50_ms"] for r in curve], marker="x", linestyle="--",
                    label="p50, %s batching (open loop)" % batching)
        elif rows:
            ax.plot([r["ops_per_sec"] for r in rows], [r["p99_ms"] for r in rows], marker="o", linestyle="",
                    label="p99, %s batching" % batching)
            ax.plot([r["ops_per_sec"] for r in rows], [r["p50_ms"] for r in rows], marker="x", linestyle="",
                    label="p50, %s batching" % batching)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("committed ops/s")
    ax.set_ylabel("latency (ms)")
    files.append(_save(plt, fig, ax, "paxos-core: latency against throughput",
                       os.path.join(directory, "latency_vs_throughput.png")))
    return files


def _save(plt, fig, ax, title, path):
    """Grid, legend and title, then the PNG; returns its path."""
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

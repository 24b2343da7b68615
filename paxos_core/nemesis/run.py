"""One nemesis run, start to end: topology, cluster, workload and faults, heal and settle, checks, report.

The controller (this process) moves into the clients' namespace before it opens any socket or starts any
thread, so its clients and its status requests reach the nodes the way a client host would. Whatever
happens, a ``finally`` stops every node by PID, unmounts the disks and deletes the namespaces: also when
the run is stopped by SIGINT, SIGTERM or SIGHUP, which raise :class:`Interrupted` in the main thread (the
cleanup itself is not interrupted by a second signal).
"""
import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time

from ..client import Client
from ..errors import StartError
from ..kv import key_group
from ..statemachine import kv as kv_ops
from . import report
from .cluster import Cluster
from .faults import NEEDS_XFS, Nemesis, corrupt_detected, have_tool
from .topology import Topology
from .workload import History, Workload, do_op

from ..runtime.worker import PLANT_ENV, PLANT_PREFIX


class Options:
    nodes = 3
    duration = 30.0
    faults = ("kill",)
    seed = 0
    clients = 5
    keys = 4
    read_modes = ("lease", "linearizable")
    dir = None
    groups = 4
    workers = 2
    plant = ""
    writes = 0.55
    netns = True
    settle_s = 60.0


def _xfs_possible():
    if os.geteuid() != 0:
        return "not root"
    for tool in ("mkfs.xfs", "xfs_io", "losetup", "mount", "fsfreeze"):
        if not have_tool(tool):
            return "%s is not installed: apt-get install %s" % (tool, "xfsprogs" if "xfs" in tool else "util-linux")
    return None


def wait_ready(client, nodes, timeout=90.0):
    """Wait until every worker of every node answers status; returns the nodes that did not in time."""
    deadline = time.monotonic() + timeout
    late = []
    for node_id in nodes:
        while True:
            try:
                workers = client.status(node=node_id, timeout=2.0)
                if workers and not any("error" in worker for worker in workers):
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                late.append(node_id)
                break
            time.sleep(0.3)
    return late


def final_reads(client, groups, history, keys, timeout):
    """A linearizable read of every key, retried until it succeeds: {key: value}; recorded in the history."""
    final = {}
    deadline = time.monotonic() + timeout
    for key in keys:
        while time.monotonic() < deadline:
            op = do_op(client, groups, history, "final", "read", key, mode="linearizable", timeout=5.0)
            if op.outcome == "ok":
                final[key] = op.result
                break
            time.sleep(0.5)
    return final


def converge(cluster, client, keys, final, timeout, added=()):
    """Wait until every node reports, for every group (the node files' and those ``added`` at run time), the same
    chosen mark and chain with everything applied, and a stale read of every key on every node returns its final
    value. Returns (converged, details)."""
    deadline = time.monotonic() + timeout
    problems = ["no status yet"]
    while time.monotonic() < deadline:
        problems = []
        views = {}                       # group -> {node: (chosen, chain, applied)}
        for node_id in cluster.nodes:
            try:
                for worker in client.status(node=node_id, timeout=3.0):
                    if "error" in worker:
                        problems.append("node %d worker %d: no status: %s" % (node_id, worker["worker"],
                                                                             worker["error"]))
                    for d in worker.get("group_detail", ()):
                        views.setdefault(d["group"], {})[node_id] = (d["chosen"], d.get("chain"), d["applied"],
                                                                     d["status"])
            except Exception as exc:
                problems.append("node %d: status failed: %s" % (node_id, type(exc).__name__))
        for group in list(range(cluster.groups)) + sorted(added):
            seen = views.get(group, {})
            if len(seen) != len(cluster.nodes):
                problems.append("group %d: reported by %d of %d nodes" % (group, len(seen), len(cluster.nodes)))
                continue
            if len({(c, ch) for c, ch, _, _ in seen.values()}) != 1:
                problems.append("group %d: chosen logs differ: %s" % (group, {n: (c, ch) for n, (c, ch, _, _)
                                                                            in sorted(seen.items())}))
            if any(a != c or st != "ok" for c, _, a, st in seen.values()):
                problems.append("group %d: not applied or not ok: %s" % (group, seen))
        if not problems:
            for key in keys:
                if key not in final:
                    problems.append("key %r: no final value" % key)
                    continue
                group = key_group(key, cluster.groups)
                for node_id in cluster.nodes:
                    try:
                        status, value = kv_ops.decode_result(client.read_stale(group, kv_ops.encode_get(key),
                                                                                node=node_id, timeout=3.0))
                        value = value if status == kv_ops.OK else None
                    except Exception as exc:
                        problems.append("node %d key %r: stale read failed: %s" % (node_id, key,
                                                                                  type(exc).__name__))
                        continue
                    if value != final[key]:
                        problems.append("node %d key %r: state machine holds %r, final value %r"
                                        % (node_id, key, value, final[key]))
        if not problems:
            return True, []
        time.sleep(1.0)
    return False, problems[:10]


# Runs with `wipe` truncate every group's log down to this many values below its applied mark, so a wiped
# node must come back through snapshots: a run makes a few hundred instances per group (256 left the logs
# of a slow run untruncated when the node was wiped; it then rebuilt from the logs alone).
WIPE_RETAIN_INSTANCES = 16

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """The run was stopped by a signal; everything it set up was torn down."""

    def __init__(self, signum, directory):
        super().__init__("stopped by %s" % signal.Signals(signum).name)
        self.signum = signum
        self.directory = directory


@contextlib.contextmanager
def _signals_raise():
    """In the main thread: SIGINT, SIGTERM and SIGHUP raise Interrupted (once), so that the run's ``finally``
    tears down what it set up. Elsewhere (a test calling run() from a thread) signals are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        for sig in STOP_SIGNALS:            # a second signal must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum, None)

    before = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _ignore_signals():
    """While tearing down: SIGINT, SIGTERM and SIGHUP are ignored (main thread only; restored by
    _signals_raise's exit)."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def run(opts, say):
    """Run once; returns (exit code, summary dict). ``say`` prints one progress line. Raises Interrupted
    (after tearing everything down; the run's directory is kept) if a signal stops it."""
    with _signals_raise():
        try:
            return _run(opts, say)
        except Interrupted as exc:
            exc.directory = opts.dir or getattr(exc, "directory", None)
            raise


# Hosts ready for the nodes the `member` fault adds (one per add or replace: ids are never reused).
MEMBER_SPARES = 12


def member_settled(cluster, client, timeout):
    """After a run with the `member` fault: the table's members are the nodes running, every one of them has
    every group on the table's voters, and none lacks a group the others hold. Returns (settled, problems)."""
    deadline = time.monotonic() + timeout
    problems = ["no answer"]
    while time.monotonic() < deadline:
        problems = []
        try:
            table = client.membership.table(timeout=5.0)
            members = sorted(table["voters"] + table["learners"])
            if members != sorted(cluster.nodes):
                problems.append("the table's members %s are not the nodes running %s" % (members, sorted(cluster.nodes)))
            progress = client.membership.progress(table["epoch"], timeout=5.0)
            if progress["waiting"] or progress["silent"]:
                problems.append("epoch %d not adopted everywhere: waiting %s, silent %s"
                                % (table["epoch"], progress["waiting"][:5], progress["silent"]))
            for row in client.membership.status(timeout=5.0)["nodes"]:
                if row["groups_missing"]:
                    problems.append("node %d lacks group(s) %s, which other members hold (added at run time)"
                                    % (row["id"], row["groups_missing"]))
        except Exception as exc:
            problems.append("membership: %s: %s" % (type(exc).__name__, exc))
        if not problems:
            return True, []
        time.sleep(1.0)
    return False, problems


def _run(opts, say):
    node_ids = list(range(1, opts.nodes + 1))
    spares = MEMBER_SPARES if "member" in opts.faults else 0
    topo = Topology(node_ids + list(range(opts.nodes + 1, opts.nodes + 1 + spares)), use_netns=opts.netns)
    if topo.mode == "loopback":
        say("nemesis: network namespaces not available (%s): falling back to loopback addresses 127.0.0.x "
            "on one host" % topo.fallback_reason)
    xfs_why = _xfs_possible() if any(kind in NEEDS_XFS for kind in opts.faults) else "not needed"
    directory = opts.dir or tempfile.mkdtemp(prefix="paxos-nemesis-")
    if os.path.isdir(os.path.join(directory, "cluster")):
        raise FileExistsError("%s already holds a run; give an empty or new --dir" % directory)
    os.makedirs(directory, exist_ok=True)
    env = {}
    if opts.plant:
        env[PLANT_ENV] = PLANT_PREFIX + opts.plant
    cluster = None
    workload = nemesis = None
    history = History()
    passed = False
    try:
        topo.setup()
        cluster = Cluster(directory, topo, nodes=opts.nodes, workers=opts.workers, groups=opts.groups,
                          xfs=xfs_why is None, env=env,
                          retain_instances=WIPE_RETAIN_INSTANCES if "wipe" in opts.faults else None,
                          spares=spares)
        if xfs_why not in (None, "not needed"):
            say("nemesis: no XFS disks (%s)" % xfs_why)
        topo.enter_client_ns()
        say("nemesis: %d nodes (%s), data in %s" % (opts.nodes, ", ".join(
            "%d=%s" % (n, topo.address(n)) for n in node_ids), directory))
        cluster.start_all()
        admin = Client(cluster.endpoints(), cluster.workers, cluster.groups, default_timeout=5.0,
                       **cluster.client_keys(admin=True))
        try:
            late = wait_ready(admin, node_ids)
            if late:
                raise StartError("nemesis: node(s) %s did not start; see their logs in %s"
                                 % (late, os.path.join(directory, "logs")))
            workload = Workload(cluster.endpoints(), cluster.workers, cluster.groups, history,
                                clients=opts.clients, keys=opts.keys, read_modes=opts.read_modes, seed=opts.seed,
                                node_ids=node_ids, writes=opts.writes, client_options=cluster.client_keys(),
                                members=lambda: list(cluster.nodes))
            nemesis = Nemesis(cluster, opts.faults, opts.seed, say=say,
                              key_groups=[key_group(key, cluster.groups) for key in workload.keys], history=history)
            started = time.monotonic()
            workload.start()
            nemesis.start(started)
            time.sleep(opts.duration)
            nemesis.finish()
            ended = time.monotonic()
            workload.finish()
            say("nemesis: healed at %.1f s; %d operations; settling" % (ended - started, len(history.ops)))
            for node in cluster.nodes.values():
                if not node.alive():
                    node.start()
            down = wait_ready(admin, sorted(cluster.nodes))
            for node_id in down:
                say("NODE DOWN: node %d does not answer after the heal; see %s"
                    % (node_id, cluster.nodes[node_id].log_path))
            nemesis.mend_regrouped()
            keys = workload.keys + sorted(nemesis.probe_keys)
            final = final_reads(admin, cluster.groups, history, keys, opts.settle_s)
            converged, problems = converge(cluster, admin, keys, final, opts.settle_s, nemesis.added)
            member_problems = []
            if nemesis.operator is not None:
                member_problems = list(nemesis.operator.problems)
                with Client(cluster.endpoints(), cluster.workers, cluster.groups, default_timeout=5.0,
                            **cluster.client_keys(admin=True)) as member_admin:
                    settled, why = member_settled(cluster, member_admin, opts.settle_s)
                if not settled:
                    member_problems += why
        finally:
            admin.close()
        corrupt = [r for r in nemesis.records if r.kind == "corrupt" and r.injected]
        undetected = [r.detail for r in corrupt if not corrupt_detected(cluster, r)]
        cluster.stop_all()
        tracebacks = cluster.tracebacks()
        ops = history.ops
        found = report.check_history(ops, final, directory)
        report.recovery_times(nemesis.records, ops)
        report.save_history(ops, os.path.join(directory, "history.jsonl"))
        faults = {}
        for r in nemesis.records:
            if r.injected:
                faults[r.kind] = faults.get(r.kind, 0) + 1
        recoveries = [r.recovery_s for r in nemesis.records if r.recovery_s is not None]
        unrecovered = [r.as_dict() for r in nemesis.records if r.injected and r.recovery_s is None]
        with open(os.path.join(directory, "faults.json"), "w") as f:
            json.dump([r.as_dict() for r in nemesis.records], f, indent=1)
        counts = {o: sum(1 for op in ops if op.outcome == o) for o in ("ok", "fail", "unknown")}
        for a in found["anomalies"]:
            say("ANOMALY %s on key %s: %s" % (a["kind"], a["key"], a["explanation"]))
        if found["undecided"]:
            say("UNDECIDED: the checker's budget ran out on keys %s" % found["undecided"])
        if not converged:
            say("NOT CONVERGED: %s" % "; ".join(problems))
        for node_id, count in tracebacks.items():
            if count:
                node = cluster.any_node(node_id)      # maybe removed since: the member fault
                say("TRACEBACK in node %d's log (%s): %d" % (node_id, node.log_path, count))
        for detail in undetected:
            say("corruption not reported by the node: %s" % detail)
        for problem in member_problems:
            say("MEMBERSHIP: %s" % problem)
        for problem in nemesis.problems:
            say("FAULT CHECK: %s" % problem)
        for r in nemesis.records:
            if not r.injected and r.detail.startswith("not injected"):
                outcome = r.detail                # "not injected: why"
            else:
                outcome = ("recovered in %.2f s" % r.recovery_s if r.recovery_s is not None
                           else ("no ok operation after it" if r.injected else "not injected"))
                outcome += "; " + r.detail if r.detail else ""
            say("fault %s %s%s: %s" % (r.kind, r.variant, r.where(), outcome))
        if history.unexpected:
            say("write errors taken as unknown outcome: %s" % history.unexpected)
        summary = {
            "ops": len(ops), "ok": counts["ok"], "fail": counts["fail"], "unknown": counts["unknown"],
            "anomalies": len(found["anomalies"]), "lost_acked_writes": len(found["lost"]), "faults": faults,
            "max_unavailable_s": round(report.max_unavailable(ops, started, ended), 3),
            "recovery_s_max": round(max(recoveries), 3) if recoveries else None,
            "faults_unrecovered": len(unrecovered), "faults_skipped": nemesis.skipped,
            "undecided_keys": len(found["undecided"]), "converged": converged,
            "tracebacks": sum(tracebacks.values()), "nodes_down": len(down), "corrupt_undetected": len(undetected),
            "nodes": opts.nodes, "seed": opts.seed, "duration_s": opts.duration, "topology": topo.mode,
            "read_modes": list(opts.read_modes), "plant": opts.plant or None, "dir": directory,
            "member_changes": nemesis.operator.changes if nemesis.operator is not None else 0,
            "voter_counts": nemesis.operator.sizes if nemesis.operator is not None else [],
            "member_problems": len(member_problems), "fault_check_problems": len(nemesis.problems),
            "regroups_mended": len(nemesis.mended), "groups_added": sorted(nemesis.added),
            "groups_filled": nemesis.operator.filled if nemesis.operator is not None else 0,
            "final_members": sorted(cluster.nodes),
        }
        bad = (summary["anomalies"] or summary["lost_acked_writes"] or summary["undecided_keys"] or not converged
               or summary["tracebacks"] or unrecovered or undetected or down or member_problems or nemesis.problems)
        passed = not bad
        return (1 if bad else 0), summary
    except Interrupted as exc:
        exc.directory = directory
        say("nemesis: %s; stopping the nodes, unmounting the disks, deleting the namespaces; the run's files "
            "stay in %s" % (exc, directory))
        raise
    finally:
        _ignore_signals()
        if nemesis is not None:
            nemesis.stop.set()              # no new fault while the cluster is torn down
        if workload is not None:
            workload.stop.set()
        if cluster is not None:
            cluster.close()
        topo.teardown()
        if opts.dir is None and passed:
            shutil.rmtree(directory, ignore_errors=True)       # a temporary directory is kept only if it failed

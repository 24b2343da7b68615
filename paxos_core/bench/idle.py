"""`paxos-core bench idle`: what idle groups cost a node, in memory and CPU.

For each group count G: start a 3-node cluster (1 worker per node) hosting G groups and measure node 1
(supervisor + worker): resident memory, and CPU over an idle window, first with the groups never used, then
after every group has chosen one value and gone idle again (masters elected, leases lapsed). A cluster with
one group gives the baseline; memory per idle group = (RSS(G) - RSS(1)) / G. Each row also gives how long the
node took to be ready (processes started until every worker answers). Above TOUCH_ALL_UP_TO groups the
groups are measured fresh only.
"""
import json
import time

from .cluster import BenchCluster, Point, cpu_seconds, rss


def _node1(cluster):
    roles, per_node = cluster.pids()
    return per_node[1]


def _measure(cluster, seconds):
    pids = _node1(cluster)
    time.sleep(1.0)
    mem = sum(rss(p) for p in pids)
    c0 = sum(cpu_seconds(p) for p in pids)
    time.sleep(seconds)
    cpu = (sum(cpu_seconds(p) for p in pids) - c0) / seconds
    return mem, cpu


def measure(groups, seconds, base_dir=None, use=True):
    point = Point(groups=groups, workers=1)
    cluster = BenchCluster(point, base_dir)
    try:
        t0 = time.monotonic()
        cluster.start(timeout=300.0)
        ready = time.monotonic() - t0             # from the processes' start to every worker answering
        fresh_mem, fresh_cpu = _measure(cluster, seconds)
        out = {"groups": groups, "rss_bytes": fresh_mem, "cpu_percent": fresh_cpu * 100, "ready_seconds": ready,
               "touched": use}
        if use:
            t0 = time.monotonic()
            cluster.elect(concurrency=512)
            out["use_seconds"] = time.monotonic() - t0
            lease_s = cluster.configs[0].lease_ticks * cluster.configs[0].tick_ms / 1000.0
            time.sleep(lease_s * 1.2)                 # leases lapse; nothing should move any more
            used_mem, used_cpu = _measure(cluster, seconds)
            out.update(rss_bytes_after_use=used_mem, cpu_percent_after_use=used_cpu * 100)
        return out
    finally:
        cluster.close()


#: Above this many groups the groups are measured fresh only: electing every one of them (a claim and a value
#: per group) would take minutes on a small machine.
TOUCH_ALL_UP_TO = 100_000


def run(group_counts=(10000, 100000), seconds=10.0, base_dir=None, out=print, json_path=None):
    base = measure(1, seconds, base_dir, use=True)
    rows = []
    out("%9s %9s %14s %14s %12s %16s %16s %14s" % ("groups", "ready (s)", "B/group fresh", "B/group used",
                                                    "CPU% fresh", "CPU% after use", "node RSS MB", "touch all (s)"))
    for g in group_counts:
        r = measure(g, seconds, base_dir, use=g <= TOUCH_ALL_UP_TO)
        r["bytes_per_group"] = (r["rss_bytes"] - base["rss_bytes"]) / g
        if r["touched"]:
            r["bytes_per_group_after_use"] = (r["rss_bytes_after_use"] - base["rss_bytes_after_use"]) / g
        rows.append(r)
        out("%9d %9.1f %14.0f %14s %12.2f %16s %16.1f %14s" % (
            g, r["ready_seconds"], r["bytes_per_group"],
            "%.0f" % r["bytes_per_group_after_use"] if r["touched"] else "-", r["cpu_percent"],
            "%.2f" % r["cpu_percent_after_use"] if r["touched"] else "-",
            r.get("rss_bytes_after_use", r["rss_bytes"]) / 2 ** 20,
            "%.1f" % r["use_seconds"] if r["touched"] else "-"))
    out("baseline (1 group): node RSS %.1f MB, idle CPU %.2f%%, ready in %.1f s" % (
        base["rss_bytes"] / 2 ** 20, base["cpu_percent"], base["ready_seconds"]))
    if any(not r["touched"] for r in rows):
        out("-: above %d groups they are measured fresh only (electing every group would take minutes)"
            % TOUCH_ALL_UP_TO)
    summary = {"baseline": base, "results": rows}
    if json_path:
        with open(json_path, "w") as f:
            json.dump(summary, f, indent=1)
    out(json.dumps({"idle": [{"groups": r["groups"], "ready_seconds": round(r["ready_seconds"], 2),
                              "touched": r["touched"],
                              "bytes_per_group": round(r["bytes_per_group_after_use"] if r["touched"]
                                                       else r["bytes_per_group"]),
                              "cpu_percent": round(r["cpu_percent_after_use"] if r["touched"] else r["cpu_percent"],
                                                   2)} for r in rows]}))
    return summary

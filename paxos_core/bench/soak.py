"""`paxos-core bench soak`: write continuously to a local 3-node cluster and report disk use over time.

A fresh cluster (real processes, fsync on, loopback) with the node files' retention (or `retain`), a
background load of single puts (`concurrency` in flight through the real Client, over a fixed set of `keys`
keys, so that the state machine's size levels off at once and what still grows is the log) for `duration`
seconds. Every `every` seconds one row: the writes so far and their rate, and per node the bytes of its data
directory, the log bytes its workers report (RocksDB's table files and memtables of the log), and the
highest chosen mark and lowest truncation mark over the groups shown by status. With truncation on, disk use
levels off once the groups' logs reach the retention; the summary compares the last quarter of the run with
the second.
"""
import time

from .background import BackgroundLoad, report
from .cluster import BenchCluster, Point


def _node_sample(cluster, node):
    rows = cluster.client.status(node=node, timeout=5.0)
    rows = [r for r in rows if "error" not in r]
    detail = [g for r in rows for g in r["group_detail"]]
    return {
        "disk_mb": round(cluster.disk_bytes(node) / 1e6, 2),
        "log_mb": round(sum(r["log"].get("log_bytes", 0) for r in rows) / 1e6, 2),
        "max_chosen": max((g["chosen"] for g in detail), default=0),
        "min_low": min((g.get("low", 0) for g in detail), default=0),
    }


def run(duration=120.0, groups=4, workers=2, value_size=1000, retain=None, concurrency=64, keys=1000, every=10.0,
        base_dir=None, json_path=None, say=print):
    point = Point(groups=groups, workers=workers, value_size=value_size)
    storage = {} if retain is None else {"retain_instances": retain}
    cluster = BenchCluster(point, base_dir, storage=storage)
    load = None
    samples = []
    try:
        cluster.start()
        cluster.elect()
        retention = cluster.config(1).retain_instances
        say("3 nodes, %d groups, %d-byte values over %d keys, retain_instances %d, %.0f s" % (
            groups, value_size, keys, retention, duration))
        nodes = [cfg.node_id for cfg in cluster.configs]
        say("%6s %9s %8s  %s" % ("t (s)", "writes", "ops/s", "  ".join(
            "node%d disk MB / log MB / chosen / low" % n for n in nodes)))
        load = BackgroundLoad(cluster.client, groups, concurrency, value_size, keys=keys).start()
        start = last_t = time.monotonic()
        last_n = 0
        while True:
            time.sleep(max(0.0, min(every, start + duration - time.monotonic())))
            now = time.monotonic()
            done = load.completed()
            row = {"t": round(now - start, 1), "writes": done,
                   "ops_per_sec": round((done - last_n) / (now - last_t), 1) if now > last_t else None,
                   "nodes": {str(n): _node_sample(cluster, n) for n in nodes}}
            samples.append(row)
            last_t, last_n = now, done
            say("%6.0f %9d %8.0f  %s" % (row["t"], done, row["ops_per_sec"] or 0, "  ".join(
                "%7.1f / %6.1f / %6d / %6d" % (s["disk_mb"], s["log_mb"], s["max_chosen"], s["min_low"])
                for s in row["nodes"].values())))
            if now - start >= duration:
                break
        load.stop()

        def peak(part):
            rows = samples[int(len(samples) * part[0]):max(1, int(len(samples) * part[1]))]
            return max((s["disk_mb"] for r in rows for s in r["nodes"].values()), default=None)

        result = {
            "duration": duration, "groups": groups, "workers": workers, "value_size": value_size, "keys": keys,
            "retain_instances": retention, "concurrency": concurrency, "writes": load.completed(),
            "ops_per_sec": round(load.completed() / duration, 1), "load_errors": dict(load.errors),
            "max_chosen_per_group": max(s["max_chosen"] for s in samples[-1]["nodes"].values()),
            "disk_mb_peak_second_quarter": peak((0.25, 0.5)), "disk_mb_peak_last_quarter": peak((0.75, 1.0)),
            "samples": samples,
        }
        if retention > 0:
            result["run_in_retentions"] = round(result["max_chosen_per_group"] / retention, 1)
        say("peak disk per node: second quarter %.1f MB, last quarter %.1f MB; %s chosen per group%s" % (
            result["disk_mb_peak_second_quarter"] or 0, result["disk_mb_peak_last_quarter"] or 0,
            result["max_chosen_per_group"],
            " (%.1fx the retention)" % result["run_in_retentions"] if retention > 0 else ", truncation off"))
        report(result, json_path, leave_out=("samples",))
        return result
    finally:
        if load is not None:
            load.stopping.set()
        cluster.close()


__all__ = ["run"]

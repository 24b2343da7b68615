"""`paxos-core bench member --groups G`: how long every group takes to adopt a new membership epoch, and the
throughput dip while it does (issue 14).

On a fresh local cluster of 4 nodes (real processes, fsync on, loopback, the built-in key-value store):

1. every group gets a master (one put each), then a background load starts (one thread of this process,
   `concurrency` single puts in flight through the real Client, over all groups) and runs to the end;
   "before" is its throughput over `window` seconds;
2. node 4 is removed through the system group (`client.membership.remove(4)`): every group on every node
   adopts the voters 1, 2, 3 (an ADOPT chosen in the group, then alpha instances to its activation, driven
   by the load or, in an idle group, by its leader's no-ops). "Adopted" is the first moment every worker of
   nodes 1-3 reports the epoch and no group still adopting (`Membership.progress`), measured from the command;
   "during" is the load's throughput over that time;
3. "after" is the throughput over `window` seconds once every group adopted; node 4 has exited meanwhile
   (exit code 4: it was removed).
"""
import time

from .. import errors
from .background import report, start_load, stop_and_close
from .cluster import BenchCluster, Point

REMOVED = 4


def run(groups=100, workers=2, value_size=100, concurrency=64, window=5.0, timeout=1800.0, base_dir=None,
        json_path=None, say=print):
    point = Point(groups=groups, workers=workers, value_size=value_size)
    cluster = BenchCluster(point, base_dir, nodes=4)
    load = None
    try:
        say("starting a 4-node cluster: %d groups, %d workers per node" % (groups, workers))
        cluster.start(timeout=max(60.0, groups / 500))
        membership = cluster.client.membership
        deadline = time.monotonic() + 60
        while membership.table()["epoch"] < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("bench member: the membership table was not seeded within 60 s")
            time.sleep(0.2)
        t = time.monotonic()
        cluster.elect()
        say("every group has a master (%.1f s)" % (time.monotonic() - t))
        load, before = start_load(cluster.client, groups, concurrency, value_size, 10000, window)
        say("before: %.0f ops/s; removing node %d" % (before, REMOVED))
        started = time.monotonic()
        change = membership.remove(REMOVED, timeout=120.0)
        chosen = time.monotonic() - started
        samples, unanswered = [], 0
        while True:
            try:
                progress = change.progress(timeout=10.0)
            except errors.Timeout:          # a poll unanswered while the nodes are busy adopting: ask again
                unanswered += 1
                if time.monotonic() - started > timeout:
                    raise
                continue
            now = time.monotonic()
            waiting = sum(w["groups_to_check"] + w["groups_adopting"] for w in progress["waiting"])
            samples.append((round(now - started, 2), waiting, len(progress["waiting"])))
            if progress["done"]:
                break
            if now - started > timeout:
                raise RuntimeError("bench member: not every group adopted epoch %d within %.0f s (last: %s)"
                                   % (change.epoch, timeout, samples[-1]))
            time.sleep(0.25)
        adopted = time.monotonic()
        during = load.rate(started, adopted)
        say("every group adopted epoch %d after %.1f s (the change itself was chosen after %.2f s)"
            % (change.epoch, adopted - started, chosen))
        after = load.measure(window)
        load.stop()
        exit_code = cluster.procs[REMOVED].wait(60)
        result = {
            "groups": groups, "workers": workers, "value_size": value_size, "concurrency": concurrency,
            "epoch": change.epoch, "change_chosen_seconds": round(chosen, 3),
            "all_groups_adopted_seconds": round(adopted - started, 2),
            "ops_per_sec_before": round(before, 1), "ops_per_sec_during": None if during is None else round(during, 1),
            "ops_per_sec_after": None if after is None else round(after, 1),
            "removed_node_exit_code": exit_code, "load_errors": dict(load.errors), "samples": samples[-20:],
            "progress_polls_unanswered": unanswered,
        }
        say("%-34s %.1f s" % ("all groups adopted", adopted - started))
        say("%-34s %.0f / %.0f / %.0f" % ("load ops/s: before/during/after", before, during or 0, after or 0))
        report(result, json_path)
        return result
    finally:
        stop_and_close(load, cluster)

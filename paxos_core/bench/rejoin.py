"""`paxos-core bench rejoin`: wipe one node of a loaded 3-node cluster and measure how it comes back.

Steps, on a fresh local cluster (real processes, fsync on, loopback, truncation on with `retain`):

1. fill: `keys` keys of `value_size` bytes over `groups` groups (requests of 32 puts);
2. churn: `retain` + 128 rounds of one put per group, so that every group's log is truncated on every node
   (a wiped node then cannot catch up from the log: it needs a snapshot of every group);
3. a background load starts (one thread of this process, `concurrency` single puts in flight through the
   real Client) and runs to the end; "healthy" is its throughput over `window` seconds with 3 nodes;
4. node 3 is stopped and its data directory deleted; "one node down" is the throughput over `window`
   seconds once the other two have taken over its masters;
5. node 3 is started again on the empty directory (no other restart): it rebuilds every group through
   snapshots and catch-up. "Caught up" is the first moment its every worker reports no group rebuilding, no
   snapshot coming in and at most `max_lag` chosen values not yet applied in any group. Reported: the time
   from the restart to that moment (and to the process's first status answer), the snapshot bytes it
   installed and their rate from its first answer to caught up, the bytes its peers sent, and the
   background throughput during the rebuild and over `window` seconds after;
6. check: `verify` of the filled keys are read from node 3 alone (a stale read of its own state) and must
   hold exactly the value written; any difference is an error of the benchmark, not a figure.
"""
import time

from ..statemachine import kv
from .background import report, start_load, stop_and_close
from .cluster import BenchCluster, Point

WIPED = 3


def _value(key, size):
    """The filled value of `key`: derived from the key, so that a reader can check it without a copy."""
    seed = (key * (size // len(key) + 1))[:size]
    return bytes(seed)


def _key(i):
    return b"fill-%08d" % i


def fill(client, groups, keys, value_size, in_flight=64):
    """Key i goes to group i % groups, in requests of 32 puts (`Client.propose_batch_future`)."""
    pending = []
    for group in range(groups):
        mine = range(group, keys, groups)
        for start in range(0, len(mine), 32):
            ops = [kv.encode_put(_key(k), _value(_key(k), value_size)) for k in mine[start:start + 32]]
            pending.append(client.propose_batch_future(group, ops, timeout=60.0))
            while len(pending) >= in_flight:
                pending.pop(0).result()
    for f in pending:
        f.result()


def churn(client, groups, rounds):
    """`rounds` rounds of one put per group, each round waited for: one chosen instance per group per round."""
    for r in range(rounds):
        futures = [client.propose_future(g, kv.encode_put(b"churn", b"%d" % r), timeout=60.0) for g in range(groups)]
        for f in futures:
            f.result()


def _rows(cluster, node):
    rows = cluster.client.status(node=node, timeout=2.0)
    return None if any("error" in r for r in rows) else rows


def _caught_up(rows, max_lag):
    return all(r["repairing"] == 0 and not r["snapshots"]["incoming"] and r["max_lag"] <= max_lag for r in rows)


def _sum(rows, name):
    return sum(r["snapshots"].get(name, 0) for r in rows)


def run(groups=64, keys=100000, value_size=100, workers=2, retain=128, concurrency=64, window=5.0, max_lag=64,
        verify=200, timeout=600.0, base_dir=None, json_path=None, say=print):
    point = Point(groups=groups, workers=workers, value_size=value_size)
    cluster = BenchCluster(point, base_dir, storage={"retain_instances": retain})
    load = None
    try:
        say("starting a 3-node cluster: %d groups, %d workers per node, retain %d" % (groups, workers, retain))
        cluster.start()
        cluster.elect()
        t = time.monotonic()
        say("filling %d keys of %d bytes" % (keys, value_size))
        fill(cluster.client, groups, keys, value_size)
        fill_seconds = time.monotonic() - t
        rounds = retain + 128
        say("churning %d instances per group so that every log is truncated" % rounds)
        churn(cluster.client, groups, rounds)
        deadline = time.monotonic() + 60
        while True:
            peers = [r for n in (1, 2) for r in (_rows(cluster, n) or [])]
            lows = [g["low"] for r in peers for g in r["group_detail"]]
            if lows and min(lows) > 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("bench rejoin: the peers' logs were not truncated (lows %s)"
                                   % sorted(set(lows))[:8])
            time.sleep(0.2)

        load, healthy = start_load(cluster.client, groups, concurrency, value_size, 1000, window)
        say("healthy: %.0f ops/s; stopping node %d and wiping its data directory" % (healthy, WIPED))
        size_before = cluster.disk_bytes(WIPED)
        cluster.stop_node(WIPED)
        cluster.wipe_node(WIPED)
        time.sleep(5.0)                  # the other two take over node 3's masters (lease expiry)
        t = time.monotonic()
        time.sleep(window)
        down = load.rate(t, time.monotonic())
        say("one node down: %.0f ops/s; starting node %d on its empty data directory" % (down, WIPED))

        restarted = time.monotonic()
        cluster.start_node(WIPED, rebuild=True)
        first_incoming = ready = None
        samples = []
        deadline = restarted + timeout
        while True:
            time.sleep(0.1)
            if cluster.procs[WIPED].poll() is not None:
                raise RuntimeError("bench rejoin: node %d exited while rebuilding" % WIPED)
            rows = _rows(cluster, WIPED)
            now = time.monotonic()
            if rows is None:
                continue
            if ready is None:
                ready = now - restarted
            if first_incoming is None and any(r["snapshots"]["incoming"] for r in rows):
                first_incoming = now - restarted
            samples.append((now - restarted, sum(r["repairing"] for r in rows), _sum(rows, "snapshots_installed")))
            if _caught_up(rows, max_lag):
                break
            if now > deadline:
                raise RuntimeError("bench rejoin: node %d not caught up after %.0fs (last: %s)"
                                   % (WIPED, timeout, samples[-1]))
        caught_up = time.monotonic()
        during = load.rate(restarted, caught_up)
        rows = _rows(cluster, WIPED)
        installed = _sum(rows, "snapshots_installed")
        installed_bytes = _sum(rows, "snapshot_bytes_installed")
        install_seconds = _sum(rows, "snapshot_install_seconds")
        peer_rows = [r for n in (1, 2) for r in (_rows(cluster, n) or [])]
        sent_bytes = _sum(peer_rows, "snapshot_bytes_sent")
        counts = ("snapshots_sent", "snapshot_bytes_sent", "snapshots_installed", "snapshots_aborted",
                  "snapshot_chunks_refetched", "stagings_discarded")
        per_node = {str(n): {c: _sum(rs, c) for c in counts}
                    for n, rs in ((n, _rows(cluster, n) or []) for n in (1, 2, WIPED))}
        refetched = _sum(rows, "snapshot_chunks_refetched")
        say("node %d caught up after %.1fs: %d snapshots, %.1f MB installed" % (
            WIPED, caught_up - restarted, installed, installed_bytes / 1e6))
        time.sleep(window)
        after = load.rate(caught_up, time.monotonic())

        checked = 0
        step = max(1, keys // max(1, verify))
        for i in range(0, keys, step)[:verify]:
            key = _key(i)
            result = kv.decode_result(cluster.client.read_stale(i % groups, kv.encode_get(key), node=WIPED,
                                                                 timeout=10.0))
            if result.value != _value(key, value_size):
                raise RuntimeError("bench rejoin: node %d holds %r for %r after the rebuild" % (
                    WIPED, (result.value or b"")[:40], key))
            checked += 1
        load.stop()
        rebuild = caught_up - restarted
        result = {
            "groups": groups, "keys": keys, "value_size": value_size, "workers": workers, "retain": retain,
            "concurrency": concurrency, "fill_seconds": round(fill_seconds, 2),
            "node_data_mb_before_wipe": round(size_before / 1e6, 1),
            "rebuild_seconds": round(rebuild, 2), "process_ready_seconds": round(ready, 2),
            "first_transfer_after_seconds": None if first_incoming is None else round(first_incoming, 2),
            "snapshots_installed": installed, "snapshot_mb_installed": round(installed_bytes / 1e6, 2),
            # over the rebuild once the process answered (its start-up is in process_ready_seconds)
            "snapshot_mb_per_sec": round(installed_bytes / 1e6 / (rebuild - ready), 2) if rebuild > ready else None,
            "snapshot_install_seconds_total": round(install_seconds, 2),
            "snapshot_mb_sent_by_peers": round(sent_bytes / 1e6, 2), "chunks_refetched": refetched,
            "ops_per_sec_healthy": round(healthy, 1), "ops_per_sec_one_node_down": round(down, 1),
            "ops_per_sec_during_rebuild": None if during is None else round(during, 1),
            "ops_per_sec_after": None if after is None else round(after, 1),
            "load_errors": dict(load.errors), "keys_verified_on_rebuilt_node": checked,
            "snapshot_counters_per_node": per_node,
        }
        say("%-34s %.1f s (process ready after %.1f s)" % ("rebuild (restart to caught up)", rebuild, ready))
        say("%-34s %d, %.1f MB, %.1f MB/s" % ("snapshots installed", installed, installed_bytes / 1e6,
                                             result["snapshot_mb_per_sec"] or 0))
        say("%-34s %.0f / %.0f / %.0f / %.0f" % ("load ops/s: healthy/down/rebuild/after", healthy, down,
                                                 during or 0, after or 0))
        say("%-34s %d of %d keys read back from node %d" % ("verified", checked, keys, WIPED))
        report(result, json_path)
        return result
    finally:
        stop_and_close(load, cluster)


__all__ = ["run"]


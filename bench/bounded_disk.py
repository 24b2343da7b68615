"""Disk use of a 3-node cluster under a continuous write run, with truncation on: it must level off.

Starts a local 3-node cluster (real processes, fsync on, loopback) with ``storage.retain_instances`` set,
writes 1 KB values to a fixed set of keys from several client threads for ``--duration`` seconds, and every
``--every`` seconds prints, per node, the bytes of its data directory on disk and the log bytes its workers
report (table files and memtables of RocksDB), with the instances chosen so far. The run is many times the
retention when the chosen instances per group exceed ``retain`` several times over.

    python bench/bounded_disk.py --duration 120 --retain 1000
"""
import argparse
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from cluster_harness import LocalCluster  # noqa: E402  (the tests' process harness: pids, ports, teardown)


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--retain", type=int, default=1000)
    p.add_argument("--every", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--keys", type=int, default=200)
    p.add_argument("--groups", type=int, default=4)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="paxos-bounded-disk-")
    with LocalCluster(tmp, nodes=3, workers=2, groups=args.groups,
                      storage={"retain_instances": args.retain}) as cluster:
        stop = threading.Event()
        done = [0]

        def writer(k):
            kv = cluster.kv(prefer=1 + k % 3)
            i = 0
            while not stop.is_set():
                key = b"key-%d" % ((i * args.threads + k) % args.keys)
                kv.put(key, os.urandom(1000))
                done[0] += 1
                i += 1

        threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(args.threads)]
        for t in threads:
            t.start()
        start = time.monotonic()
        print("%7s %9s %s" % ("t (s)", "writes", "  ".join("node%d: disk MB / log MB / max chosen / min low" % n
                                                          for n in cluster.node_ids)))
        while time.monotonic() - start < args.duration:
            time.sleep(args.every)
            cols = []
            for n in cluster.node_ids:
                rows = cluster.status(n)
                log_bytes = sum(r["log"].get("log_bytes", 0) for r in rows)
                detail = [g for r in rows for g in r["group_detail"]]
                cols.append("%6.1f / %6.1f / %7d / %7d" % (
                    du(cluster.config(n).data_dir) / 1e6, log_bytes / 1e6, max(g["chosen"] for g in detail),
                    min(g.get("low", 0) for g in detail)))
            print("%7.0f %9d %s" % (time.monotonic() - start, done[0], "   ".join(cols)), flush=True)
        stop.set()
        for t in threads:
            t.join(timeout=30)


if __name__ == "__main__":
    main()

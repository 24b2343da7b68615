"""`paxos-core bench storage`: group commit against one synced write per record, side by side.

For each number of groups G per worker, a "cycle" produces one instance record per group (as a worker's cycle
does when every group has one Accept to persist). Two ways to persist it, measured in the same run,
alternating, each repeated several times (the figure is the median):

* group commit: the cycle's G records in ONE WriteBatch with ONE synced write;
* per record:   one synced write per record.

Each measurement gets a fresh RocksDB in a temporary directory, deleted afterwards.
"""
import json
import os
import shutil
import statistics
import tempfile
import time

from ..storage.log import RocksLog
from ..storage.records import INSTANCE_RECORD

QUICK_GROUPS = (1, 16, 256, 4096)


def _records(groups, instance, value):
    return [(INSTANCE_RECORD, g, instance, 0, 65537, 65537, instance, 0, value) for g in range(groups)]


def _measure(mode, groups, seconds, value, base_dir):
    path = tempfile.mkdtemp(prefix="paxos-bench-storage-", dir=base_dir)
    try:
        log = RocksLog(path, node_id=1, cluster_id=1)
        log.write(_records(groups, 0, value))        # warm up: create files, first flush
        start_syncs, start_records = log.syncs, log.records_written
        instance = 1
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while True:
            records = _records(groups, instance, value)
            instance += 1
            if mode == "group-commit":
                log.write(records)
            else:
                for k in range(0, len(records), 32):
                    log.write_each(records[k:k + 32])
                    if time.perf_counter() >= deadline:
                        break
            now = time.perf_counter()
            if now >= deadline:
                break
        elapsed = now - t0
        syncs = log.syncs - start_syncs
        records = log.records_written - start_records
        log.close()
        return {"records_per_s": records / elapsed, "fsyncs_per_s": syncs / elapsed,
                "records_per_fsync": records / syncs if syncs else 0.0}
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(groups=QUICK_GROUPS, seconds=1.0, repeat=5, value_size=100, base_dir=None, out=print):
    value = os.urandom(value_size)
    results = []
    out("storage benchmark: %d-byte values, %.2fs per measurement, median of %d, dir=%s"
        % (value_size, seconds, repeat, base_dir or tempfile.gettempdir()))
    out("%8s  %-13s %14s %12s %16s" % ("groups", "mode", "records/s", "fsyncs/s", "records/fsync"))
    for g in groups:
        samples = {"group-commit": [], "per-record": []}
        for _ in range(repeat):
            for mode in samples:                      # alternate, so both see the same machine noise
                samples[mode].append(_measure(mode, g, seconds, value, base_dir))
        row = {"groups": g}
        for mode, runs in samples.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            row[mode] = med
            out("%8d  %-13s %14.0f %12.0f %16.1f" % (g, mode, med["records_per_s"], med["fsyncs_per_s"],
                                                    med["records_per_fsync"]))
        row["speedup"] = row["group-commit"]["records_per_s"] / row["per-record"]["records_per_s"]
        out("%8d  %-13s %14.1fx" % (g, "speedup", row["speedup"]))
        results.append(row)
    at_256 = [r["speedup"] for r in results if r["groups"] == 256]
    summary = {
        "group_commit_speedup": round(at_256[0], 1) if at_256 else None,
        "value_size": value_size,
        "results": [{"groups": r["groups"], "speedup": round(r["speedup"], 1),
                     "group_commit_records_per_s": round(r["group-commit"]["records_per_s"]),
                     "per_record_records_per_s": round(r["per-record"]["records_per_s"]),
                     "group_commit_fsyncs_per_s": round(r["group-commit"]["fsyncs_per_s"]),
                     "per_record_fsyncs_per_s": round(r["per-record"]["fsyncs_per_s"])} for r in results],
    }
    out(json.dumps(summary))
    return summary

"""`paxos-core bench fsync`: how long this disk takes to make a small append durable, and how often it stalls.

Every reply of paxos-core waits for one synced write (the durability contract), so the disk's fsync latency
is a floor under the latency of the whole system, whatever the software does. This probe appends 200 bytes
and calls fdatasync in a loop for `seconds` (no other load unless `--parallel` > 1, which runs that many
probes at once, like the workers of a local cluster), then reports:

* the latency distribution of the synced appends (p50, p99, p99.9, max);
* stalls: how many took 10 ms or more, and the share of wall time spent inside them. An operation that
  arrives at a random moment waits behind a stall with about that probability, so when the share is above
  1%, no p99 below 10 ms is possible on this disk with fsync honoured;
* the CPU time (user + system) the probe process spent per synced append: on some machines the kernel's
  fsync path itself costs tens of microseconds of CPU, paid by every cycle of every worker.

The last line is a JSON object.
"""
import json
import multiprocessing
import os
import resource
import tempfile
import time

STALL_SECONDS = 0.010
RECORD = b"x" * 200


def probe(directory, seconds):
    """Synced 200-byte appends for `seconds`; returns their latencies (seconds) and the wall time."""
    fd, path = tempfile.mkstemp(prefix="paxos-fsync-probe-", dir=directory)
    latencies = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        t0 = time.monotonic()
        deadline = t0 + seconds
        clock = time.perf_counter
        while time.monotonic() < deadline:
            start = clock()
            os.write(fd, RECORD)
            os.fdatasync(fd)
            latencies.append(clock() - start)
        wall = time.monotonic() - t0
    finally:
        os.close(fd)
        os.unlink(path)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return latencies, wall, cpu


def summarise(latencies, wall, cpu):
    ordered = sorted(latencies)
    n = len(ordered)

    def pct(q):                                      # every latency figure rounded alike: p99 <= max holds
        return round(ordered[min(n - 1, int(n * q))] * 1e3, 3) if n else None

    stalls = [x for x in latencies if x >= STALL_SECONDS]
    return {"fsyncs": n, "per_sec": round(n / wall, 1) if wall else 0.0, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "p999_ms": pct(0.999), "max_ms": pct(1.0),
            "stalls_10ms": len(stalls), "stall_time_share": round(sum(stalls) / wall, 4) if wall else 0.0,
            "cpu_us_per_fsync": round(cpu / n * 1e6, 1) if n else None}


def _worker(args):
    return probe(*args)


def run(seconds=20.0, parallel=1, directory=None, json_path=None):
    directory = directory or tempfile.gettempdir()
    print("fsync probe: %d process(es) x %.0f s of synced 200-byte appends in %s" % (parallel, seconds, directory),
          flush=True)
    if parallel == 1:
        results = [probe(directory, seconds)]
    else:
        with multiprocessing.get_context("spawn").Pool(parallel) as pool:
            results = pool.map(_worker, [(directory, seconds)] * parallel)
    rows = [summarise(*result) for result in results]
    print("%8s %9s %9s %9s %9s %9s %10s %12s %12s" % ("process", "fsyncs/s", "p50 ms", "p99 ms", "p99.9 ms",
                                                      "max ms", "stalls>=10", "time in them", "CPU us/fsync"))
    for k, r in enumerate(rows):
        print("%8d %9.0f %9.2f %9.2f %9.2f %9.2f %10d %11.1f%% %12.1f" % (
            k, r["per_sec"], r["p50_ms"], r["p99_ms"], r["p999_ms"], r["max_ms"], r["stalls_10ms"],
            100 * r["stall_time_share"], r["cpu_us_per_fsync"]))
    summary = {"fsync": rows, "directory": directory, "seconds": seconds, "parallel": parallel}
    if json_path:
        with open(json_path, "w") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    return summary

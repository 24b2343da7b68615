"""How often Paxos leadership changes on a real 3-node cluster under a fault-free mixed load.

    python tools/leader_churn.py [--seconds 20] [--groups 8] [--clients 8] [--json]

Starts a local cluster (three `paxos-core node` processes, fsync on, in a temporary directory that is deleted
afterwards), runs client threads that put, lease-read and linearizably read random keys through random nodes,
then reads every worker's engine counters: Prepare rounds won (`elections_won`), step-downs, and, where the
build has them, sticky refusals and resignations; with the clients' throughput and latency percentiles (every
completed operation, all kinds together). Prints one JSON line last. Runs against whatever
`paxos_core` is importable (PYTHONPATH picks a checkout), so two builds can be compared on one machine.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--groups", type=int, default=8)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)

    import paxos_core
    from paxos_core.client import Client
    from paxos_core.config import load_cluster, write_cluster
    from paxos_core.statemachine import kv as ops

    work = tempfile.mkdtemp(prefix="paxos-churn-")
    procs = []
    try:
        write_cluster(work, nodes=3, workers=1, groups=args.groups, curve=False)
        configs = load_cluster(work)
        for cfg in configs:
            log = open(os.path.join(work, "node%d.err" % cfg.node_id), "w")
            procs.append(subprocess.Popen([sys.executable, "-m", "paxos_core", "node",
                                           os.path.join(work, "node%d.toml" % cfg.node_id)],
                                          stdout=subprocess.DEVNULL, stderr=log, start_new_session=True))
        clients = [Client.from_config(configs[0], prefer=1 + k % 3) for k in range(args.clients)]
        deadline = time.monotonic() + 30
        while True:
            try:
                clients[0].propose(0, ops.encode_put(b"warm", b"up"), timeout=2.0)
                break
            except paxos_core.PaxosError:
                if time.monotonic() > deadline:
                    raise
        before = _counters(clients[0])
        stop = time.monotonic() + args.seconds
        done = {"ops": 0, "errors": 0}
        lock = threading.Lock()

        latencies = []
        kinds = {}                  # error class -> count
        error_at = []               # when each failed operation started, in seconds into the run

        def run(client, seed):
            rng = random.Random(seed)
            n = e = 0
            mine = []
            while time.monotonic() < stop:
                group = rng.randrange(args.groups)
                key = b"k%d" % rng.randrange(16)
                node = rng.choice((1, 2, 3))
                started = time.monotonic()
                try:
                    roll = rng.random()
                    if roll < 0.5:
                        client.propose(group, ops.encode_put(key, b"v%d" % n), timeout=5.0)
                    elif roll < 0.8:
                        client.read(group, ops.encode_get(key), mode="lease", timeout=5.0)
                    else:
                        client.read(group, ops.encode_get(key), mode="linearizable", timeout=5.0, node=node)
                    n += 1
                    mine.append(time.monotonic() - started)
                except paxos_core.PaxosError as exc:
                    e += 1
                    with lock:
                        kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
                        error_at.append(round(started - (stop - args.seconds), 2))
            with lock:
                done["ops"] += n
                done["errors"] += e
                latencies.extend(mine)

        threads = [threading.Thread(target=run, args=(c, k)) for k, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = _counters(clients[0])
        for c in clients:
            c.close()
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        latencies.sort()

        def percentile(q):
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3, 2) if latencies else None

        result = {"seconds": args.seconds, "groups": args.groups, "ops": done["ops"], "errors": done["errors"],
                  "error_kinds": kinds, "errors_started_at_s": sorted(error_at)[:20],
                  "ops_per_sec": round(done["ops"] / args.seconds, 1), "p50_ms": percentile(0.50),
                  "p99_ms": percentile(0.99), "p999_ms": percentile(0.999),
                  "elections_won": delta.get("elections_won", 0), "step_downs": delta.get("step_downs", 0),
                  "prepares": delta.get("prepares", 0), "sticky_rejects": delta.get("sticky_rejects"),
                  "resigns": delta.get("resigns"), "version": getattr(paxos_core, "__file__", "")}
        if not args.json:
            print("leadership changes (Prepare rounds won) in %.0f s over %d groups: %d; step-downs %d; %d ops "
                  "(%.0f ops/s, p50 %s ms, p99 %s ms)" % (args.seconds, args.groups, result["elections_won"],
                                                         result["step_downs"], result["ops"], result["ops_per_sec"],
                                                         result["p50_ms"], result["p99_ms"]))
        print(json.dumps(result))
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def _counters(client):
    total = {}
    for row in client.status():
        for name, value in row.get("counters", {}).items():
            total[name] = total.get(name, 0) + value
    return total


if __name__ == "__main__":
    main()

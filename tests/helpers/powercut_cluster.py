"""A 3-node cluster in one process, each node with a real RocksLog under DIR, for the power-cut tests.

    python powercut_cluster.py DIR load   --groups G --seed S     runs until killed; prints "ACK group payload"
    python powercut_cluster.py DIR verify --groups G --out FILE   recovers, drives every group to a new
                                                                  decision, checks, writes FILE (JSON)

Every node writes each cycle's records with one synced write (run_cycle), so an ACK line is printed only
after the value was chosen by a quorum of durable votes.
"""
import argparse
import json
import random
import sys

from paxos_core.sim.loopback import LoopbackCluster
from paxos_core.storage.log import RocksLog
from paxos_core.wire.codec import decode_batch

CLUSTER_ID = 0xC0FFEE


def make_cluster(directory, groups, seed, durability="sync"):
    return LoopbackCluster(nodes=3, groups=groups, seed=seed, window=4,
                           log_factory=lambda n: RocksLog("%s/node-%d" % (directory, n), n, CLUSTER_ID, durability))


def load(directory, groups, seed, durability):
    cluster = make_cluster(directory, groups, seed, durability)
    rng = random.Random(seed)
    printed = 0
    k = 0
    while True:
        for _ in range(rng.randint(1, 3 * groups)):
            k += 1
            node = rng.choice((1, 1, 1, 2, 3))
            group = rng.randrange(groups)
            payload = b"s%d-%d" % (seed, k)
            try:
                cluster.engines[node].propose(group, payload, (group, payload))
            except Exception as exc:  # a stopped group refuses proposals: that is a finding, report it
                print("ERROR propose %s" % exc, flush=True)
        cluster.settle()
        if k % 7 == 0:
            cluster.tick()
        acks = cluster.acks[printed:]
        printed = len(cluster.acks)
        if acks:
            sys.stdout.write("".join("ACK %d %s\n" % (tag[0], tag[1].decode()) for tag, _, _ in acks))
            sys.stdout.flush()


def verify(directory, groups, out):
    cluster = make_cluster(directory, groups, 12345)
    problems = []
    report = {"wal_tail_damaged": [n for n, log in cluster.logs.items() if log.wal_tail_damaged],
              "synced_damage": {n: log.open_report for n, log in cluster.logs.items() if log.amnesia},
              "corrupt_records": {n: r.corrupt_records for n, r in cluster.recoveries.items()}}
    probes = {}
    for g in range(groups):
        payload = b"probe-%d" % g
        probes[g] = payload
        cluster.engines[1 + g % 3].propose(g, payload, (g, payload))
    for _ in range(400):
        cluster.tick()
        acked = {tag[0] for tag, _, _ in cluster.acks}
        marks = [{cluster.engines[n].learned(g) for n in (1, 2, 3)} for g in range(groups)]
        if len(acked) == groups and all(len(m) == 1 for m in marks):
            break
    acked = {tag[0] for tag, _, _ in cluster.acks}
    if len(acked) != groups:
        problems.append("probes not chosen for groups %s" % sorted(set(range(groups)) - acked))
    chosen = {}
    for g in range(groups):
        views = [cluster.engines[n].group_view(g) for n in (1, 2, 3)]
        for v in views:
            if v["status"] != "ok":
                problems.append("node group %d status %s: %s" % (g, v["status"], v["stop_reason"]))
        learned = {(v["chosen_next"], v["chain"]) for v in views}
        if len(learned) != 1:
            problems.append("group %d diverged or did not converge: %s" % (g, sorted(learned)))
        end = views[0]["chosen_next"]
        payloads = []
        entries = cluster.logs[1].read_chosen(g, 0, end)
        if len(entries) != end:
            problems.append("group %d: node 1 holds %d of %d chosen values" % (g, len(entries), end))
        for _, _, value in entries:
            payloads.extend(p.decode() for _, _, p in decode_batch(value))
        chosen[g] = payloads
    report.update(problems=problems, chosen=chosen)
    with open(out, "w") as f:
        json.dump(report, f)
    for log in cluster.logs.values():
        log.close()
    print("VERIFIED" if not problems else "PROBLEMS %s" % problems, flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("mode", choices=("load", "verify"))
    p.add_argument("--groups", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--durability", default="sync", help="the load's log durability (unsafe-no-sync: control run)")
    args = p.parse_args()
    if args.mode == "load":
        load(args.dir, args.groups, args.seed, args.durability)
    else:
        verify(args.dir, args.groups, args.out)


if __name__ == "__main__":
    main()

"""`paxos-core bench --trace-one`: where the round trip of one operation goes (one client, one in flight).

A cluster of 3 nodes (real processes, fsync on, 1 group, 1 worker per node) runs with PAXOS_CORE_TRACE_DIR
set, so that every worker notes the steps of its turns (runtime/trace.py). The bench process drives it with
the real `Client`, one `propose` of a put at a time, and notes for each operation when the caller called,
when the client's I/O thread sent the request, when it finished it (the reply decoded) and when the caller
got the result. Afterwards every operation's window is matched against the workers' events, on the one
monotonic clock of the machine, and cut into the phases of its critical path:

  client: call -> sent            the caller's thread hands the request to the client's I/O thread
  client -> master                ZeroMQ (client I/O thread, TCP on loopback, the node's I/O thread) and the
                                  master's poll waking up
  master: request -> Accept out   decode, session check, propose, encode (the Accept leaves before the
                                  master's own synced write: the two overlap)
  Accept -> follower              the peer transport and the follower's poll waking up
  follower: in -> write           the follower's turn up to its synced write
  follower: synced write          the write batch and fsync of the Accepted record
  follower: write -> Accepted out
  Accepted -> master              transport and wake-up, and any time the master was still busy with the turn
                                  that proposed (its own synced write is in that turn)
  master: Accepted -> reply out   learn, apply to the state machine, encode and send the reply
  reply -> client I/O thread      ZeroMQ back and the client's decode
  client: I/O thread -> caller    the future resolved and the caller's thread woken

The follower is the one whose Accepted reached the master first (the second vote of the quorum; the master's
own is the first). Also shown, off the critical path: the master's own synced write. An operation whose
events do not match this path (a master change, a retry) is counted as unmatched and left out.
"""
import json
import os
import shutil
import tempfile
import time

import numpy as np

from ..statemachine import kv
from ..wire.message import Kind
from ..runtime import trace
from .cluster import BenchCluster, Point

PHASES = (
    ("call_to_sent", "client: call -> sent"),
    ("client_to_master", "client -> master"),
    ("master_propose", "master: request -> Accept out"),
    ("accept_to_follower", "Accept -> follower"),
    ("follower_to_write", "follower: in -> write"),
    ("follower_write", "follower: synced write"),
    ("follower_write_to_out", "follower: write -> Accepted out"),
    ("accepted_to_master", "Accepted -> master"),
    ("master_learn_reply", "master: Accepted -> reply out"),
    ("reply_to_client", "reply -> client I/O thread"),
    ("client_to_caller", "client: I/O thread -> caller"),
)
ACCEPT_BIT = 1 << int(Kind.ACCEPT)
ACCEPTED_BIT = 1 << int(Kind.ACCEPTED)


def drive(cluster, seconds, warmup, value_size):
    """One propose at a time for `seconds` after `warmup`; [(call, sent, finished, returned)] per operation."""
    client = cluster.client
    stamps = {}
    finish = client._finish

    def timed_finish(req, value=None, exc=None):
        stamps["last"] = (req.sent_at, time.monotonic())
        finish(req, value, exc)

    client._finish = timed_finish
    value = b"v" * value_size
    ops = []
    start = time.monotonic()
    n = 0
    while True:
        now = time.monotonic()
        if now - start >= warmup + seconds:
            break
        key = b"trace%d" % (n % 1000)
        n += 1
        call = time.monotonic()
        client.propose(0, kv.encode_put(key, value), timeout=10.0)
        returned = time.monotonic()
        sent, finished = stamps.pop("last")
        if call - start >= warmup:
            ops.append((call, sent, finished, returned))
    return ops


def load_traces(directory):
    """{(node, worker): events array (rows: time, event, detail)}."""
    out = {}
    for name in sorted(os.listdir(directory)):
        if name.startswith("trace-node") and name.endswith(".npy") and ".tmp" not in name:
            node, worker = name[len("trace-node"):-len(".npy")].split("-worker")
            out[(int(node), int(worker))] = np.load(os.path.join(directory, name))
    return out


class _Events:
    """One worker's events, searchable by time."""

    def __init__(self, rows):
        self.t = rows[:, 0]
        self.event = rows[:, 1].astype(np.int64)
        self.detail = rows[:, 2].astype(np.int64)

    def first(self, event, after, before, bit=0):
        """Time of the first `event` in (after, before] (with `bit` set in its detail, if given), else None."""
        lo = np.searchsorted(self.t, after, side="right")
        hi = np.searchsorted(self.t, before, side="right")
        for k in range(lo, hi):
            if self.event[k] == event and (not bit or self.detail[k] & bit):
                return float(self.t[k])
        return None

    def woke(self, at, cause):
        """When the turn that took something in at `at` began: its poll's return, or `cause` (the moment the
        input was sent) if the poll had returned before that (the turn was already under way for something
        else and found the input when it read its sockets)."""
        hi = np.searchsorted(self.t, at, side="right")
        for k in range(hi - 1, -1, -1):
            if self.event[k] == trace.POLL:
                return max(float(self.t[k]), cause)
        return cause


def breakdown(ops, traces):
    """Per-operation phases (dict of name -> seconds) for the operations that match the path; and how many
    did not."""
    workers = {key: _Events(rows) for key, rows in traces.items() if len(rows)}
    out, unmatched = [], 0
    for call, sent, finished, returned in ops:
        phases = _phases(call, sent, finished, returned, workers)
        if phases is None:
            unmatched += 1
        else:
            out.append(phases)
    return out, unmatched


def _phases(call, sent, finished, returned, workers):
    master = None
    for key, ev in workers.items():
        client_in = ev.first(trace.CLIENT_IN, sent, finished)
        if client_in is not None:
            master, m_in = key, client_in
            break
    if master is None:
        return None
    m = workers[master]
    m_poll = m.woke(m_in, sent)
    accept_out = m.first(trace.PEER_OUT, m_in, finished, ACCEPT_BIT)
    if accept_out is None:
        return None
    best = None
    for key, ev in workers.items():
        if key == master:
            continue
        f_in = ev.first(trace.PEER_IN, accept_out, finished, ACCEPT_BIT)
        if f_in is None:
            continue
        f_poll = ev.woke(f_in, accept_out)
        f_wb = ev.first(trace.WRITE_BEGIN, f_in, finished)
        f_we = ev.first(trace.WRITE_END, f_in, finished)
        f_out = ev.first(trace.PEER_OUT, f_in, finished, ACCEPTED_BIT)
        if None in (f_wb, f_we, f_out) or not f_poll <= f_wb <= f_we <= f_out:
            continue
        if best is None or f_out < best[-1]:
            best = (f_poll, f_wb, f_we, f_out)
    if best is None:
        return None
    f_poll, f_wb, f_we, f_out = best
    m_acc_in = m.first(trace.PEER_IN, f_out, finished, ACCEPTED_BIT)
    if m_acc_in is None:
        return None
    m_poll2 = m.woke(m_acc_in, f_out)
    reply_out = m.first(trace.REPLY_OUT, m_acc_in, finished)
    if reply_out is None:
        return None
    own_wb = m.first(trace.WRITE_BEGIN, m_in, finished)
    own_we = m.first(trace.WRITE_END, m_in, finished)
    phases = {
        "call_to_sent": sent - call, "client_to_master": m_poll - sent, "master_propose": accept_out - m_poll,
        "accept_to_follower": f_poll - accept_out, "follower_to_write": f_wb - f_poll,
        "follower_write": f_we - f_wb, "follower_write_to_out": f_out - f_we,
        "accepted_to_master": m_poll2 - f_out, "master_learn_reply": reply_out - m_poll2,
        "reply_to_client": finished - reply_out, "client_to_caller": returned - finished,
        "total": returned - call,
        "master_own_write": (own_we - own_wb) if own_wb is not None and own_we is not None else None,
    }
    return phases


def summarize(phases, unmatched, ops, seconds):
    """The figures: per phase p50/p90 in µs and its share of the median total; total p50/p99; ops/s."""
    def pct(name, q):
        values = [p[name] for p in phases if p.get(name) is not None]
        return float(np.percentile(values, q)) * 1e6 if values else None

    total_p50 = pct("total", 50)
    rows = []
    for name, title in PHASES:
        p50 = pct(name, 50)
        rows.append({"phase": name, "title": title, "p50_us": p50, "p90_us": pct(name, 90),
                     "share": (p50 / total_p50) if p50 is not None and total_p50 else None})
    totals = [r[3] - r[0] for r in ops]
    return {
        "ops": len(ops), "matched": len(phases), "unmatched": unmatched,
        "ops_per_sec": len(ops) / seconds if seconds else None,
        "p50_ms": float(np.percentile(totals, 50)) * 1e3 if totals else None,
        "p99_ms": float(np.percentile(totals, 99)) * 1e3 if totals else None,
        "phases": rows,
        "sum_of_phase_p50_us": sum(r["p50_us"] or 0.0 for r in rows),
        "master_own_write_p50_us": pct("master_own_write", 50),
    }


def run_one(env, seconds, warmup, value_size, base_dir=None):
    trace_dir = tempfile.mkdtemp(prefix="paxos-trace-", dir=base_dir)
    point = Point(groups=1, workers=1, value_size=value_size, clients=1, concurrency=1, duration=seconds,
                  warmup=warmup, env=dict(env, **{trace.TRACE_ENV: trace_dir}))
    cluster = BenchCluster(point, base_dir)
    try:
        cluster.start()
        cluster.elect()
        ops = drive(cluster, seconds, warmup, value_size)
    finally:
        cluster.close()                      # SIGTERM: every worker saves its trace as it closes
    try:
        phases, unmatched = breakdown(ops, load_traces(trace_dir))
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)
    out = summarize(phases, unmatched, ops, seconds)
    out["per_op"] = phases
    return out


def _median_runs(runs):
    """The median of each figure over repeated runs (phases by name)."""
    def med(values):
        values = [v for v in values if v is not None]
        return float(np.median(values)) if values else None

    out = {k: med([r[k] for r in runs]) for k in ("ops_per_sec", "p50_ms", "p99_ms", "sum_of_phase_p50_us",
                                                  "master_own_write_p50_us")}
    out.update({"ops": sum(r["ops"] for r in runs), "matched": sum(r["matched"] for r in runs),
                "unmatched": sum(r["unmatched"] for r in runs), "runs": len(runs)})
    phases = []
    for k, (name, title) in enumerate(PHASES):
        phases.append({"phase": name, "title": title,
                       "p50_us": med([r["phases"][k]["p50_us"] for r in runs]),
                       "p90_us": med([r["phases"][k]["p90_us"] for r in runs])})
    for row in phases:
        row["share"] = row["p50_us"] / (out["p50_ms"] * 1e3) if row["p50_us"] and out["p50_ms"] else None
    out["phases"] = phases
    return out


def table(variants):
    labels = list(variants)
    head = "| phase | " + " | ".join("%s p50 µs (p90)" % label for label in labels) + " |"
    lines = [head, "|---|" + "---:|" * len(labels)]
    for k, (name, title) in enumerate(PHASES):
        cells = []
        for label in labels:
            row = variants[label]["phases"][k]
            cells.append("—" if row["p50_us"] is None else "%.0f (%.0f) %s" % (
                row["p50_us"], row["p90_us"], "%2.0f%%" % (100 * row["share"]) if row["share"] else ""))
        lines.append("| %s | %s |" % (title, " | ".join(cells)))
    for key, title, form in (("sum_of_phase_p50_us", "sum of the phases' p50, µs", "%.0f"),
                             ("master_own_write_p50_us", "master's own synced write (overlaps), µs", "%.0f"),
                             ("p50_ms", "round trip p50, ms", "%.3f"), ("p99_ms", "round trip p99, ms", "%.3f"),
                             ("ops_per_sec", "ops/s", "%.0f")):
        cells = [("—" if variants[label][key] is None else form % variants[label][key]) for label in labels]
        lines.append("| %s | %s |" % (title, " | ".join(cells)))
    cells = ["%d of %d" % (variants[label]["matched"], variants[label]["ops"]) for label in labels]
    lines.append("| operations matched | %s |" % " | ".join(cells))
    return "\n".join(lines)


def run(seconds=5.0, warmup=1.0, value_size=100, repeat=1, env=None, compare=None, base_dir=None,
        json_path=None, say=print):
    """Run the trace `repeat` times per variant (alternating with the --compare variant if any); print the
    table and the JSON summary (last line)."""
    env = dict(env or {})
    variants = [("default", env)]
    if compare:
        changed = dict(env)
        changed.update(compare)
        variants.append((",".join("%s=%s" % kv_ for kv_ in compare.items()), changed))
    runs = {label: [] for label, _ in variants}
    for k in range(repeat):
        for label, variant_env in variants:
            say("trace-one: run %d of %d, %s" % (k + 1, repeat, label))
            runs[label].append(run_one(variant_env, seconds, warmup, value_size, base_dir))
    results = {label: _median_runs(r) for label, r in runs.items()}
    print(table(results))
    summary = {"bench": "trace-one", "value_size": value_size, "seconds": seconds, "repeat": repeat,
               "variants": results, "in_flight": 1, "groups": 1, "mode": "server", "loadgen": "client"}
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"summary": summary, "runs": runs}, f, indent=1, sort_keys=True)
    print(json.dumps(summary, sort_keys=True), flush=True)
    return summary

"""The end-of-run checks, the report and its last-line JSON.

* Linearizability, per key, of every operation except stale-mode reads (paxos_core.check: Wing & Gong /
  Lowe with a time budget: a key whose search runs out of budget is "undecided", which fails the run too).
* Stale-mode reads, as the simulator checks them: the value returned must have been written by some write or
  cas (ok or of unknown outcome) invoked before the read completed, or be absent.
* Lost acknowledged writes: an acknowledged write (put, or a cas that swapped) whose value is not the final
  value of its key although the write that produced the final value had completed before it was invoked
  (so nothing could have overwritten it). The final value is the linearizable read made after healing.
* Recovery per fault: seconds from its heal to the completion of the first ok operation invoked after it;
  ``max_unavailable_s``: the longest stretch during the fault phase with no ok operation completing.
* Anomalies get their minimal failing sub-history (text) and a timeline (HTML, paxos_core.check.render)
  written into the run's directory.
"""
import json
import os

from ..check import check_linearizability, render_html, render_text
from ..check.history import show_value
from ..check.logorder import check_stale_read

LIN_BUDGET_S = 60.0


def _changes(ops):
    """key -> [(op id, value)] of every write or cas that may have taken effect."""
    out = {}
    for op in ops:
        if op.kind in ("write", "cas") and op.outcome in ("ok", "unknown"):
            out.setdefault(op.key, []).append((op.id, op.value))
    return out


def check_history(ops, final, directory):
    """Check the history; returns a dict of findings (anomaly descriptions, counts)."""
    strict = [op for op in ops if not op.stale]
    result = check_linearizability(strict, budget_s=LIN_BUDGET_S)
    anomalies = []
    for key_result in result.violations:
        anomalies.append({"kind": "not-linearizable", "key": show_value(key_result.key),
                          "explanation": key_result.explanation, "ops": len(key_result.ops),
                          "minimal": key_result.minimal})
    undecided = [show_value(r.key) for r in result.undecided]
    by_id = {op.id: op for op in ops}
    changes = _changes(ops)
    stale_bad = []
    for op in ops:
        if op.stale and op.outcome == "ok":
            anomaly = check_stale_read(op, changes.get(op.key, []), by_id)
            if anomaly is not None:
                stale_bad.append(anomaly)
                anomalies.append({"kind": "stale-read-" + anomaly.kind, "key": show_value(op.key),
                                  "explanation": anomaly.explanation, "ops": len(anomaly.ops), "minimal": True})
    lost = lost_acked_writes(ops, final)
    for op in lost:
        anomalies.append({"kind": "lost-acked-write", "key": show_value(op.key),
                          "explanation": "acknowledged write of %s (op %s) is not the final value %s, and "
                          "nothing written after it produced that value" % (show_value(op.value), op.id,
                                                                         show_value(final.get(op.key))),
                          "ops": 1, "minimal": True})
    if result.violations or stale_bad:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "anomalies.txt"), "w") as f:
            for key_result in result.violations:
                f.write("key %s: %s\n%s\n\n" % (show_value(key_result.key), key_result.explanation,
                                               key_result.timeline))
            for anomaly in stale_bad:
                f.write("%s\n%s\n\n" % (anomaly, render_text(list(anomaly.ops))))
        with open(os.path.join(directory, "anomalies.html"), "w") as f:
            if result.violations:
                f.write(result.to_html(title="paxos-core nemesis: failing sub-histories"))
            else:
                f.write(render_html([op for a in stale_bad for op in a.ops],
                                    title="paxos-core nemesis: stale reads"))
    return {"anomalies": anomalies, "undecided": undecided, "lost": lost, "verdict": result.verdict}


def lost_acked_writes(ops, final):
    """Acknowledged writes that the final value shows lost (module docstring)."""
    writer = {}
    for op in ops:
        if op.kind in ("write", "cas") and op.outcome in ("ok", "unknown"):
            writer[(op.key, op.value)] = op
    lost = []
    for op in ops:
        if op.outcome != "ok" or op.kind not in ("write", "cas") or (op.kind == "cas" and not op.result):
            continue
        if op.key not in final:
            continue
        value = final[op.key]
        if value == op.value:
            continue
        producer = writer.get((op.key, value))
        if value is None or (producer is not None and producer.outcome == "ok" and producer.complete < op.invoke):
            lost.append(op)
    return lost


def recovery_times(records, ops):
    oks = sorted((op.invoke, op.complete) for op in ops if op.outcome == "ok")
    for record in records:
        if not record.injected or record.healed is None:
            continue
        after = [complete for invoke, complete in oks if invoke >= record.healed]
        record.recovery_s = (min(after) - record.healed) if after else None


def max_unavailable(ops, start, end):
    """The longest time in [start, end] with no ok operation completing."""
    times = sorted(op.complete for op in ops if op.outcome == "ok" and start <= op.complete <= end)
    points = [start] + times + [end]
    return max((b - a for a, b in zip(points, points[1:])), default=end - start)


def save_history(ops, path):
    def enc(v):
        if isinstance(v, bytes):
            return v.decode("ascii", "replace")
        return v if v is None or isinstance(v, (bool, int, float, str)) else repr(v)

    with open(path, "w") as f:
        for op in ops:
            f.write(json.dumps({"id": op.id, "client": op.client, "key": enc(op.key), "kind": op.kind,
                                "mode": getattr(op, "mode", None), "value": enc(op.value),
                                "expected": enc(op.expected), "invoke": op.invoke, "complete": op.complete,
                                "outcome": op.outcome, "result": enc(op.result),
                                "error": getattr(op, "error", None)}) + "\n")

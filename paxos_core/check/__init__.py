"""Consistency checkers for histories of client operations on the replicated key-value store.

Two checkers, one register model per key (read, write, compare-and-set; initial value absent):

* :func:`check_log_order` (:mod:`.logorder`) for the deterministic simulator, which knows the order in which the
  state machine applied each key's writes: polynomial, exact given that order, and it also reports lost
  acknowledged writes, duplicate applies, refused ops that took effect and values nobody wrote.
* :func:`check_linearizability` (:mod:`.linearizability`) for real clusters, which only have the clients' view:
  Wing & Gong / Lowe search per key with a time budget, verdict "ok" | "violation" | "unknown", a shrunk
  failing sub-history and text / HTML timelines.

Operations are :class:`Op` objects (or anything with the same attributes); see :mod:`.history`::

    from paxos_core.check import Op, check_linearizability, check_log_order

    history = [Op("w1", b"k", "write", value=b"a", invoke=0.0, complete=1.0),
               Op("w2", b"k", "write", value=b"b", invoke=2.0, complete=3.0),
               Op("r1", b"k", "read", result=b"a", invoke=4.0, complete=5.0)]      # a stale read
    check_log_order(history, {b"k": [("w1", b"a"), ("w2", b"b")]}).anomalies   # time-order: r1 < w2
    result = check_linearizability(history, budget_s=10)
    result.verdict                          # "violation"
    print(result.keys[b"k"].timeline)       # the failing sub-history, one line per op
    open("anomaly.html", "w").write(result.to_html(history))
"""
from .history import FAIL, NOT_OBSERVED, OK, UNKNOWN, Anomaly, Op
from .linearizability import (
    KeyResult,
    LinearizabilityResult,
    check_key,
    check_linearizability,
    linearizable,
)
from .logorder import LogOrderResult, applied_order_from_log, check_log_order, check_stale_read
from .render import render_html, render_text

__all__ = [
    "Anomaly", "FAIL", "KeyResult", "LinearizabilityResult", "LogOrderResult", "NOT_OBSERVED", "OK", "Op",
    "UNKNOWN", "applied_order_from_log", "check_key", "check_linearizability", "check_log_order",
    "check_stale_read", "linearizable", "render_html", "render_text",
]

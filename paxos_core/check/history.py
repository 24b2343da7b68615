"""Client histories as the checkers read them: :class:`Op`, the register model, and shared helpers.

An operation is anything with the attributes of :class:`Op` (the dataclass is a convenience; the checkers read
attributes only). Per key the object is a register whose initial value is ``None`` (absent):

    read    ``result`` is the value returned (``None`` = absent).
    write   ``value`` is the value written; ``value=None`` is a delete.
    cas     ``expected`` is the value it requires (``None`` = absent), ``value`` the new value; ``result`` is
            True when it swapped, False when it did not. A failed cas may also report the value it saw
            (``observed``, as the KV store's CAS_FAILED result does); without it, it only saw "not expected".

Outcomes: ``"ok"`` (the client got an answer), ``"fail"`` (definitely no effect, e.g. refused: the checkers
drop it, except that the log-order checker reports it if the log applied it anyway) and ``"unknown"`` (timeout,
crashed client: it may take effect at any time after ``invoke``, or never; its ``complete`` is +infinity).

Real time: A precedes B iff ``A.complete < B.invoke``. Operations whose intervals touch (equal timestamps) are
concurrent, as in porcupine: equal clock readings do not prove an order. Equivalently, a total order is a
linearisation iff every operation can be given a point ``t`` with ``invoke <= t <= complete`` and the points
are non-decreasing along the order (ties broken by the order itself).

The register model, one step (``state`` before -> legal?, state after):

    read r           legal iff state == r.result;                  state unchanged
    write w          always legal;                                 state = w.value
    cas ok, True     legal iff state == expected;                  state = value
    cas ok, False    legal iff state != expected (and state == observed when reported); unchanged
    cas unknown      always legal; state = value if state == expected else unchanged
                     (not taking effect at all is the same as taking effect after every other operation)
"""
import math
from dataclasses import dataclass
from typing import Any, Hashable, Optional

READ = "read"
WRITE = "write"
CAS = "cas"
KINDS = (READ, WRITE, CAS)

OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"
OUTCOMES = (OK, FAIL, UNKNOWN)


class _NotObserved:
    """Marks a failed cas that did not report the value it saw (``None`` would mean "saw absent")."""
    __slots__ = ()

    def __repr__(self):
        return "NOT_OBSERVED"

    def __reduce__(self):
        return "NOT_OBSERVED"


NOT_OBSERVED = _NotObserved()
INF = math.inf


@dataclass(eq=False)
class Op:
    """One client operation on one key. Identity equality: two ops are the same op only if they are one object.

    ``complete`` is None or ``inf`` when the outcome is unknown. ``client`` (optional) only chooses the row
    of the HTML rendering. ``stale`` marks a read made in a mode allowed to be behind (log-order checker only).
    """
    id: Hashable
    key: bytes
    kind: str
    value: Any = None
    expected: Any = None
    invoke: float = 0.0
    complete: Optional[float] = None
    outcome: str = OK
    result: Any = None
    observed: Any = NOT_OBSERVED
    client: Hashable = None
    stale: bool = False


@dataclass(frozen=True)
class Anomaly:
    """One thing a checker found wrong: ``kind`` (a short tag), the ``key``, a one-line ``explanation``, and
    ``ops``: the smallest set of operations (in the order the explanation uses) that shows it."""
    kind: str
    key: bytes
    explanation: str
    ops: tuple

    @property
    def op_ids(self):
        return tuple(op.id for op in self.ops)

    def __str__(self):
        return "%s on %s: %s" % (self.kind, show_value(self.key), self.explanation)


def completion(op):
    """The latest time ``op`` can take effect: ``complete``, or +inf when the outcome is not known."""
    if op.outcome != OK or op.complete is None:
        return INF
    return op.complete


def observed(op):
    return getattr(op, "observed", NOT_OBSERVED)


def is_stale_read(op):
    return op.kind == READ and bool(getattr(op, "stale", False))


def validate(history):
    """Raise ValueError for a malformed operation or a repeated id; return the history as a list."""
    ops = list(history)
    seen = set()
    for op in ops:
        if op.kind not in KINDS:
            raise ValueError("op %r: kind %r is not one of %s" % (op.id, op.kind, KINDS))
        if op.outcome not in OUTCOMES:
            raise ValueError("op %r: outcome %r is not one of %s" % (op.id, op.outcome, OUTCOMES))
        if op.invoke is None or math.isnan(op.invoke):
            raise ValueError("op %r has no invoke time" % (op.id,))
        if op.outcome == OK and op.complete is not None and op.complete < op.invoke:
            raise ValueError("op %r completes (%r) before it is invoked (%r)" % (op.id, op.complete, op.invoke))
        if op.kind == CAS and op.outcome == OK and op.result not in (True, False):
            raise ValueError("op %r: an ok cas needs result True or False, not %r" % (op.id, op.result))
        if op.id in seen:
            raise ValueError("op id %r appears twice in the history" % (op.id,))
        seen.add(op.id)
    return ops


def by_key(ops):
    """Group operations by key, keeping their order; keys in order of first appearance."""
    groups = {}
    for op in ops:
        groups.setdefault(op.key, []).append(op)
    return groups


def show_value(value, limit=24):
    """A short printable form of a value: bytes without the b'' noise, None as 'absent'."""
    if value is None:
        return "absent"
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode("ascii")
            printable = text.isprintable()
        except UnicodeDecodeError:
            printable = False
        text = text if printable else bytes(value).hex()
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def show_time(t):
    return "inf" if t == INF else "%.6g" % t


def describe(op, with_id=True):
    """One line for an operation: id, what it did, what it answered, and its interval."""
    if op.kind == READ:
        what = "read -> %s" % show_value(op.result) if op.outcome == OK else "read"
    elif op.kind == WRITE:
        what = "write %s" % show_value(op.value) if op.value is not None else "delete"
    else:
        what = "cas %s -> %s" % (show_value(op.expected), show_value(op.value))
        if op.outcome == OK:
            what += " swapped" if op.result else " failed"
            seen = observed(op)
            if not op.result and seen is not NOT_OBSERVED:
                what += " (saw %s)" % show_value(seen)
    if op.outcome != OK:
        what += " [%s]" % op.outcome
    interval = "[%s, %s]" % (show_time(op.invoke), show_time(completion(op)))
    return "%s: %s, %s" % (op.id, what, interval) if with_id else "%s, %s" % (what, interval)

"""The log-order checker: is a client history linearisable given the order the state machine applied writes in?

For the deterministic simulator, which knows each key's chosen log. Input: the history (operations as in
:mod:`.history`) and, per key, the state changes in applied (log) order as ``(op id, new value)`` pairs: each
write or swapping cas that took effect, new value ``None`` for a delete. Knowing the order of writes makes the
check polynomial (near linear) instead of the NP-complete general problem.

The construction. Call the applied changes w_1..w_m and the gaps between them segments: segment j runs from
w_j to w_{j+1} (segment 0 is before w_1, register absent) and the register holds val_j in it. Every applied
change is a write in that chain, in log order. Every ok read must sit in a segment whose value it returned,
every ok failed cas in a segment whose value differs from its expected value (and equals what it saw, when it
reported it). Values are unique per key, so a read of a written value has exactly one candidate segment; reads
of ``None`` (the initial value, or after a delete) and failed cas may have several. Times: each operation gets a
point t with t >= invoke, the writes' points non-decreasing in log order, a read of segment j between
t(w_j) and t(w_{j+1}); then t <= complete must hold for every operation (complete = +inf when unknown).

Proof that earliest times decide it. (1) Given a placement of the reads in segments, the constraints are
lower bounds (t >= invoke), edges t(y) >= t(x) along a DAG (w_1 <= w_2 <= ..., w_j <= read <= w_{j+1}), and
upper bounds (t <= complete). Setting each point to the largest invoke over its DAG ancestors (itself
included) satisfies every lower bound and edge, and by induction along the DAG every solution is pointwise
>= it; so a solution exists iff these earliest times meet every upper bound. (2) A solution is a
linearisation consistent with the log: order by (t, position in the DAG); the points are non-decreasing
along that order, so A.complete < B.invoke gives t(A) <= A.complete < B.invoke <= t(B): real time is kept,
and each read follows the last write before it in its segment, so it is legal. Conversely, from any
linearisation consistent with the log, t(k-th op) = max of the first k invokes is a solution; so the check is
exact. (3) Several candidate segments: placing a read later only drops constraints on the writes (a read in
segment j pushes every w_k with k > j to >= its invoke; in a later segment only a suffix of those), so each read
starts in its latest candidate. Whenever the earliest time of a read's segment passes its complete, every
placement at least as early for all reads has times at least as large, so that segment and every later one are
impossible for it in any solution; it moves to its latest candidate that is still early enough. Times only
grow and reads only move earlier, so this ends; if it ends with every read placed and every deadline met, the
placement is a solution, and otherwise none exists.

Anomalies reported (each with the operations that show it; see :class:`~.history.Anomaly`):

    time-order         an operation's earliest consistent time is after its complete; the ops are the chain
                       that forced that time, from the op whose invoke set it to the one that cannot wait
    phantom-read       a read (or a failed cas) saw a value no applied change produced
    duplicate-apply    an op id applied twice (exactly-once broken)
    lost-write         an acknowledged write or swapping cas that is not in the applied order (an
                       acknowledged delete the log left out is taken as a delete of an absent key: it is
                       placed like a read of absent)
    refused-applied    an op the client was told failed (outcome fail, or a cas answered "did not swap")
                       that the log applied
    apply-mismatch     the log applied something the op cannot have produced: another value, a cas whose
                       expected value was not the register's, a read, or an op of another key

An applied op id that is not in the history is taken as a write that may have happened at any time.

Stale reads (a read mode allowed to be behind; ``Op.stale`` or ``stale_reads=True`` for every read) are
checked weaker: the value returned must be the initial ``None`` or the value of an applied change whose op was
invoked no later than the read completed. They are not placed in segments and constrain nothing else.

Cost: O(n log n + m) when every read has one candidate segment (the usual case: unique values). A read of
absent or a failed cas may move; each pass recomputes times from the lowest segment a read moved to, so the
worst case is O(passes x (n + m)); a read that fits nowhere is reported and the placement starts again without
it, so that no later report leans on an operation that has no place at all.

What it cannot see: it trusts the applied order it is given (the simulator's oracle checks that the logs
agree); ops with unknown outcome that the log did not apply are taken as never having happened.
"""
import bisect
import itertools
from dataclasses import dataclass, field

from .history import (
    CAS,
    FAIL,
    INF,
    NOT_OBSERVED,
    OK,
    READ,
    WRITE,
    Anomaly,
    by_key,
    completion,
    describe,
    is_stale_read,
    observed,
    show_time,
    show_value,
    validate,
)
from .render import render_html

NEG_INF = -INF


@dataclass
class LogOrderResult:
    """``ok`` is True iff ``anomalies`` is empty."""
    anomalies: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.anomalies

    def of_kind(self, kind):
        return [a for a in self.anomalies if a.kind == kind]

    def to_text(self):
        if self.ok:
            return "log order: ok"
        return "\n".join(str(a) for a in self.anomalies)

    def to_html(self, history=None, title="paxos-core log-order check"):
        """A self-contained HTML timeline of ``history`` (default: the operations of the anomalies) with the
        anomalies' operations highlighted and explained."""
        if history is None:
            history = list({id(op): op for anomaly in self.anomalies for op in anomaly.ops}.values())
        notes = {}
        for anomaly in self.anomalies:
            notes.setdefault(anomaly.key, []).append("%s: %s" % (anomaly.kind, anomaly.explanation))
        highlight = [op.id for a in self.anomalies for op in a.ops]
        return render_html(history, highlight=highlight, notes=notes, title=title)


def check_log_order(history, applied, *, stale_reads=False):
    """Check ``history`` against ``applied``: a mapping key -> sequence of ``(op id, new value)`` in log order.

    Returns a :class:`LogOrderResult`. With ``stale_reads=True`` every read gets the weaker stale-read check;
    otherwise only reads with ``stale=True`` do. Raises ValueError for a malformed history.
    """
    ops = validate(history)
    ops_by_id = {op.id: op for op in ops}
    ops_by_key = by_key(ops)
    anomalies = []
    applied_anywhere = set()
    keys = list(ops_by_key) + [k for k in applied if k not in ops_by_key]
    for key in keys:
        _KeyCheck(key, ops_by_key.get(key, []), list(applied.get(key, ())), ops_by_id, stale_reads,
                  applied_anywhere, anomalies).run()
    return LogOrderResult(anomalies)


def check_stale_read(read, applied_changes, ops_by_id):
    """The weak check alone: None if ``read`` (an ok read) is explained by ``applied_changes`` (one key's
    ``(op id, new value)`` list), else the Anomaly. ``ops_by_id`` maps op ids to ops for invoke times."""
    anomalies = []
    _check_stale(read, read.key, applied_changes, ops_by_id, anomalies)
    return anomalies[0] if anomalies else None


def _check_stale(read, key, changes, ops_by_id, anomalies):
    if read.result is None:
        return
    producers = [ops_by_id.get(op_id) for op_id, value in changes if value == read.result]
    if not producers:
        anomalies.append(Anomaly("phantom-read", key, "stale %s: no applied change produced %s"
                                 % (describe(read), show_value(read.result)), (read,)))
        return
    deadline = completion(read)
    invokes = [(NEG_INF if p is None else p.invoke, i) for i, p in enumerate(producers)]
    earliest, index = min(invokes)
    if earliest > deadline:
        producer = producers[index]
        anomalies.append(Anomaly(
            "time-order", key, "stale %s returned a value from the future: %s was invoked at %s"
            % (describe(read), describe(producer), show_time(producer.invoke)), (read, producer)))


class _Reader:
    """An ok read or ok failed cas being placed: ``segment`` is where it is now, ``candidates`` (ascending)
    where it may be, or None when any segment whose value differs from ``differs_from`` will do."""
    __slots__ = ("op", "invoke", "deadline", "candidates", "index", "differs_from", "segment", "reasons")

    def __init__(self, op, candidates=None, differs_from=None):
        self.op = op
        self.invoke = op.invoke
        self.deadline = completion(op)
        self.candidates = candidates
        self.index = None if candidates is None else len(candidates) - 1
        self.differs_from = differs_from
        self.segment = None
        # operations that prove it cannot sit later than it does (collected as it is moved)
        self.reasons = []


class _KeyCheck:
    """The check of one key; ``run`` appends its anomalies to the shared list."""

    def __init__(self, key, ops, changes, ops_by_id, stale_reads, applied_anywhere, anomalies):
        self.key = key
        self.ops = ops
        self.changes = changes
        self.ops_by_id = ops_by_id
        self.stale_reads = stale_reads
        self.applied_anywhere = applied_anywhere
        self.anomalies = anomalies

    def report(self, kind, explanation, ops):
        unique = []
        for op in ops:
            if op is not None and all(op is not seen for seen in unique):
                unique.append(op)
        self.anomalies.append(Anomaly(kind, self.key, explanation, tuple(unique)))

    # ------------------------------------------------------------------ the chain of applied changes
    def build_writes(self):
        """Index 0 is the initial state; 1..m the applied changes with their time windows."""
        self.write_op = [None]
        self.values = [None]
        self.write_invoke = [NEG_INF]
        self.write_deadline = [INF]
        applied_here = set()
        for op_id, new_value in self.changes:
            op = self.ops_by_id.get(op_id)
            previous_value = self.values[-1]
            previous_op = self.write_op[-1]
            deadline = INF
            if op is not None:
                deadline = completion(op)
                if op_id in self.applied_anywhere:
                    self.report("duplicate-apply", "%s was applied more than once" % describe(op), (op,))
                if op.outcome == FAIL:
                    self.report("refused-applied", "%s was refused, yet the log applied it" % describe(op),
                                (op,))
                    deadline = INF  # it did happen; when is unknown, so don't cascade further reports
                elif op.kind == CAS and op.outcome == OK and not op.result:
                    self.report("refused-applied", "%s answered 'did not swap', yet the log applied it"
                                % describe(op), (op,))
                    deadline = INF
                self.check_apply_matches(op, new_value, previous_value, previous_op)
            elif op_id in self.applied_anywhere:
                self.report("duplicate-apply", "op %r (not in the history) was applied more than once"
                            % (op_id,), ())
            self.applied_anywhere.add(op_id)
            applied_here.add(op_id)
            self.write_op.append(op)
            self.values.append(new_value)
            self.write_invoke.append(NEG_INF if op is None else op.invoke)
            self.write_deadline.append(deadline)
        self.applied_here = applied_here
        self.distinct_values = set(self.values)
        self.segments_of_value = {}
        for segment, value in enumerate(self.values):
            self.segments_of_value.setdefault(value, []).append(segment)

    def check_apply_matches(self, op, new_value, previous_value, previous_op):
        if op.key != self.key:
            self.report("apply-mismatch", "%s (key %s) was applied to this key"
                        % (describe(op), show_value(op.key)), (op,))
        elif op.kind == READ:
            self.report("apply-mismatch", "%s changed the register to %s"
                        % (describe(op), show_value(new_value)), (op,))
        elif op.value != new_value:
            self.report("apply-mismatch", "%s was applied as %s" % (describe(op), show_value(new_value)), (op,))
        elif op.kind == CAS and op.expected != previous_value:
            self.report("apply-mismatch", "%s was applied while the register held %s"
                        % (describe(op), show_value(previous_value)), (previous_op, op))

    def report_lost_writes(self):
        for op in self.ops:
            acknowledged = op.outcome == OK and (op.kind == WRITE or (op.kind == CAS and op.result))
            if op.kind == WRITE and op.value is None:
                continue  # a delete the log did not apply must have found the key absent: placed as a read
            if acknowledged and op.id not in self.applied_here:
                self.report("lost-write", "%s was acknowledged but the log never applied it" % describe(op),
                            (op,))

    # ------------------------------------------------------------------ reads and failed cas
    def make_readers(self):
        readers = []
        for op in self.ops:
            if op.outcome != OK:
                continue  # failed or unknown reads and cas observed nothing we know of
            if op.kind == WRITE and op.value is None and op.id not in self.applied_here:
                # a delete of an absent key changes nothing, so the log may leave it out: it observed absent
                readers.append(_Reader(op, self.segments_of_value[None]))
            elif op.kind == READ:
                if self.stale_reads or is_stale_read(op):
                    _check_stale(op, self.key, self.changes, self.ops_by_id, self.anomalies)
                    continue
                candidates = self.segments_of_value.get(op.result)
                if candidates is None:
                    self.report_phantom(op, op.result, "returned")
                    continue
                readers.append(_Reader(op, candidates))
            elif op.kind == CAS and not op.result:
                if op.id in self.applied_here:
                    continue  # already reported as refused-applied; it is placed as a write
                saw = observed(op)
                if saw is NOT_OBSERVED:
                    if self.distinct_values == {op.expected}:
                        self.report("phantom-read", "%s failed, but the register never held anything but %s"
                                    % (describe(op), show_value(op.expected)), (op,))
                        continue
                    readers.append(_Reader(op, None, differs_from=op.expected))
                elif saw == op.expected:
                    self.report("phantom-read", "%s failed although it saw its expected value" % describe(op),
                                (op,))
                else:
                    candidates = self.segments_of_value.get(saw)
                    if candidates is None:
                        self.report_phantom(op, saw, "saw")
                        continue
                    readers.append(_Reader(op, candidates))
        return readers

    def report_phantom(self, op, value, verb):
        producers = [p for p in self.ops if p.kind in (WRITE, CAS) and p.value == value and p is not op]
        if producers:
            self.report("phantom-read", "%s %s %s, written by %s, which the log never applied"
                        % (describe(op), verb, show_value(value), describe(producers[0])), (op, producers[0]))
        else:
            self.report("phantom-read", "%s %s %s, which no write produced" % (describe(op), verb,
                                                                                show_value(value)), (op,))

    # ------------------------------------------------------------------ earliest times
    def compute_times(self, start):
        """Earliest time of each applied change from index ``start`` on, and what forced it."""
        earliest, forcer = self.earliest, self.forcer
        for k in range(start, len(self.values)):
            time, cause = earliest[k - 1], forcer[k - 1]
            for reader in self.placed[k - 1]:
                if reader.invoke > time:
                    time, cause = reader.invoke, reader
            if self.write_invoke[k] > time:
                time, cause = self.write_invoke[k], k
            earliest[k] = time
            forcer[k] = cause

    def chain(self, segment):
        """The operations that force segment ``segment`` to start no earlier than it does, in order."""
        cause = self.forcer[segment]
        if cause is None:
            return []
        if isinstance(cause, _Reader):
            # the reader sits before the change that ends its segment, which the log puts at or before ours
            first_write = cause.segment + 1
            return [cause.op] + cause.reasons + [self.write_op[first_write], self.write_op[segment]]
        return [self.write_op[cause], self.write_op[segment]]

    def cause_op(self, segment):
        cause = self.forcer[segment]
        return cause.op if isinstance(cause, _Reader) else self.write_op[cause]

    def latest_feasible(self, reader, below):
        """Where ``reader`` may still sit below segment ``below`` given the current earliest times.

        Returns ``(segment or None, first_too_late)``: every segment from ``first_too_late`` on starts after
        the reader's completion, and no candidate lies between the returned segment and it.
        """
        # earliest times are non-decreasing, so the segments that start early enough form a prefix
        first_too_late = bisect.bisect_right(self.earliest, reader.deadline, 0, below)
        limit = first_too_late - 1
        if reader.candidates is None:
            segment = limit
            while segment >= 0 and self.values[segment] == reader.differs_from:
                segment -= 1
            return (segment if segment >= 0 else None), first_too_late
        index = bisect.bisect_right(reader.candidates, limit, 0, reader.index) - 1
        if index < 0:
            return None, first_too_late
        reader.index = index
        return reader.candidates[index], first_too_late

    def place_readers(self, readers):
        """Place every reader; one that fits nowhere is reported and the placement starts over without it,
        so that no later report leans on an operation that has no place at all."""
        live = list(readers)
        while True:
            impossible = self.try_placement(live)
            if impossible is None:
                return
            live = [reader for reader in live if reader is not impossible]

    def try_placement(self, readers):
        """Run the placement of section (3) of the module docstring; return the first reader found to fit
        nowhere (after reporting it), or None when every reader is placed."""
        m = len(self.values) - 1
        self.earliest = [NEG_INF] * (m + 1)
        self.forcer = [None] * (m + 1)
        self.placed = [[] for _ in range(m + 1)]
        for reader in readers:
            reader.reasons = []
            if reader.candidates is None:
                segment = m
                while self.values[segment] == reader.differs_from:
                    segment -= 1
            else:
                reader.index = len(reader.candidates) - 1
                segment = reader.candidates[-1]
            reader.segment = segment
            self.placed[segment].append(reader)
        start = 1
        while True:
            self.compute_times(start)
            lowest_moved = None
            for segment in range(m + 1):
                if not self.placed[segment]:
                    continue
                staying = []
                for reader in self.placed[segment]:
                    if self.earliest[segment] <= reader.deadline:
                        staying.append(reader)
                        continue
                    target, first_too_late = self.latest_feasible(reader, segment)
                    if target is None:
                        self.report_late(reader.op, first_too_late, reader)
                        return reader
                    # first_too_late and every segment after it start too late: remember why
                    reader.reasons.extend(op for op in self.chain(first_too_late) if op is not None)
                    reader.segment = target
                    self.placed[target].append(reader)
                    if lowest_moved is None or target < lowest_moved:
                        lowest_moved = target
                self.placed[segment] = staying
            if lowest_moved is None:
                return None
            start = lowest_moved + 1

    def report_late(self, op, segment, reader=None):
        forced = self.earliest[segment]
        cause = self.cause_op(segment)
        chain = self.chain(segment)
        if reader is not None:
            chain = chain + [op]
        names = []
        for item in chain:
            if item is not None and item.id not in names:
                names.append(item.id)
        self.report("time-order", "%s cannot take effect by its completion: it must follow %s, invoked at %s "
                    "(order forced: %s)" % (describe(op), "op %s" % (cause.id,) if cause is not None else "?",
                                            show_time(forced), " < ".join(str(n) for n in names)), chain)

    def report_late_writes(self):
        for k in range(1, len(self.values)):
            if self.earliest[k] > self.write_deadline[k]:
                self.report_late(self.write_op[k], k)

    def run(self):
        self.build_writes()
        self.report_lost_writes()
        readers = self.make_readers()
        self.place_readers(readers)
        self.report_late_writes()


def applied_order_from_log(entries):
    """Group a flat log of ``(key, op id, new value)`` entries into the per-key mapping the checker takes."""
    grouped = {}
    for key, group in itertools.groupby(entries, key=lambda entry: entry[0]):
        grouped.setdefault(key, []).extend((op_id, value) for _, op_id, value in group)
    return grouped

"""The general linearizability checker, for client histories of a real cluster (no view of the log).

Wing & Gong's search with Lowe's memoisation, organised as porcupine organises it (this is our own code):

* The history is split per key. Linearizability is local (Herlihy & Wing): the whole history is linearisable
  iff each key's sub-history is, so every key is checked on its own, with its own time budget.
* Per key, failed operations and reads without an ok answer are dropped; an operation of unknown outcome gets
  complete = +infinity. The register model is the one in :mod:`.history`.
* Every operation becomes a call event (at invoke) and a return event (at complete) in one doubly linked list
  sorted by time, calls before returns on equal times (touching intervals are concurrent).
* Depth-first search: walk the list from its head; at a call, try to linearise that operation now (its model
  step is legal from the current state); if legal and (set of linearised ops, new state) was not seen
  before, push, "lift" the call and its return out of the list and start again from the head. Reaching a
  return event means that operation must already have been linearised: backtrack (pop, "unlift", go on
  after the call). The list empty means a linearisation was found; backtracking from an empty stack means
  none exists. An operation of unknown outcome never meets its return, so it may be linearised at any point
  after its invoke or left for last (equivalent to never, since nothing observes it afterwards).
* Memo: (linearised set, register value). The set is kept as (p, window): every op before index p (ops in
  invoke order) is linearised and ``window`` is a bitmask of the ones after p, so a key stays a small
  tuple even when the history is long.
* Observers first (a reduction porcupine does not make): a read or failed cas that is reachable in the list
  (so no unlinearised op completed before it was invoked) and legal now can be linearised now without loss:
  in any completion of the current prefix it can be moved to the front, because it changes no state and no
  op ahead of it had to precede it. So when such an op fails from here, the current prefix fails too, and
  the search backtracks past it instead of trying the alternatives; concurrent reads no longer multiply the
  states.
* Before searching, an unknown-outcome write or cas whose value nothing observes (no read returned it, no cas
  expected it or saw it) and after whose invoke no cas failed without saying what it saw, is dropped: putting
  it last shows it changes nothing, and removing it from any linearisation leaves one (see
  :func:`_removable_changes`). Timeouts are common in fault injection and each such op otherwise doubles the
  states the search visits.

Complexity: the problem is NP-complete in general. The search visits at most (number of linearised sets
reachable) x (distinct values) states, each costing O(c) list steps where c is the number of operations
concurrent at that point. For a history whose concurrency never exceeds c the reachable sets are about
n * 2^c, so the cost is about n * 2^c * c (reads and failed cas count little, see above); an unknown-outcome
op that cannot be dropped stays concurrent with everything after its invoke and counts in c until it is
linearised. A violation costs more than a pass: every alternative up to the violation is explored. Advice:
keep concurrent clients per key at or below about 10 (more keys rather than more clients per key), give
every write a distinct value, and record the value a failed cas saw (the KV store's CAS_FAILED result
carries it) so that timed-out ops can be dropped. The budget (``budget_s`` per key) turns a search that runs
too long into "unknown", never into "ok".

Shrinking a violation keeps it a proof. Ops are only dropped in ways that cannot make a linearisable history
non-linearisable (reads and failed cas always; a write or swapping cas only when nothing left observes its
value, :func:`_remove_soundly`), and a long history is first cut in time (:func:`_cut`: ops invoked by the
cut, those still running treated as of unknown outcome), which has the same property. So "this sub-history
is not linearisable" implies the whole history is not. Dropping the write of a value, by contrast, would turn
any read of it into a violation of its own.

What it proves: "ok" comes with a witness (``KeyResult.linearization``: a total order, legal for the register
and consistent with real time, of every op that had to take effect and of the unknown-outcome ops the search
kept; one of those placed last need not have happened). "violation" is exhaustive, and the reported
sub-history can be replayed. What it cannot see: stale-mode reads (they are checked as linearisable reads;
leave them out, or use the log-order checker's stale check), and anything the clients did not record.
"""
import time
from dataclasses import dataclass, field
from typing import Optional

from .history import (
    INF,
    NOT_OBSERVED,
    OK,
    Op,
    READ,
    UNKNOWN,
    WRITE,
    by_key,
    completion,
    describe,
    observed,
    show_time,
    show_value,
    validate,
)
from .render import render_html, render_text

PASS = "ok"
VIOLATION = "violation"
UNDECIDED = "unknown"

# Model step codes of a prepared operation (see the table in history.py).
_READ, _WRITE, _CAS_SWAPPED, _CAS_FAILED, _CAS_FAILED_SAW, _CAS_MAYBE = range(6)

# Ops that leave the register as it is: reads and failed cas.
_OBSERVERS = (_READ, _CAS_FAILED, _CAS_FAILED_SAW)

_CHECK_CLOCK_EVERY = 2048  # search steps between looks at the clock


@dataclass
class KeyResult:
    """The verdict for one key.

    ``verdict``: "ok" | "violation" | "unknown" (the budget ran out). For "ok", ``linearization`` is a witness
    order of the ops that took effect. For "violation": ``ops`` is the failing sub-history (``minimal`` is True
    when no single op can be dropped from it and it stays non-linearisable, False when the shrink budget ran
    out first; ``cut_at`` is set when it comes from the history cut at that time, which :func:`_cut` explains),
    ``partial`` the longest partial linearisation of it, ``explanation`` why nothing can follow
    that, and ``timeline`` a plain-text rendering. ``states`` counts memo entries of the main search.
    """
    key: bytes
    verdict: str
    ops: tuple = ()
    minimal: bool = False
    cut_at: Optional[float] = None
    linearization: tuple = ()
    partial: tuple = ()
    explanation: str = ""
    timeline: str = ""
    elapsed_s: float = 0.0
    states: int = 0

    @property
    def ok(self):
        return self.verdict == PASS


@dataclass
class LinearizabilityResult:
    """Per-key results; ``verdict`` is "violation" if any key has one, else "unknown" if any key ran out of
    budget, else "ok". ``ok`` is True only when every key passed."""
    keys: dict = field(default_factory=dict)

    @property
    def verdict(self):
        verdicts = {result.verdict for result in self.keys.values()}
        if VIOLATION in verdicts:
            return VIOLATION
        if UNDECIDED in verdicts:
            return UNDECIDED
        return PASS

    @property
    def ok(self):
        return self.verdict == PASS

    @property
    def violations(self):
        return [result for result in self.keys.values() if result.verdict == VIOLATION]

    @property
    def undecided(self):
        return [result for result in self.keys.values() if result.verdict == UNDECIDED]

    def to_text(self):
        lines = ["linearizability: %s (%d keys)" % (self.verdict, len(self.keys))]
        for result in self.keys.values():
            if result.verdict == PASS:
                continue
            lines.append("key %s: %s" % (show_value(result.key), result.verdict))
            if result.verdict == VIOLATION:
                lines.append(result.explanation)
                lines.append(result.timeline)
        return "\n".join(lines)

    def to_html(self, history=None, title="paxos-core linearizability check"):
        """A self-contained HTML page: the timeline of every key of ``history`` (default: only the failing
        sub-histories), failing ops in red, the longest partial linearisation numbered on the bars."""
        if history is None:
            history = [op for result in self.violations for op in result.ops]
        highlight = [op.id for result in self.violations for op in result.ops]
        notes = {result.key: [result.explanation] for result in self.violations}
        for result in self.undecided:
            notes[result.key] = ["the time budget ran out: no verdict"]
        verdicts = {key: result.verdict for key, result in self.keys.items()}
        orders = {result.key: result.partial for result in self.violations}
        return render_html(history, highlight=highlight, notes=notes, verdicts=verdicts, orders=orders,
                           title=title)


class _Prepared:
    """An operation as the search sees it: model step code, its arguments and its time window."""
    __slots__ = ("op", "code", "argument", "expected", "invoke", "complete")

    def __init__(self, op, code, argument, expected):
        self.op = op
        self.code = code
        self.argument = argument
        self.expected = expected
        self.invoke = op.invoke
        self.complete = completion(op)


def _prepare_one(op):
    """The op as the search sees it, or None when it cannot matter (failed, or a read without an answer)."""
    if op.outcome not in (OK, UNKNOWN):
        return None
    if op.kind == READ:
        return _Prepared(op, _READ, op.result, None) if op.outcome == OK else None
    if op.kind == WRITE:
        return _Prepared(op, _WRITE, op.value, None)
    if op.outcome == UNKNOWN:
        return _Prepared(op, _CAS_MAYBE, op.value, op.expected)
    if op.result:
        return _Prepared(op, _CAS_SWAPPED, op.value, op.expected)
    if observed(op) is NOT_OBSERVED:
        return _Prepared(op, _CAS_FAILED, None, op.expected)
    return _Prepared(op, _CAS_FAILED_SAW, observed(op), op.expected)


def prepare(ops):
    """The operations of one key the search must place, sorted by invoke (failed ops, reads without an
    answer and unobserved unknown-outcome changes dropped)."""
    prepared = [item for item in map(_prepare_one, ops) if item is not None]
    prepared.sort(key=lambda item: item.invoke)
    return _drop_unobserved_unknowns(prepared)


_CHANGES = (_WRITE, _CAS_SWAPPED, _CAS_MAYBE)


def _observations(item):
    """The values whose presence in the register the op's legality (or effect) depends on."""
    if item.code == _READ:
        return (item.argument,)
    if item.code == _CAS_FAILED_SAW:
        return (item.argument, item.expected)
    if item.code == _WRITE:
        return ()
    return (item.expected,)


def _removable_changes(kept, changes):
    """Which of ``changes`` (state-changing ops) can leave a history of ``kept`` + ``changes`` without making a
    linearisable history non-linearisable: those whose written value nothing left observes, taken one at a
    time (a removed cas no longer observes), and after whose invoke no cas left failed without saying what it
    saw. Why that is safe: take a linearisation and delete the op; until the next change the register holds
    the previous value instead of the op's, which only a read or a cas observing that value, or a blind
    failed cas, could notice; a cas of unknown outcome there had no effect and is moved to the very end."""
    counts = {}
    for item in kept + changes:
        for value in _observations(item):
            counts[value] = counts.get(value, 0) + 1
    latest_blind_failure = max((item.complete for item in kept if item.code == _CAS_FAILED), default=None)
    pending = list(changes)
    removable = []
    progress = True
    while pending and progress:
        progress = False
        blocked = []
        for item in pending:
            own = _observations(item).count(item.argument)
            if counts.get(item.argument, 0) - own > 0 or (
                    latest_blind_failure is not None and latest_blind_failure >= item.invoke):
                blocked.append(item)
                continue
            removable.append(item)
            for value in _observations(item):
                counts[value] -= 1
            progress = True
        pending = blocked
    return removable


def _drop_unobserved_unknowns(prepared):
    # An unknown-outcome change is equivalent to one left for last, and removing it from any linearisation
    # leaves one when nothing observes it: so dropping it keeps the verdict either way.
    unknown = [item for item in prepared if item.code in _CHANGES and item.op.outcome == UNKNOWN]
    if not unknown:
        return prepared
    known = [item for item in prepared if not (item.code in _CHANGES and item.op.outcome == UNKNOWN)]
    dropped = {id(item) for item in _removable_changes(known, unknown)}
    return [item for item in prepared if id(item) not in dropped]


def _search(prepared, deadline, record_partial=False):
    """Wing & Gong / Lowe over ``prepared`` (sorted by invoke).

    Returns ``(verdict, order, states, dead_end)``: for "ok" ``order`` is a linearisation (indices into
    ``prepared``); for "violation" it is the longest partial linearisation when ``record_partial``, else empty.
    ``dead_end`` is the latest complete time at which some branch of the search died (where to cut a failing
    history when shrinking it).
    """
    n = len(prepared)
    if n == 0:
        return PASS, [], 0, None
    # Event e < n is the call of op e, e >= n the return of op e - n; index 2n is the list head.
    events = sorted([(item.invoke, 0, i) for i, item in enumerate(prepared)]
                    + [(item.complete, 1, n + i) for i, item in enumerate(prepared)])
    head = 2 * n
    end = -1
    nxt = [end] * (2 * n + 1)
    prv = [end] * (2 * n + 1)
    previous = head
    for _, _, event in events:
        nxt[previous] = event
        prv[event] = previous
        previous = event
    codes = [item.code for item in prepared]
    arguments = [item.argument for item in prepared]
    expecteds = [item.expected for item in prepared]
    observes_only = [code in _OBSERVERS for code in codes]

    seen = set()
    stack = []          # (call event, state, p, window) before that call was linearised
    best = []
    state = None
    p = 0               # every op with index < p is linearised
    window = 0          # bit i: op p + i is linearised
    entry = nxt[head]
    steps = 0
    dead_end = None
    clock = time.monotonic
    while nxt[head] != end:
        steps += 1
        if steps % _CHECK_CLOCK_EVERY == 0 and clock() > deadline:
            return UNDECIDED, [], len(seen), dead_end
        if entry < n:
            code = codes[entry]
            # the register model, inlined: it runs once per search step
            if code == _READ:
                legal = state == arguments[entry]
                new_state = state
            elif code == _WRITE:
                legal = True
                new_state = arguments[entry]
            elif code == _CAS_SWAPPED:
                legal = state == expecteds[entry]
                new_state = arguments[entry]
            elif code == _CAS_FAILED:
                legal = state != expecteds[entry]
                new_state = state
            elif code == _CAS_FAILED_SAW:
                legal = state == arguments[entry] and state != expecteds[entry]
                new_state = state
            else:  # _CAS_MAYBE
                legal = True
                new_state = arguments[entry] if state == expecteds[entry] else state
            if not legal:
                entry = nxt[entry]
                continue
            new_window = window | (1 << (entry - p))
            new_p = p
            if entry == p:
                # slide past the run of linearised ops now at the front
                run = (~new_window & (new_window + 1)).bit_length() - 1
                new_window >>= run
                new_p += run
            memo_key = (new_p, new_window, new_state)
            if memo_key not in seen:
                seen.add(memo_key)
                stack.append((entry, state, p, window))
                state, p, window = new_state, new_p, new_window
                # lift the call and its return out of the list
                after = nxt[entry]
                nxt[prv[entry]] = after
                prv[after] = prv[entry]
                ret = entry + n
                nxt[prv[ret]] = nxt[ret]
                if nxt[ret] != end:
                    prv[nxt[ret]] = prv[ret]
                entry = nxt[head]
                continue
            if not observes_only[entry]:
                entry = nxt[entry]
                continue
            # An observer that is legal here leads where this state leads (module docstring), and from here
            # it was already explored: so was everything else from this state.
        # Backtrack: a return of an op not yet linearised was reached (or the observer shortcut above).
        if entry >= n and (dead_end is None or prepared[entry - n].complete > dead_end):
            dead_end = prepared[entry - n].complete
        if record_partial and len(stack) > len(best):
            # copied only when a deeper prefix turns out to be a dead end, not at every push
            best = [frame[0] for frame in stack]
        while True:
            if not stack:
                return VIOLATION, best, len(seen), dead_end
            entry, state, p, window = stack.pop()
            ret = entry + n
            nxt[prv[ret]] = ret
            if nxt[ret] != end:
                prv[nxt[ret]] = ret
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            # after an observer fails, so does every alternative to it (module docstring): keep going back
            if not observes_only[entry]:
                break
        entry = nxt[entry]
    return PASS, [frame[0] for frame in stack], len(seen), dead_end


def _remove_soundly(current, chunk):
    """``current`` without as much of ``chunk`` as can go while keeping the rest a proof: if the rest is not
    linearisable, neither is ``current``. Reads and failed cas change nothing and can always go; writes and
    swapping cas only as :func:`_removable_changes` allows (otherwise dropping the write of a value would make
    any read of it a "violation" of its own). None when nothing of ``chunk`` can go."""
    chunk_ids = {id(item) for item in chunk}
    kept = [item for item in current if id(item) not in chunk_ids or item.code in _CHANGES]
    changes = [item for item in chunk if item.code in _CHANGES]
    removable = {id(item) for item in _removable_changes(
        [item for item in kept if id(item) not in chunk_ids], changes)}
    result = [item for item in kept if id(item) not in removable]
    return result if len(result) < len(current) else None


def _as_unknown(item):
    """The op of ``item`` as if its outcome were unknown (it was still running at a cut), prepared."""
    op = item.op
    return _prepare_one(Op(id=op.id, key=op.key, kind=op.kind, value=op.value, expected=op.expected,
                           invoke=op.invoke, complete=None, outcome=UNKNOWN,
                           client=getattr(op, "client", None)))


def _cut(prepared, cut_time):
    """The history as seen at ``cut_time``: ops invoked by then; those still running become of unknown
    outcome (reads among them are dropped).

    If a history is linearisable, so is every cut of it: in a linearisation, everything before the first op
    invoked after the cut is in the cut, and what the cut has after that was still running at the cut, so it
    may be left out (never happened). So a cut that is not linearisable proves the history is not either.
    """
    result = []
    for item in prepared:
        if item.invoke > cut_time:
            break
        if item.complete <= cut_time:
            result.append(item)
        elif item.code != _READ and item.op.outcome != UNKNOWN:
            result.append(_as_unknown(item))
        elif item.code != _READ:
            result.append(item)
    return _drop_unobserved_unknowns(result)


_CUT_HISTORIES_LONGER_THAN = 200


def _failing_cut(prepared, dead_end, deadline):
    """A short cut that is still not linearisable, or ``prepared`` itself; None if the deadline passed.

    First the cut where the search of the whole history last hit a dead end (usually right after the
    violation); if that cut is linearisable, the earliest failing cut after it by binary search (a later cut of
    a failing cut fails too). Returns ``(cut ops, cut time or None)``.
    """
    if dead_end is not None and dead_end != INF:
        candidate = _cut(prepared, dead_end)
        verdict = _search(candidate, deadline)[0]
        if verdict == UNDECIDED:
            return None
        if verdict == VIOLATION:
            return candidate, dead_end
    times = sorted({item.invoke for item in prepared if dead_end is None or item.invoke > dead_end})
    low, high = 0, len(times)      # times[high] would be "no cut"
    best = prepared, None
    while low < high:
        middle = (low + high) // 2
        candidate = _cut(prepared, times[middle])
        verdict = _search(candidate, deadline)[0]
        if verdict == UNDECIDED:
            return None
        if verdict == VIOLATION:
            best, high = (candidate, times[middle]), middle
        else:
            low = middle + 1
    return best


def _shrink(prepared, dead_end, deadline):
    """A small sub-history that still fails: ``(ops, minimal, cut time or None)``. ``minimal``: no single op
    can go soundly and leave it failing. Long histories are first cut in time (:func:`_failing_cut`); then
    ddmin: drop halves, then smaller chunks, down to single ops, each drop only as :func:`_remove_soundly`
    allows. Stops at the deadline with what it has (minimal False)."""
    current = list(prepared)
    cut_time = None
    if len(current) > _CUT_HISTORIES_LONGER_THAN:
        cut = _failing_cut(current, dead_end, deadline)
        if cut is None:
            return current, False, None
        current, cut_time = cut
    chunks = 2
    while len(current) > 1:
        size = -(-len(current) // chunks)
        removed = False
        for start in range(0, len(current), size):
            candidate = _remove_soundly(current, current[start:start + size])
            if not candidate:
                continue
            verdict = _search(candidate, deadline)[0]
            if verdict == UNDECIDED:
                return current, False, cut_time
            if verdict == VIOLATION:
                current = candidate
                chunks = max(chunks - 1, 2)
                removed = True
                break
        if not removed:
            if size == 1:
                return current, True, cut_time
            chunks = min(chunks * 2, len(current))
    return current, True, cut_time


_SHOWN_PREFIX_IDS = 8


def _explain(prepared, partial):
    """Why the longest partial linearisation cannot be extended: the register value after it and, for each op
    that real time allows next, that its step is illegal there."""
    state = None
    done = set()
    for index in partial:
        item = prepared[index]
        if item.code in (_WRITE, _CAS_SWAPPED):
            state = item.argument
        elif item.code == _CAS_MAYBE and state == item.expected:
            state = item.argument
        done.add(index)
    remaining = [i for i in range(len(prepared)) if i not in done]
    if not remaining:
        return "no linearisation"
    first_deadline = min(prepared[i].complete for i in remaining)
    # an op can come next only if no other remaining op completed before it was invoked
    candidates = [i for i in remaining if prepared[i].invoke <= first_deadline]
    if partial:
        ids = [str(prepared[i].op.id) for i in partial]
        if len(ids) > _SHOWN_PREFIX_IDS:
            ids = ["%d ops" % (len(ids) - _SHOWN_PREFIX_IDS), "..."] + ids[-_SHOWN_PREFIX_IDS:]
        prefix = "after %s the register holds %s" % (", ".join(ids), show_value(state))
    else:
        prefix = "the register starts absent"
    reasons = "; ".join("%s cannot come next" % describe(prepared[i].op) for i in candidates)
    return "%s, and no operation can come next: %s" % (prefix, reasons)


_SHOWN_TIMELINE_OPS = 80


def check_key(ops, *, budget_s=10.0, shrink_budget_s=None):
    """Check the operations of ONE key. Returns a :class:`KeyResult`.

    ``budget_s`` bounds the search; when it runs out the verdict is "unknown". A violation is then shrunk for
    at most ``shrink_budget_s`` more seconds (default: ``budget_s``). Raises ValueError for a malformed
    history or ops of more than one key.
    """
    ops = validate(ops)
    if len({op.key for op in ops}) > 1:
        raise ValueError("check_key takes the ops of one key; use check_linearizability for several")
    key = ops[0].key if ops else None
    started = time.monotonic()
    prepared = prepare(ops)
    verdict, order, states, dead_end = _search(prepared, started + budget_s)
    if verdict == PASS:
        return KeyResult(key, PASS, linearization=tuple(prepared[i].op for i in order),
                         elapsed_s=time.monotonic() - started, states=states)
    if verdict == UNDECIDED:
        return KeyResult(key, UNDECIDED, elapsed_s=time.monotonic() - started, states=states)
    shrink_deadline = time.monotonic() + (budget_s if shrink_budget_s is None else shrink_budget_s)
    failing, minimal, cut_at = _shrink(prepared, dead_end, shrink_deadline)
    # search the failing sub-history once more to record its longest partial linearisation
    verdict, partial, _, _ = _search(failing, shrink_deadline, record_partial=True)
    explanation = _explain(failing, partial) if verdict == VIOLATION else "no linearisation"
    if cut_at is not None:
        explanation += " (the history cut at time %s: later ops cannot explain it" % show_time(cut_at)
        originals = {id(op) for op in ops}
        if any(id(item.op) not in originals for item in failing):
            explanation += "; ops still running then are shown with unknown outcome"
        explanation += ")"
    failing_ops = tuple(item.op for item in failing)
    partial_ops = tuple(failing[i].op for i in partial)
    shown = sorted(failing_ops, key=lambda op: op.invoke)
    title = "key %s: non-linearisable sub-history" % show_value(key)
    if len(shown) > _SHOWN_TIMELINE_OPS:
        title += " (the last %d of %d ops)" % (_SHOWN_TIMELINE_OPS, len(shown))
        shown = shown[-_SHOWN_TIMELINE_OPS:]
    timeline = render_text(shown, order=partial_ops, title=title)
    return KeyResult(key, VIOLATION, ops=failing_ops, minimal=minimal, cut_at=cut_at, partial=partial_ops,
                     explanation=explanation, timeline=timeline, elapsed_s=time.monotonic() - started,
                     states=states)


def check_linearizability(history, *, budget_s=10.0, shrink_budget_s=None):
    """Check a whole history (any number of keys); each key gets its own ``budget_s``.

    Returns a :class:`LinearizabilityResult`. Raises ValueError for a malformed history.
    """
    ops = validate(history)
    result = LinearizabilityResult()
    for key, key_ops in by_key(ops).items():
        result.keys[key] = check_key(key_ops, budget_s=budget_s, shrink_budget_s=shrink_budget_s)
    return result


def linearizable(ops, *, budget_s=10.0):
    """Just the verdict for the operations of one key: "ok" | "violation" | "unknown" (no shrinking)."""
    return _search(prepare(validate(ops)), time.monotonic() + budget_s)[0]


__all__ = [
    "PASS", "VIOLATION", "UNDECIDED", "KeyResult", "LinearizabilityResult", "check_key", "check_linearizability",
    "linearizable", "prepare", "render_html", "render_text",
]

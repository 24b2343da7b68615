"""The reference the checker tests compare against: a brute-force linearizability checker, a generator of
histories of a real atomic register, and the checks that the reference itself is right.

Imported by test_check_logorder.py and test_check_linearizability.py. Nothing here shares code with
paxos_core.check except the Op dataclass.
"""
import functools
import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from paxos_core.check import NOT_OBSERVED, Op

INF = math.inf


# ---------------------------------------------------------------------------------------------- brute force
def _deadline(op):
    return op.complete if op.outcome == "ok" and op.complete is not None else INF


def _step(op, state):
    """(legal, new state, changed) for one op taking effect in ``state``; the model of history.py, written
    again from its table."""
    if op.kind == "read":
        return state == op.result, state, False
    if op.kind == "write":
        return True, op.value, True
    if op.outcome != "ok":
        return (True, op.value, True) if state == op.expected else (True, state, False)
    if op.result:
        return state == op.expected, op.value, True
    saw = op.observed
    legal = state != op.expected and (saw is NOT_OBSERVED or state == saw)
    return legal, state, False


def brute_force_linearizable(ops, write_order=None):
    """Is the one-key history ``ops`` linearisable? Tries every order (a permutation is a linearisation iff
    each of its prefixes is one, so extending only legal prefixes tries them all; a situation met twice is
    looked up, not searched again).

    Failed ops and reads without an answer are left out; an op of unknown outcome may take effect at any point
    after its invoke or never. With ``write_order`` (op ids), only orders whose state changes are exactly those
    ops, in that order, count.
    """
    ops = [op for op in ops if op.outcome != "fail" and not (op.kind == "read" and op.outcome != "ok")]
    # "never" for an op of unknown outcome: try every subset of them as the ones that took effect
    unknown = [op for op in ops if op.outcome == "unknown"]
    known = [op for op in ops if op.outcome != "unknown"]
    for size in range(len(unknown) + 1):
        for happened in itertools.combinations(unknown, size):
            if _extend_all(known + list(happened), write_order):
                return True
    return False


def _extend_all(ops, write_order):
    """Every op in ``ops`` takes effect (unknown ones anywhere after their invoke)."""
    ops = sorted(ops, key=lambda op: op.invoke)

    # Whether the ops left can follow depends only on which are left, the register value and how many changes
    # of write_order are done, so each such situation is worked out once (concurrent reads of one value
    # otherwise make the number of orders to try factorial).
    @functools.lru_cache(maxsize=None)
    def extend(remaining, state, changes_done):
        if not remaining:
            return write_order is None or changes_done == len(write_order)
        bound = min(_deadline(ops[i]) for i in remaining)
        for index in remaining:
            op = ops[index]
            if op.invoke > bound:
                continue
            legal, new_state, changed = _step(op, state)
            if not legal:
                continue
            done = changes_done
            if write_order is not None and changed:
                if done >= len(write_order) or write_order[done] != op.id:
                    continue
                done += 1
            if extend(remaining - {index}, new_state, done):
                return True
        return False

    return extend(frozenset(range(len(ops))), None, 0)


def literal_permutations_linearizable(ops):
    """The definition, literally, for histories without unknown outcomes: some permutation of the ops is legal
    for the register and keeps real-time order. Exponential; used on tiny histories only."""
    ops = [op for op in ops if op.outcome == "ok"]
    for order in itertools.permutations(ops):
        state = None
        legal = True
        for position, op in enumerate(order):
            ok, state, _ = _step(op, state)
            if not ok or any(later.complete < op.invoke for later in order[position + 1:]):
                legal = False
                break
        if legal:
            return True
    return False


def valid_witness(ops, order):
    """Is ``order`` a linearisation of the one-key history ``ops``: every op that had to take effect is in
    it, each step is legal, and no op precedes one that completed before it was invoked?"""
    required = {id(op) for op in ops if op.outcome == "ok"}
    placed = {id(op) for op in order}
    if not required <= placed or len(placed) != len(order):
        return False
    if any(op.outcome == "fail" for op in order):
        return False
    state = None
    for position, op in enumerate(order):
        legal, state, _ = _step(op, state)
        if not legal:
            return False
        if any(_deadline(later) < op.invoke for later in order[position + 1:]):
            return False
    return True


# ---------------------------------------------------------------------------------------------- generator
@st.composite
def atomic_register_histories(draw, keys=(b"k",), max_ops=12, allow_unknown=True, allow_fail=True):
    """A history of a real atomic register: clients (2-4) issue ops one after another on a coarse integer
    clock (so intervals often touch or tie); each op that takes effect does so at a random point inside its
    interval (an op of unknown outcome at a random point after its invoke, or never); results come from
    executing the ops in the order of those points.

    Returns ``(ops, applied)``: applied maps key -> [(op id, new value)] of the state changes in that order.
    """
    n_clients = draw(st.integers(2, 4), label="clients")
    outcomes = ["ok"] * 6 + (["unknown"] if allow_unknown else []) + (["fail"] if allow_fail else [])
    ops, applied = [], {}
    serial = itertools.count()
    for key in keys:
        n_ops = draw(st.integers(1, max_ops), label="ops")
        free_at = [0] * n_clients
        planned = []   # (point or None, tie-break, op)
        values_so_far = [None]
        for _ in range(n_ops):
            client = draw(st.integers(0, n_clients - 1))
            invoke = free_at[client] + draw(st.integers(0, 3))
            complete = invoke + draw(st.integers(0, 6))
            free_at[client] = complete
            kind = draw(st.sampled_from(["read", "read", "write", "write", "cas"]))
            outcome = draw(st.sampled_from(outcomes))
            number = next(serial)
            value = None
            if kind in ("write", "cas"):
                value = b"v%d" % number
                if kind == "write" and draw(st.integers(0, 7)) == 0:
                    value = None   # a delete
            op = Op(id="%s%d" % (kind[0] if kind != "cas" else "c", number), key=key, kind=kind, value=value,
                    invoke=float(invoke), complete=float(complete) if outcome == "ok" else None,
                    outcome=outcome, client=client)
            if kind == "cas":
                op.expected = draw(st.sampled_from(values_so_far))
            if value is not None:
                values_so_far.append(value)
            if outcome == "ok":
                point = draw(st.integers(invoke, complete))
            elif outcome == "unknown" and draw(st.booleans()):
                point = draw(st.integers(invoke, invoke + 15))
            else:
                point = None
            planned.append((point, number, op))
        state = None
        changes = []
        for point, _, op in sorted((p for p in planned if p[0] is not None), key=lambda p: (p[0], p[1])):
            if op.kind == "read":
                op.result = state
            elif op.kind == "write":
                state = op.value
                changes.append((op.id, op.value))
            else:
                swapped = state == op.expected
                if op.outcome == "ok":
                    op.result = swapped
                    if not swapped and draw(st.booleans()):
                        op.observed = state
                if swapped:
                    state = op.value
                    changes.append((op.id, op.value))
        if any(op.outcome == "ok" and op.kind == "cas" and op.result is None for _, _, op in planned):
            raise AssertionError("an ok cas was never executed")
        ops.extend(op for _, _, op in planned)
        applied[key] = changes
    return ops, applied


@st.composite
def mutated_histories(draw, flip_cas=True, **kwargs):
    """An atomic history with one answer changed: a read returns another value of its key (or absent), or
    (``flip_cas``) an ok cas reports the other result. Often no longer linearisable, sometimes still."""
    ops, applied = draw(atomic_register_histories(**kwargs))
    targets = [op for op in ops if op.outcome == "ok" and (op.kind == "read" or (flip_cas and op.kind == "cas"))]
    if not targets:
        return ops, applied, None
    target = draw(st.sampled_from(targets))
    if target.kind == "read":
        # "nobody wrote this" stands for a read of a value that came from nowhere
        pool = [None, b"nobody wrote this"] + [op.value for op in ops
                                               if op.key == target.key and op.value is not None]
        others = [value for value in pool if value != target.result]
        target.result = draw(st.sampled_from(others))
    else:
        target.result = not target.result
        target.observed = NOT_OBSERVED
    return ops, applied, target


# ---------------------------------------------------------------------------------------------- the reference
def _op(id, kind, invoke, complete, **fields):
    return Op(id=id, key=b"k", kind=kind, invoke=invoke, complete=complete, **fields)


def test_brute_force_on_the_classic_stale_read():
    history = [_op("w1", "write", 0, 1, value=b"a"), _op("w2", "write", 2, 3, value=b"b"),
               _op("r", "read", 4, 5, result=b"a")]
    assert not brute_force_linearizable(history)
    history[2].result = b"b"
    assert brute_force_linearizable(history)


def test_brute_force_unknown_write_may_happen_late_or_never():
    late = [_op("w", "write", 0, None, value=b"a", outcome="unknown"), _op("r1", "read", 5, 6, result=None),
            _op("r2", "read", 7, 8, result=b"a")]
    assert brute_force_linearizable(late)
    assert brute_force_linearizable(late[:2])
    before_invoke = [_op("r", "read", 0, 1, result=b"a"),
                     _op("w", "write", 2, None, value=b"a", outcome="unknown")]
    assert not brute_force_linearizable(before_invoke)


def test_brute_force_respects_the_write_order():
    history = [_op("w1", "write", 0, 10, value=b"a"), _op("w2", "write", 0, 10, value=b"b"),
               _op("r", "read", 11, 12, result=b"a")]
    assert brute_force_linearizable(history)
    assert brute_force_linearizable(history, write_order=["w2", "w1"])
    assert not brute_force_linearizable(history, write_order=["w1", "w2"])


@settings(max_examples=150, deadline=None)
@given(mutated_histories(max_ops=6, allow_unknown=False, allow_fail=False))
def test_brute_force_agrees_with_the_literal_definition(case):
    ops, _, _ = case
    assert brute_force_linearizable(ops) == literal_permutations_linearizable(ops)


@settings(max_examples=100, deadline=None)
@given(atomic_register_histories(max_ops=10))
def test_generated_histories_are_linearisable_for_the_brute_force(case):
    ops, applied = case
    assert brute_force_linearizable(ops)
    assert brute_force_linearizable(ops, write_order=[op_id for op_id, _ in applied[b"k"]])

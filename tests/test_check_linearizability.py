"""The general linearizability checker (paxos_core.check.linearizability): known histories, agreement with
the brute force on random ones, shrinking, renderings and the time budget."""
import contextlib
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paxos_core.check import NOT_OBSERVED, Op, check_key, check_linearizability, linearizable, linearizability, render_html
from test_check_reference import (
    atomic_register_histories,
    brute_force_linearizable,
    mutated_histories,
    valid_witness,
)


def op(id, kind, invoke, complete, key=b"k", **fields):
    return Op(id=id, key=key, kind=kind, invoke=invoke, complete=complete, **fields)


def write(id, value, invoke, complete, **fields):
    return op(id, "write", invoke, complete, value=value, **fields)


def read(id, result, invoke, complete, **fields):
    return op(id, "read", invoke, complete, result=result, **fields)


def cas(id, expected, value, result, invoke, complete, **fields):
    return op(id, "cas", invoke, complete, expected=expected, value=value, result=result, **fields)


def verdict(history):
    return check_linearizability(history, budget_s=30).verdict


# ---------------------------------------------------------------------------------------------- known answers
def test_classic_stale_read_is_a_violation():
    history = [write("w1", b"a", 0, 1), write("w2", b"b", 2, 3), read("r", b"a", 4, 5)]
    result = check_linearizability(history)
    assert result.verdict == "violation" and not result.ok
    key_result = result.keys[b"k"]
    assert {o.id for o in key_result.ops} == {"w1", "w2", "r"}
    assert key_result.minimal


def test_read_from_the_future_is_a_violation():
    # the read completed before the write of what it returned was even invoked
    history = [read("r", b"a", 0, 1), write("w", b"a", 2, 3)]
    assert verdict(history) == "violation"


def test_overlapping_concurrent_ops_in_any_order_are_fine():
    history = [write("w1", b"a", 0, 10), write("w2", b"b", 1, 9), read("r1", b"b", 2, 3),
               read("r2", b"a", 4, 5), read("r3", b"a", 6, 12), cas("c", b"a", b"c", True, 7, 14),
               read("r4", b"c", 13, 15)]
    result = check_linearizability(history)
    assert result.ok
    witness = result.keys[b"k"].linearization
    assert valid_witness(history, witness)
    assert [o.id for o in witness].index("w2") < [o.id for o in witness].index("w1")


def test_touching_intervals_count_as_concurrent():
    # equal timestamps do not prove an order (porcupine's convention)
    history = [write("w1", b"a", 0, 5), read("r", None, 5, 6)]
    assert verdict(history) == "ok"
    history[1].invoke = 5.001
    assert verdict(history) == "violation"


def test_a_failed_cas_observes_a_value():
    history = [write("w", b"a", 0, 1), cas("c", b"x", b"y", False, 2, 3, observed=b"a")]
    assert verdict(history) == "ok"
    saw_old = [write("w", b"a", 0, 1), cas("c", b"x", b"y", False, 2, 3, observed=None)]
    assert verdict(saw_old) == "violation"
    # without the value it saw, a failure still says "not the expected value"
    blind_but_wrong = [write("w", b"a", 0, 1), cas("c", b"a", b"y", False, 2, 3)]
    assert verdict(blind_but_wrong) == "violation"
    blind = [write("w", b"a", 0, 1), cas("c", None, b"y", False, 2, 3)]
    assert verdict(blind) == "ok"


def test_a_successful_cas_needs_its_expected_value():
    history = [write("w", b"a", 0, 1), cas("c", b"a", b"b", True, 2, 3), read("r", b"b", 4, 5)]
    assert verdict(history) == "ok"
    history[1].expected = b"z"
    assert verdict(history) == "violation"


def test_unknown_write_seen_later_or_never_is_fine():
    seen_later = [write("w", b"a", 0, None, outcome="unknown"), read("r1", None, 10, 11),
                  read("r2", b"a", 50, 51)]
    assert verdict(seen_later) == "ok"
    never_seen = [write("w", b"a", 0, None, outcome="unknown"), read("r1", None, 10, 11),
                  read("r2", None, 50, 51)]
    assert verdict(never_seen) == "ok"


def test_unknown_write_seen_before_it_was_invoked_is_a_violation():
    history = [read("r", b"a", 0, 1), write("w", b"a", 2, None, outcome="unknown")]
    assert verdict(history) == "violation"


def test_unknown_write_cannot_flicker():
    # once read, the unknown write happened: a later read of the old value is stale
    history = [write("w0", b"z", 0, 1), write("w", b"a", 2, None, outcome="unknown"),
               read("r1", b"a", 10, 11), read("r2", b"z", 12, 13)]
    assert verdict(history) == "violation"


def test_failed_ops_are_dropped():
    history = [write("w", b"a", 0, 1, outcome="fail"), read("r", None, 2, 3),
               read("r-timeout", b"zzz", 4, None, outcome="unknown")]
    assert verdict(history) == "ok"


def test_lost_acknowledged_write_is_a_violation():
    history = [write("w", b"a", 0, 1), read("r", None, 2, 3)]
    assert verdict(history) == "violation"


def test_value_reappearing_after_an_overwrite_is_a_violation():
    # what a duplicate apply looks like from the clients: a's write took effect again after b's
    history = [write("w1", b"a", 0, 1), write("w2", b"b", 2, 3), read("r1", b"b", 4, 5),
               read("r2", b"a", 6, 7)]
    assert verdict(history) == "violation"


def test_read_of_in_flight_write_then_older_value_8ms_later_is_a_violation():
    # A linearizable read through one node returned b while the write of b was still in flight; 8 ms after
    # that read completed, another client's read returned a, the value before b.
    history = [write("w-a", b"a", 0.000, 0.010, client=1),
               write("w-b", b"b", 0.020, 0.100, client=1),
               read("r-node1", b"b", 0.030, 0.040, client=2),
               read("r-node2", b"a", 0.048, 0.055, client=3)]
    result = check_linearizability(history)
    assert result.verdict == "violation"
    assert {o.id for o in result.keys[b"k"].ops} == {"w-a", "w-b", "r-node1", "r-node2"}
    # but the two reads overlapping would be fine
    history[3].invoke = 0.035
    assert verdict(history) == "ok"


def test_keys_are_checked_separately():
    history = [write("w", b"a", 0, 1, key=b"x"), read("r", None, 2, 3, key=b"y"),
               read("bad", None, 2, 3, key=b"x")]
    result = check_linearizability(history)
    assert result.keys[b"y"].verdict == "ok"
    assert result.keys[b"x"].verdict == "violation"
    assert [r.key for r in result.violations] == [b"x"]


def test_malformed_history_is_refused():
    with pytest.raises(ValueError):
        check_linearizability([op("x", "increment", 0, 1)])
    with pytest.raises(ValueError):
        check_linearizability([write("w", b"a", 0, 1), write("w", b"b", 0, 1)])
    with pytest.raises(ValueError):
        check_linearizability([write("w", b"a", 2, 1)])


# ---------------------------------------------------------------------------------------------- reports
def noisy_stale_read():
    """A stale read hidden among unrelated ops on other clients."""
    history = [write("w1", b"a", 0, 1), write("w2", b"b", 2, 3), read("r", b"a", 4, 5)]
    history += [read("n%d" % i, b"b", 3.5 + i, 9 + i) for i in range(4)]
    history += [write("w3", b"c", 20, 21), read("n9", b"c", 22, 23)]
    return history


def test_violation_is_shrunk_to_the_ops_that_show_it():
    result = check_key(noisy_stale_read())
    assert result.verdict == "violation" and result.minimal
    assert {o.id for o in result.ops} == {"w1", "w2", "r"}
    assert not brute_force_linearizable(result.ops)
    assert [o.id for o in result.partial] == ["w1", "w2"]
    assert "r" in result.explanation and "holds b" in result.explanation


def test_text_timeline_has_one_line_per_op_with_bars_on_one_axis():
    result = check_key(noisy_stale_read())
    lines = result.timeline.splitlines()
    bars = [line for line in lines if "|" in line and re.search(r"\[=*\]|\|[ ]*\|", line)]
    assert len(bars) == 3
    starts = {line.split("|")[0].strip(): line.split("|")[1].index("[") for line in bars}
    assert starts["w1"] < starts["w2"] < starts["r"]
    assert any("read -> a" in line and "r |" in line for line in lines)
    assert any(line.rstrip().endswith("#1") for line in lines)


def test_unknown_outcome_bar_runs_to_the_edge():
    history = [write("w", b"a", 0, None, outcome="unknown"), read("r0", None, 1, 2), write("w2", b"z", 3, 4),
               read("r1", b"a", 5, 6), read("r2", b"z", 7, 8)]
    result = check_key(history)
    assert result.verdict == "violation"
    line = next(line for line in result.timeline.splitlines() if line.lstrip().startswith("w |"))
    assert line.split("|")[1].endswith(">")


def test_html_is_self_contained_and_marks_the_failing_ops():
    history = noisy_stale_read() + [write("other", b"q", 0, 1, key=b"k2")]
    result = check_linearizability(history)
    page = result.to_html(history)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script src" not in page and "<link" not in page and "http" not in page
    assert page.count("class='op ") == len(history)
    assert page.count("flagged") >= 3
    assert "violation" in page and "k2" in page
    plain = render_html(history, title="plain <title>")
    assert "plain &lt;title&gt;" in plain and "flagged'" not in plain


# ---------------------------------------------------------------------------------------------- the budget
def pathological_history(writers=24):
    """Many concurrent writes and then a read of a value nobody wrote: the search must try every subset and
    order of the writes before it can say no."""
    history = [write("w%d" % i, b"v%d" % i, 0, 100) for i in range(writers)]
    history.append(read("r", b"nobody", 200, 201))
    return history


def test_budget_exhausted_gives_unknown_never_ok():
    result = check_linearizability(pathological_history(), budget_s=0.3)
    assert result.verdict == "unknown"
    assert not result.ok
    assert result.keys[b"k"].verdict == "unknown"
    assert linearizable(pathological_history(), budget_s=0.3) == "unknown"


def test_budget_exhausted_on_a_linearisable_history_is_unknown_too():
    # linearisable (w1..w23, then w0, then the read), but the search tries w0 first and must exhaust every
    # subset of the other writes after it before it gets there
    history = pathological_history()
    history[-1].result = b"v0"
    assert check_linearizability(history, budget_s=0.3).verdict == "unknown"
    # with fewer writers the same shape is decided, and it is "ok"
    small = pathological_history(writers=8)
    small[-1].result = b"v0"
    assert check_linearizability(small, budget_s=30).verdict == "ok"


# ---------------------------------------------------------------------------------------------- properties
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(atomic_register_histories(keys=(b"a", b"b")))
def test_histories_of_an_atomic_register_pass_with_a_valid_witness(case):
    ops, _ = case
    result = check_linearizability(ops, budget_s=30)
    assert result.ok, result.to_text()
    for key, key_result in result.keys.items():
        assert valid_witness([o for o in ops if o.key == key], key_result.linearization)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_histories())
def test_agrees_with_the_brute_force_on_mutated_histories(case):
    ops, _, _ = case
    expected = "ok" if brute_force_linearizable(ops) else "violation"
    result = check_key(ops, budget_s=30)
    assert result.verdict == expected
    if expected == "violation":
        # the shrunk sub-history is itself a proof
        assert not brute_force_linearizable(result.ops)
        assert set(map(id, result.ops)) <= set(map(id, ops))
    else:
        assert valid_witness(ops, result.linearization)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_histories(allow_unknown=False), st.data())
def test_failed_cas_reporting_what_it_saw_agrees_with_the_brute_force(case, data):
    ops, _, _ = case
    failed = [o for o in ops if o.kind == "cas" and o.outcome == "ok" and not o.result]
    for o in failed:
        if data.draw(st.booleans()):
            o.observed = data.draw(st.sampled_from([None, b"v0", b"v1", b"v2", NOT_OBSERVED]))
    expected = "ok" if brute_force_linearizable(ops) else "violation"
    assert check_key(ops, budget_s=30).verdict == expected


# ---------------------------------------------------------------------------------------------- shrinking's proofs
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(atomic_register_histories(), st.data())
def test_every_cut_of_a_linearisable_history_is_linearisable(case, data):
    # the lemma that makes cutting a failing history in time sound
    ops, _ = case
    prepared = linearizability.prepare(ops)
    cut_time = data.draw(st.floats(min_value=-1, max_value=max(o.invoke for o in ops) + 1))
    cut = [item.op for item in linearizability._cut(prepared, cut_time)]
    assert brute_force_linearizable(cut)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(atomic_register_histories(), st.data())
def test_sound_removals_keep_a_linearisable_history_linearisable(case, data):
    # the lemma that makes the shrunk sub-history a proof for the whole history
    ops, _ = case
    prepared = linearizability.prepare(ops)
    chunk = data.draw(st.lists(st.sampled_from(prepared), unique_by=id)) if prepared else []
    rest = linearizability._remove_soundly(prepared, chunk)
    if rest is not None:
        assert brute_force_linearizable([item.op for item in rest])


@contextlib.contextmanager
def cutting_every_history():
    # cut every failing history in time, not only long ones, so that small random cases exercise it
    saved = linearizability._CUT_HISTORIES_LONGER_THAN
    linearizability._CUT_HISTORIES_LONGER_THAN = 0
    try:
        yield
    finally:
        linearizability._CUT_HISTORIES_LONGER_THAN = saved


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_histories())
def test_shrinking_with_cuts_gives_a_failing_sub_history(case):
    ops, _, _ = case
    with cutting_every_history():
        result = check_key(ops, budget_s=30)
    assert result.verdict == ("ok" if brute_force_linearizable(ops) else "violation")
    if result.verdict == "violation":
        assert result.minimal
        assert not brute_force_linearizable(result.ops)


def long_history_with_one_stale_read(seed=7, n_ops=600):
    """Ten clients on one key, an atomic register's history, then one read made to return an old value."""
    rng = random.Random(seed)
    free_at = [0.0] * 10
    ops = []
    for number in range(n_ops):
        client = rng.randrange(10)
        invoke = free_at[client] + rng.random() * 0.2
        complete = invoke + rng.random()
        free_at[client] = complete
        kind = "write" if rng.random() < 0.4 else "read"
        ops.append(Op(id=number, key=b"k", kind=kind, value=b"v%d" % number if kind == "write" else None,
                      invoke=invoke, complete=complete, client=client))
    points = sorted((rng.uniform(o.invoke, o.complete), o.id) for o in ops)
    state = None
    for _, number in points:
        if ops[number].kind == "write":
            state = ops[number].value
        else:
            ops[number].result = state
    reads = [o for o in ops if o.kind == "read" and o.result is not None and o.invoke > ops[-1].invoke / 2]
    reads[len(reads) // 2].result = next(o.value for o in ops if o.kind == "write")
    return ops


def test_long_history_is_cut_and_shrunk_to_a_few_ops():
    ops = long_history_with_one_stale_read()
    result = check_key(ops, budget_s=60)
    assert result.verdict == "violation" and result.minimal
    assert len(result.ops) <= 4
    assert not brute_force_linearizable(result.ops)
    assert result.cut_at is not None and "cut at time" in result.explanation
    assert len(result.timeline.splitlines()) == len(result.ops) + 2

"""The log-order checker (paxos_core.check.logorder): known histories with their applied logs, each anomaly
kind, stale reads, and agreement with the brute force restricted to the true applied order."""
import pytest
from hypothesis import HealthCheck, given, settings

from paxos_core.check import Op, applied_order_from_log, check_linearizability, check_log_order
from test_check_reference import atomic_register_histories, brute_force_linearizable, mutated_histories


def op(id, kind, invoke, complete, key=b"k", **fields):
    return Op(id=id, key=key, kind=kind, invoke=invoke, complete=complete, **fields)


def write(id, value, invoke, complete, **fields):
    return op(id, "write", invoke, complete, value=value, **fields)


def read(id, result, invoke, complete, **fields):
    return op(id, "read", invoke, complete, result=result, **fields)


def cas(id, expected, value, result, invoke, complete, **fields):
    return op(id, "cas", invoke, complete, expected=expected, value=value, result=result, **fields)


def log(*changes, key=b"k"):
    return {key: list(changes)}


def kinds(result):
    return sorted(anomaly.kind for anomaly in result.anomalies)


def only(result, kind):
    found = result.of_kind(kind)
    assert len(found) == 1, result.to_text()
    return found[0]


# ---------------------------------------------------------------------------------------------- known answers
def test_classic_stale_read_names_the_overwrite_it_missed():
    history = [write("w1", b"a", 0, 1), write("w2", b"b", 2, 3), read("r", b"a", 4, 5)]
    result = check_log_order(history, log(("w1", b"a"), ("w2", b"b")))
    assert not result.ok
    anomaly = only(result, "time-order")
    # r read a, so it precedes w2 in the log order: w2 cannot take effect before r was invoked at 4
    assert anomaly.op_ids == ("r", "w2")
    assert "w2" in anomaly.explanation and "invoked at 4" in anomaly.explanation


def test_read_from_the_future_is_a_violation():
    history = [read("r", b"a", 0, 1), write("w", b"a", 2, 3)]
    anomaly = only(check_log_order(history, log(("w", b"a"))), "time-order")
    assert anomaly.op_ids == ("w", "r")


def test_read_of_the_initial_value_after_a_write_completed_is_a_violation():
    history = [write("w", b"a", 0, 10), read("r1", b"a", 1, 2), read("r2", None, 3, 4)]
    anomaly = only(check_log_order(history, log(("w", b"a"))), "time-order")
    # r2 read absent, so it precedes w, which precedes r1; r2 was invoked after r1 completed
    assert anomaly.op_ids == ("r2", "w", "r1")


def test_overlapping_concurrent_ops_are_fine():
    history = [write("w1", b"a", 0, 10), write("w2", b"b", 1, 9), read("r1", b"b", 2, 3),
               read("r2", b"a", 4, 5), read("r3", b"a", 6, 12), cas("c", b"a", b"c", True, 7, 14),
               read("r4", b"c", 13, 15), read("r0", None, 0, 0.5)]
    result = check_log_order(history, log(("w2", b"b"), ("w1", b"a"), ("c", b"c")))
    assert result.ok, result.to_text()
    # the same history with the writes applied the other way round cannot explain r1 then r2
    assert not check_log_order(history, log(("w1", b"a"), ("w2", b"b"), ("c", b"c"))).ok


def test_a_failed_cas_observes_a_value():
    history = [write("w1", b"a", 0, 1), cas("c", b"x", b"y", False, 2, 3, observed=b"a"),
               write("w2", b"b", 4, 5)]
    assert check_log_order(history, log(("w1", b"a"), ("w2", b"b"))).ok
    history[1].observed = b"b"   # saw b before b was written
    assert kinds(check_log_order(history, log(("w1", b"a"), ("w2", b"b")))) == ["time-order"]


def test_a_blind_failed_cas_only_needs_some_other_value():
    history = [write("w1", b"a", 0, 1), write("w2", b"b", 2, 3), cas("c", b"b", b"y", False, 4, 5)]
    # c saw something other than b, so it sits before w2, which then cannot wait until c was invoked
    anomaly = only(check_log_order(history, log(("w1", b"a"), ("w2", b"b"))), "time-order")
    assert anomaly.op_ids == ("c", "w2")
    history[2].expected = b"a"
    assert check_log_order(history, log(("w1", b"a"), ("w2", b"b"))).ok
    never_anything_else = [cas("c", None, b"y", False, 0, 1)]
    assert kinds(check_log_order(never_anything_else, {})) == ["phantom-read"]


def test_reads_of_absent_may_sit_before_the_first_write_or_after_a_delete():
    history = [write("w1", b"a", 0, 1), write("del", None, 2, 3), read("r1", None, 4, 5),
               write("w2", b"b", 6, 7), read("r2", None, 0, 0.5)]
    applied = log(("w1", b"a"), ("del", None), ("w2", b"b"))
    assert check_log_order(history, applied).ok
    history[2].invoke, history[2].complete = 8, 9     # absent after b was written and never deleted
    assert kinds(check_log_order(history, applied)) == ["time-order"]


def test_unknown_write_seen_later_is_in_the_log():
    history = [write("w", b"a", 0, None, outcome="unknown"), read("r1", None, 10, 11),
               read("r2", b"a", 50, 51)]
    assert check_log_order(history, log(("w", b"a"))).ok


def test_unknown_write_never_seen_and_never_applied_is_fine():
    history = [write("w", b"a", 0, None, outcome="unknown"), read("r", None, 10, 11)]
    assert check_log_order(history, log()).ok
    # ... and a read of it then is a phantom naming the write the log never applied
    history.append(read("r2", b"a", 12, 13))
    anomaly = only(check_log_order(history, log()), "phantom-read")
    assert anomaly.op_ids == ("r2", "w")


def test_lost_acknowledged_write():
    history = [write("w", b"a", 0, 1), cas("c", None, b"x", True, 2, 3, key=b"k2")]
    result = check_log_order(history, {})
    assert kinds(result) == ["lost-write", "lost-write"]
    assert {a.op_ids for a in result.anomalies} == {("w",), ("c",)}


def test_a_delete_the_log_left_out_found_the_key_absent():
    history = [write("w", b"a", 0, 1), write("del", None, 2, 3)]
    # deleting an absent key changes nothing, so the log may leave it out...
    assert check_log_order([history[1]], {}).ok
    # ... but then the key must have been absent at some point while the delete ran
    assert kinds(check_log_order(history, log(("w", b"a")))) == ["time-order"]
    assert check_log_order(history, log(("w", b"a"), ("del", None))).ok


def test_duplicate_apply():
    history = [write("w1", b"a", 0, 1), write("w2", b"b", 2, 3), read("r", b"a", 4, 5)]
    result = check_log_order(history, log(("w1", b"a"), ("w2", b"b"), ("w1", b"a")))
    assert kinds(result) == ["duplicate-apply", "time-order"]
    assert only(result, "duplicate-apply").op_ids == ("w1",)
    # the read of a is explained by the second apply of w1 but the time window of w1 ended at 1
    assert only(result, "time-order").op_ids[-1] == "w1"


def test_refused_op_that_took_effect():
    history = [write("w", b"a", 0, 1, outcome="fail"), cas("c", b"a", b"x", False, 2, 3)]
    result = check_log_order(history, log(("w", b"a"), ("c", b"x")))
    assert kinds(result) == ["refused-applied", "refused-applied"]


def test_phantom_read():
    history = [write("w", b"a", 0, 1), read("r", b"zzz", 2, 3)]
    anomaly = only(check_log_order(history, log(("w", b"a"))), "phantom-read")
    assert anomaly.op_ids == ("r",)


def test_apply_mismatches():
    history = [write("w", b"a", 0, 1), cas("c", b"q", b"x", True, 2, 3), write("w9", b"z", 4, 5, key=b"k2")]
    result = check_log_order(history, log(("w", b"other"), ("c", b"x"), ("w9", b"z")))
    mismatches = result.of_kind("apply-mismatch")
    assert [a.op_ids for a in mismatches] == [("w",), ("w", "c"), ("w9",)]
    assert "lost-write" in kinds(result)     # w9 never reached its own key's log


def test_read_of_in_flight_write_then_older_value_8ms_later_is_a_violation():
    # A linearizable read through one node returned b while the write of b was in flight; 8 ms after it
    # completed another read returned a, the value before b.
    history = [write("w-a", b"a", 0.000, 0.010), write("w-b", b"b", 0.020, 0.100),
               read("r-node1", b"b", 0.030, 0.040), read("r-node2", b"a", 0.048, 0.055)]
    anomaly = only(check_log_order(history, log(("w-a", b"a"), ("w-b", b"b"))), "time-order")
    assert anomaly.op_ids == ("r-node2", "w-b", "r-node1")


def test_ops_not_in_the_history_are_writes_at_any_time():
    history = [read("r", b"x", 5, 6)]
    assert check_log_order(history, log(("internal", b"x"))).ok


def test_each_anomaly_carries_its_key_and_a_one_line_explanation():
    history = [write("w1", b"a", 0, 1), write("w2", b"b", 2, 3), read("r", b"a", 4, 5), write("w", b"q", 0, 1)]
    result = check_log_order(history, log(("w1", b"a"), ("w2", b"b")))
    assert len(result.anomalies) == 2
    for anomaly in result.anomalies:
        assert anomaly.key == b"k" and "\n" not in anomaly.explanation and anomaly.ops
    page = result.to_html(history)
    assert page.count("flagged") >= 3 and "<script src" not in page


def test_applied_order_from_a_flat_log():
    flat = [(b"k", "w1", b"a"), (b"j", "x", b"1"), (b"k", "w2", b"b")]
    assert applied_order_from_log(flat) == {b"k": [("w1", b"a"), ("w2", b"b")], b"j": [("x", b"1")]}


# ---------------------------------------------------------------------------------------------- stale reads
def test_stale_reads_may_be_behind_but_not_from_the_future():
    history = [write("w1", b"a", 0, 1), write("w2", b"b", 2, 3), read("r", b"a", 4, 5, stale=True),
               read("r0", None, 6, 7, stale=True)]
    applied = log(("w1", b"a"), ("w2", b"b"))
    assert check_log_order(history, applied).ok
    future = [read("r", b"a", 0, 1), write("w1", b"a", 2, 3)]
    assert kinds(check_log_order(future, log(("w1", b"a")), stale_reads=True)) == ["time-order"]
    phantom = [read("r", b"q", 0, 1)]
    assert kinds(check_log_order(phantom, log(("w1", b"a")), stale_reads=True)) == ["phantom-read"]
    # the flag makes every read stale: the classic stale read passes
    classic = history[:2] + [read("r", b"a", 4, 5)]
    assert check_log_order(classic, applied, stale_reads=True).ok
    assert not check_log_order(classic, applied).ok


def test_malformed_history_is_refused():
    with pytest.raises(ValueError):
        check_log_order([op("x", "increment", 0, 1)], {})


# ---------------------------------------------------------------------------------------------- properties
def write_order(applied, key=b"k"):
    return [op_id for op_id, _ in applied.get(key, [])]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(atomic_register_histories(keys=(b"a", b"b")))
def test_histories_of_an_atomic_register_pass_with_their_true_log(case):
    ops, applied = case
    result = check_log_order(ops, applied)
    assert result.ok, result.to_text()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_histories())
def test_agrees_with_the_brute_force_held_to_the_true_log(case):
    # The unrestricted brute force is not the reference here: with the writes' order fixed a history can fail
    # that another order of concurrent writes would explain. Held to the same order, they must agree exactly.
    ops, applied, _ = case
    result = check_log_order(ops, applied)
    assert result.ok == brute_force_linearizable(ops, write_order=write_order(applied)), result.to_text()
    if result.ok:
        assert brute_force_linearizable(ops)
        assert check_linearizability(ops, budget_s=30).ok


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_histories(flip_cas=False))
def test_time_order_anomalies_name_a_real_conflict(case):
    # every time-order report names a chain whose first op was invoked after the last op completed
    ops, applied, _ = case
    for anomaly in check_log_order(ops, applied).of_kind("time-order"):
        first, last = anomaly.ops[0], anomaly.ops[-1]
        assert last.complete is not None and first.invoke > last.complete, anomaly

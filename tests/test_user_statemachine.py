"""State machines of your own (statemachine/user.py, objects.py, loader.py) without a cluster: sessions,
atomic commands, one store write per cycle, snapshots, the JSON object layer, and finding a factory by its
import path. The examples (examples/bank.py, locks.py, counter.py) are the state machines under test."""
import json
import sys
from pathlib import Path

import pytest

from paxos_core import errors
from paxos_core.config import NodeConfig, write_cluster, load_config
from paxos_core.statemachine import MemoryStore, KVStateMachine, UserStateMachine, decode_user_result
from paxos_core.statemachine import kv as kvmod
from paxos_core.statemachine.loader import factory_for
from paxos_core.statemachine.objects import ObjectStateMachine, encode_call

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import bank  # noqa: E402
import counter  # noqa: E402
import locks  # noqa: E402


def cmd(d):
    return json.dumps(d).encode()


def run(sm, group, commands, instance=None):
    """Apply one instance holding `commands` [(cid, seq, op)]; its results."""
    instance = sm.applied_next(group) if instance is None else instance
    return sm.apply_batch(group, [(instance, commands)])[0]


def opened(store=None):
    sm = bank.Ledger(store or MemoryStore())
    run(sm, 0, [(0, 0, cmd({"op": "open", "account": "a", "amount": 100})),
                (0, 0, cmd({"op": "open", "account": "b", "amount": 5}))])
    return sm


def test_a_command_returns_its_result_and_a_refusal_is_a_command_error_that_changes_nothing():
    sm = opened()
    ok, refused = run(sm, 0, [(0, 0, cmd({"op": "transfer", "from": "a", "to": "b", "amount": 30})),
                              (0, 0, cmd({"op": "transfer", "from": "b", "to": "a", "amount": 999}))])
    assert json.loads(decode_user_result(ok)) == {"a": 70, "b": 35}
    with pytest.raises(errors.CommandError, match=r"^InsufficientFunds: 'b' has 35, cannot send 999$"):
        decode_user_result(refused)
    assert json.loads(decode_user_result(sm.read(0, b'{"q": "accounts"}'))) == {"a": 70, "b": 35}


def test_a_command_that_raises_after_writing_leaves_no_write_behind():
    class HalfWrite(UserStateMachine):
        def apply(self, group, instance, op):
            self.put(group, b"x", op)
            raise ValueError("refused after the write")

        def query(self, group, query):
            return self.get(group, b"x") or b"(none)"

    sm = HalfWrite(MemoryStore())
    (result,) = run(sm, 0, [(0, 0, b"1")])
    assert result == b"\x83ValueError: refused after the write"
    assert decode_user_result(sm.read(0, b"")) == b"(none)"


def test_sessions_answer_a_retry_from_memory_refuse_stale_and_unknown_sessions_like_the_kv():
    sm = opened()
    t = cmd({"op": "transfer", "from": "a", "to": "b", "amount": 10})
    first = run(sm, 0, [(7, 1, t)])[0]
    again = run(sm, 0, [(7, 1 | kvmod.RETRY_FLAG, t)])[0]        # a retry: answered, not applied again
    assert again == first
    assert json.loads(decode_user_result(sm.read(0, b'{"q": "accounts"}'))) == {"a": 90, "b": 15}
    run(sm, 0, [(7, 2, t)])
    assert run(sm, 0, [(7, 1, t)]) == [kvmod.R_STALE]
    assert run(sm, 0, [(8, 5, t)]) == [kvmod.R_SESSION_UNKNOWN]
    assert run(sm, 0, [(9, 1 | kvmod.RETRY_FLAG, t)]) == [kvmod.R_SESSION_UNKNOWN]
    assert kvmod.session_refusal(kvmod.R_STALE) is errors.StaleRequest      # the Client's check works as is


def test_an_error_is_remembered_by_its_session_so_a_retry_gets_the_same_error():
    sm = opened()
    t = cmd({"op": "transfer", "from": "b", "to": "a", "amount": 50})
    first = run(sm, 0, [(3, 1, t)])[0]
    run(sm, 0, [(0, 0, cmd({"op": "transfer", "from": "a", "to": "b", "amount": 60}))])   # b could pay now
    assert run(sm, 0, [(3, 1 | kvmod.RETRY_FLAG, t)])[0] == first
    with pytest.raises(errors.CommandError, match="InsufficientFunds"):
        decode_user_result(first)


def test_the_session_table_decides_like_the_kvs_for_the_same_sequence_of_requests():
    # The KV keeps its own inlined copy of the session rules (its hot path); both must decide alike.
    requests = [(5, 1), (5, 1), (5, 3), (5, 2), (6, 2), (6, 1 | kvmod.RETRY_FLAG), (6, 1), (6, 1), (5, 4)]
    kv, user = KVStateMachine(MemoryStore(), max_sessions=1), opened()
    user.max_sessions = 1

    def kind(result):
        return result if result in (kvmod.R_STALE, kvmod.R_SESSION_UNKNOWN) else "applied-or-answered"
    put = kvmod.encode_put(b"k", b"v")
    t = cmd({"op": "open", "account": "zz", "amount": 0})
    got_kv = [kind(run(kv, 0, [(c, s, put)])[0]) for c, s in requests]
    got_user = [kind(run(user, 0, [(c, s, t)])[0]) for c, s in requests]
    assert got_kv == got_user
    a, stale, unknown = "applied-or-answered", kvmod.R_STALE, kvmod.R_SESSION_UNKNOWN
    # (6, 1) starts session 6 and evicts session 5 (max_sessions=1): (5, 4) then finds no session.
    assert got_kv == [a, a, a, stale, unknown, unknown, a, a, unknown]


def test_a_cycle_of_many_commands_in_many_groups_is_one_store_write():
    store = MemoryStore()
    sm = bank.Ledger(store)
    for group in range(5):
        run(sm, group, [(0, 0, cmd({"op": "open", "account": "a%d" % k, "amount": 1})) for k in range(3)])
    assert store.writes == 0
    sm.flush()
    assert store.writes == 1
    reopened = bank.Ledger(store)                  # a restart: data, sessions and applied marks from the store
    assert [reopened.applied_next(g) for g in range(5)] == [1] * 5
    assert decode_user_result(reopened.read(4, b'{"q": "total"}')) == b"3"


def test_snapshot_and_restore_carry_data_and_sessions_and_equal_states_give_equal_snapshots():
    a, b = opened(), bank.Ledger(MemoryStore())
    run(a, 0, [(11, 1, cmd({"op": "transfer", "from": "a", "to": "b", "amount": 1}))])
    b.restore(0, a.snapshot(0))
    assert b.snapshot(0) == a.snapshot(0)
    assert b.applied_next(0) == a.applied_next(0) == 2
    retried = run(b, 0, [(11, 1 | kvmod.RETRY_FLAG, b"ignored: answered from the session")])[0]
    assert json.loads(decode_user_result(retried)) == {"a": 99, "b": 6}


def test_query_cannot_write_and_apply_cannot_touch_another_group():
    class Rogue(UserStateMachine):
        def apply(self, group, instance, op):
            return self.get(group + 1, b"k") or b""

        def query(self, group, query):
            self.put(group, b"k", b"v")
            return b""

    sm = Rogue(MemoryStore())
    with pytest.raises(errors.CommandError, match="may only use group 0's data"):
        decode_user_result(run(sm, 0, [(0, 0, b"")])[0])
    with pytest.raises(errors.CommandError, match="put and delete are for apply only"):
        decode_user_result(sm.read(0, b""))


def test_scan_sees_store_cycle_and_command_writes_in_key_order():
    class Scanner(UserStateMachine):
        def apply(self, group, instance, op):
            self.put(group, op, b"1")
            self.delete(group, b"p/b")
            return json.dumps([k.decode() for k, _ in self.scan(group, b"p/")]).encode()

    sm = Scanner(MemoryStore())
    run(sm, 0, [(0, 0, b"p/b"), (0, 0, b"p/c")])
    sm.flush()
    assert json.loads(decode_user_result(run(sm, 0, [(0, 0, b"p/a")])[0])) == ["p/a", "p/c"]


def test_a_replicated_object_applies_calls_and_every_replica_holds_the_json_round_tripped_state():
    store = MemoryStore()
    sm = ObjectStateMachine(store, counter.Counters)
    add = encode_call("add", ["x", 2])
    assert json.loads(decode_user_result(run(sm, 0, [(1, 1, add)])[0])) == 2
    assert json.loads(decode_user_result(run(sm, 0, [(1, 1 | kvmod.RETRY_FLAG, add)])[0])) == 2   # exactly once
    with pytest.raises(errors.CommandError, match="TypeError: n must be an integer"):
        decode_user_result(run(sm, 0, [(0, 0, encode_call("add", ["x", "many"]))])[0])
    with pytest.raises(errors.CommandError, match="has no @replicated method 'get'"):
        decode_user_result(run(sm, 0, [(0, 0, encode_call("get", ["x"]))])[0])
    assert json.loads(decode_user_result(sm.read(0, encode_call("get", ["x"])))) == 2
    sm.flush()
    restarted = ObjectStateMachine(store, counter.Counters)
    assert restarted.snapshot(0) == sm.snapshot(0)
    assert json.loads(decode_user_result(restarted.read(0, encode_call("snapshot")))) == {"x": 2}


def test_a_replicated_object_state_that_is_not_json_is_refused_and_changes_nothing():
    from paxos_core.statemachine.objects import ReplicatedObject, replicated

    class Bad(ReplicatedObject):
        def __init__(self):
            self.items = []

        @replicated
        def keep(self, value):
            self.items.append(value)
            if value == "set":
                self.items.append({1, 2})          # a set is not JSON
            return len(self.items)

        @replicated
        def pair(self):
            self.items.append((1, 2))              # a tuple: a list on every node, at once
            return len(self.items)

    sm = ObjectStateMachine(MemoryStore(), Bad)
    run(sm, 0, [(0, 0, encode_call("keep", ["a"]))])
    with pytest.raises(errors.CommandError, match="TypeError"):
        decode_user_result(run(sm, 0, [(0, 0, encode_call("keep", ["set"]))])[0])
    run(sm, 0, [(0, 0, encode_call("pair"))])
    assert sm._object(0).items == ["a", [1, 2]]


def test_factories_are_found_by_import_path_and_every_bad_path_is_a_one_line_config_error(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "sm_bad_examples.py").write_text(
        "from paxos_core.statemachine.user import UserStateMachine\n"
        "NOT_CALLABLE = 3\n"
        "def raising(store):\n    raise RuntimeError('no\\ndatabase')\n"
        "def wrong(store):\n    return object()\n")
    (tmp_path / "sm_import_fails.py").write_text("raise ImportError('broken module')\n")
    assert isinstance(factory_for("bank:Ledger")(MemoryStore()), bank.Ledger)
    assert isinstance(factory_for("counter:Counters")(MemoryStore()), ObjectStateMachine)
    cases = {
        "no_such_module_xyz:F": "no module named 'no_such_module_xyz'",
        "sm_bad_examples:Missing": "has no attribute 'Missing'",
        "sm_bad_examples:NOT_CALLABLE": "is a int, not a class or factory function",
        "sm_import_fails:F": "importing sm_import_fails raised ImportError: broken module",
        "not a path": "must be \"package.module:Factory\"",
    }
    for spec, why in cases.items():
        with pytest.raises(errors.ConfigError) as info:
            factory_for(spec)
        assert why in str(info.value) and "\n" not in str(info.value), spec
    for spec, why in (("sm_bad_examples:raising", "the factory raised RuntimeError: no database"),
                      ("sm_bad_examples:wrong", "returned a object, not a paxos_core StateMachine")):
        with pytest.raises(errors.ConfigError, match=why):
            factory_for(spec)(MemoryStore())


def test_the_node_file_takes_a_state_machine_path_and_checks_its_form_at_load(tmp_path):
    write_cluster(tmp_path, nodes=3, workers=1, groups=2, base_port=21000)
    path = tmp_path / "node1.toml"
    text = path.read_text()
    path.write_text(text.replace("[cluster]\n", '[cluster]\nstate_machine = "bank:Ledger"\n', 1))
    config = load_config(path)
    assert config.state_machine == "bank:Ledger"
    assert NodeConfig.from_dict(config.to_dict(), "/").state_machine == "bank:Ledger"
    path.write_text(text.replace("[cluster]\n", '[cluster]\nstate_machine = "bank.Ledger"\n', 1))
    with pytest.raises(errors.ConfigError, match=r"node1.toml: cluster.state_machine: must be \"package.module:"):
        load_config(path)
    assert load_config(tmp_path / "node2.toml").state_machine == ""

"""The system group's state machine (statemachine/membership.py, issue 14 step 4), without a cluster: epochs
with compare-and-set, ids never reused, idempotent changes, refusals that change nothing, snapshots. A node
runs it as the system group (tests/test_system_group.py)."""
import json
import random

import pytest

from paxos_core.statemachine import MemoryStore, decode_user_result
from paxos_core.statemachine.membership import (EPOCH_CONFLICT, INVALID, MAX_VOTERS, NOT_FOUND, NOT_SEEDED,
                                                MembershipStateMachine, encode_change)

S = 7           # the system group's id in these tests (any group)


def seed_nodes(n=3):
    return [{"id": i, "host": "10.0.0.%d" % i, "peer_port": 7000, "client_port": 7100, "public_key": "key%d" % i}
            for i in range(1, n + 1)]


def apply(sm, op, expect=None, **fields):
    (result,) = sm.apply_batch(S, [(sm.applied_next(S), [(0, 0, encode_change(op, expect, **fields))])])[0]
    return json.loads(decode_user_result(result))


def table(sm):
    return json.loads(decode_user_result(sm.read(S, b"table")))


def seeded(n=3):
    sm = MembershipStateMachine(MemoryStore())
    assert apply(sm, "seed", alpha=8, nodes=seed_nodes(n)) == {"ok": True, "changed": True, "epoch": 1}
    return sm


def test_seed_makes_epoch_1_with_every_node_a_voter_and_seeding_again_is_a_no_op():
    sm = seeded()
    t = table(sm)
    assert (t["epoch"], t["alpha"], t["next_id"], t["voters"], t["learners"]) == (1, 8, 4, [1, 2, 3], [])
    assert apply(sm, "seed", alpha=8, nodes=seed_nodes(3)) == {"ok": True, "changed": False, "epoch": 1}
    assert apply(sm, "seed", alpha=8, nodes=seed_nodes(5))["changed"] is False, "the file only seeds epoch 1"
    refused = apply(sm, "seed", alpha=4, nodes=seed_nodes(3))
    assert refused["error"] == INVALID and "alpha" in refused["message"]
    assert table(sm) == t


def test_a_seed_may_name_learners_but_needs_a_voter():
    sm = MembershipStateMachine(MemoryStore())
    nodes = seed_nodes(5)
    for node in nodes[3:]:
        node["role"] = "learner"
    assert apply(sm, "seed", alpha=8, nodes=nodes)["epoch"] == 1
    t = table(sm)
    assert (t["voters"], t["learners"], t["next_id"]) == ([1, 2, 3], [4, 5], 6)
    for bad_role in ("removed", "boss", None):
        fresh = MembershipStateMachine(MemoryStore())
        refused = apply(fresh, "seed", alpha=8, nodes=[dict(seed_nodes(1)[0], role=bad_role)])
        assert refused["error"] == INVALID and table(fresh)["epoch"] == 0
    fresh = MembershipStateMachine(MemoryStore())
    refused = apply(fresh, "seed", alpha=8, nodes=[dict(n, role="learner") for n in seed_nodes(2)])
    assert refused["error"] == INVALID and "0 voters" in refused["message"] and table(fresh)["epoch"] == 0


def test_nothing_but_a_seed_is_accepted_on_an_empty_table():
    sm = MembershipStateMachine(MemoryStore())
    result = apply(sm, "promote", id=1)
    assert result["ok"] is False and result["error"] == NOT_SEEDED
    assert table(sm)["epoch"] == 0


def test_add_promote_remove_each_make_an_epoch_and_ids_are_never_reused():
    sm = seeded()
    added = apply(sm, "add", 1, host="10.0.0.4", peer_port=7000, client_port=7100, public_key="key4")
    assert added == {"ok": True, "changed": True, "epoch": 2, "id": 4}
    assert table(sm)["learners"] == [4] and table(sm)["voters"] == [1, 2, 3]
    assert apply(sm, "promote", 2, id=4)["epoch"] == 3
    assert apply(sm, "remove", 3, id=1)["epoch"] == 4
    t = table(sm)
    assert (t["voters"], t["learners"], t["next_id"]) == ([2, 3, 4], [], 5)
    again = apply(sm, "add", None, host="10.0.0.1", peer_port=7000, client_port=7100, public_key="key-new")
    assert again["id"] == 5, "node 1's id is not given out again, though its address is free"
    history = json.loads(decode_user_result(sm.read(S, b"history")))
    assert [(e["epoch"], e["voters"], e["change"]["op"]) for e in history] == [
        (1, [1, 2, 3], "seed"), (2, [1, 2, 3], "add"), (3, [1, 2, 3, 4], "promote"), (4, [2, 3, 4], "remove"),
        (5, [2, 3, 4], "add")]


def test_of_two_changes_against_one_epoch_exactly_one_wins():
    sm = seeded()
    first = apply(sm, "add", 1, host="10.0.0.4", peer_port=7000, client_port=7100, public_key="key4")
    second = apply(sm, "add", 1, host="10.0.0.5", peer_port=7000, client_port=7100, public_key="key5")
    assert first["ok"] and first["epoch"] == 2
    assert second == {"ok": False, "error": EPOCH_CONFLICT, "epoch": 2,
                      "message": "the change expected epoch 1, the table is at epoch 2"}
    assert table(sm)["learners"] == [4]


def test_every_change_run_again_after_it_happened_succeeds_unchanged_whatever_epoch_it_expected():
    """The node driving a change dies after proposing it: running the same command again (with the epoch it
    expected then) must finish, not fail with a conflict."""
    sm = seeded()
    add = dict(host="10.0.0.4", peer_port=7000, client_port=7100, public_key="key4")
    steps = [("add", 1, add), ("promote", 2, {"id": 4}), ("update", 3,
             dict(id=4, host="10.0.9.4", peer_port=7000, client_port=7100)),
             ("add", 4, dict(host="10.0.0.1", peer_port=7000, client_port=7100, public_key="key6", replaces=1)),
             ("swap", 5, {"old": 1, "new": 5}), ("remove", 6, {"id": 2})]
    for op, expect, fields in steps:
        done = apply(sm, op, expect, **fields)
        assert done["ok"] and done["changed"] and done["epoch"] == expect + 1, (op, done)
        before = table(sm)
        rerun = apply(sm, op, expect, **fields)
        assert rerun["ok"] and rerun["changed"] is False and rerun["epoch"] == expect + 1, (op, rerun)
        assert rerun.get("id") == done.get("id")
        assert table(sm) == before
    assert table(sm)["voters"] == [3, 4, 5]


def test_a_voter_that_stops_being_one_keeps_the_last_epoch_it_voted_in():
    """Simulator seed 8,002,243: a node leaving the cluster hands its groups over only once their configuration
    is at least as new as the last table it voted in (MembershipDriver._leave); the table keeps that epoch in
    the node's entry, `voter_until`. A learner removed never voted: it has none."""
    sm = seeded()
    apply(sm, "add", 1, host="10.0.0.4", peer_port=7000, client_port=7100, public_key="key4")     # epoch 2
    apply(sm, "add", 2, host="10.0.0.5", peer_port=7000, client_port=7100, public_key="key5")     # epoch 3
    apply(sm, "promote", 3, id=4)                                                                 # epoch 4
    assert apply(sm, "remove", 4, id=4)["epoch"] == 5
    assert apply(sm, "swap", 5, old=1, new=5)["epoch"] == 6
    nodes = {n["id"]: n for n in table(sm)["nodes"]}
    assert nodes[4]["role"] == "removed" and nodes[4]["voter_until"] == 4
    assert nodes[1]["role"] == "removed" and nodes[1]["voter_until"] == 5
    assert all("voter_until" not in nodes[n] for n in (2, 3, 5))
    apply(sm, "add", 6, host="10.0.0.6", peer_port=7000, client_port=7100, public_key="key6")     # epoch 7
    apply(sm, "remove", 7, id=6)
    assert "voter_until" not in {n["id"]: n for n in table(sm)["nodes"]}[6], "a learner never voted"


def test_replace_adds_a_learner_at_the_dead_nodes_address_then_swaps_in_one_epoch():
    sm = seeded()
    clash = apply(sm, "add", None, host="10.0.0.3", peer_port=7000, client_port=7100, public_key="key9")
    assert clash["error"] == INVALID and "node 3 already uses" in clash["message"]
    new = apply(sm, "add", None, host="10.0.0.3", peer_port=7000, client_port=7100, public_key="key9",
                replaces=3)
    assert new["id"] == 4 and table(sm)["voters"] == [1, 2, 3]
    swapped = apply(sm, "swap", None, old=3, new=4)
    assert swapped["ok"] and table(sm)["voters"] == [1, 2, 4]
    # The whole replace run again (its driver died after the swap): both steps succeed unchanged.
    assert apply(sm, "add", 1, host="10.0.0.3", peer_port=7000, client_port=7100, public_key="key9",
                 replaces=3) == {"ok": True, "changed": False, "epoch": 3, "id": 4}
    assert apply(sm, "swap", 2, old=3, new=4) == {"ok": True, "changed": False, "epoch": 3, "id": 4}
    # The removed node's key can never come back.
    back = apply(sm, "add", None, host="10.0.0.8", peer_port=7000, client_port=7100, public_key="key3")
    assert back["error"] == INVALID and "removed" in back["message"]


@pytest.mark.parametrize("op,fields,error", [
    ("promote", {"id": 9}, NOT_FOUND),
    ("remove", {"id": 0}, INVALID),
    ("remove", {"id": True}, INVALID),
    ("swap", {"old": 1, "new": 2}, INVALID),                    # node 2 is a voter, not a learner
    ("swap", {"old": 1, "new": 1}, INVALID),
    ("add", {"host": "h", "peer_port": 70000, "client_port": 1, "public_key": "k"}, INVALID),
    ("add", {"host": "h", "peer_port": 5, "client_port": 5, "public_key": "k"}, INVALID),
    ("add", {"host": "has space", "peer_port": 5, "client_port": 6, "public_key": "k"}, INVALID),
    ("add", {"host": "h", "peer_port": 5, "client_port": 6, "public_key": "key1"}, INVALID),   # node 1's key
    ("add", {"host": "h", "peer_port": 5, "client_port": 6, "public_key": "k", "replaces": 9}, NOT_FOUND),
    ("update", {"id": 2, "host": "10.0.0.1", "peer_port": 7000, "client_port": 7200}, INVALID),  # node 1's port
    ("frobnicate", {}, INVALID),
    ("_commit", {}, INVALID),
])
def test_bad_changes_get_a_clear_error_and_change_nothing(op, fields, error):
    sm = seeded()
    before = table(sm)
    result = apply(sm, op, **fields)
    assert result["ok"] is False and result["error"] == error and result["message"], result
    assert table(sm) == before


def test_malformed_commands_and_the_voter_bounds():
    sm = seeded(1)
    for op in (b"", b"not json", b"[1, 2]", b'{"op": 3}', b'{"op": "remove", "id": 1, "expect": -1}', b"\xff"):
        (result,) = sm.apply_batch(S, [(sm.applied_next(S), [(0, 0, op)])])[0]
        assert json.loads(decode_user_result(result))["error"] == INVALID, op
    last = apply(sm, "remove", id=1)
    assert last["error"] == INVALID and "0 voters" in last["message"], "the last voter is never removed"
    for k in range(2, MAX_VOTERS + 2):
        added = apply(sm, "add", host="10.0.1.%d" % k, peer_port=7000, client_port=7100, public_key="k%d" % k)
        promoted = apply(sm, "promote", id=added["id"])
        assert promoted["ok"] == (k <= MAX_VOTERS), promoted
    assert len(table(sm)["voters"]) == MAX_VOTERS


def test_the_same_commands_give_the_same_table_and_a_snapshot_restores_it():
    rng = random.Random(5)
    ops = []
    for _ in range(200):
        op = rng.choice(["add", "promote", "remove", "swap", "update"])
        node = rng.randint(1, 12)
        fields = {"add": dict(host="10.0.0.%d" % rng.randint(1, 9), peer_port=7000, client_port=7100,
                              public_key="k%d" % rng.randint(1, 40)),
                  "promote": dict(id=node), "remove": dict(id=node), "swap": dict(old=node, new=rng.randint(1, 12)),
                  "update": dict(id=node, host="10.0.0.%d" % rng.randint(1, 9), peer_port=7000,
                                 client_port=7100)}[op]
        ops.append((op, rng.choice([None, None, rng.randint(1, 30)]), fields))
    one, two = seeded(), seeded()
    for op, expect, fields in ops:
        assert apply(one, op, expect, **fields) == apply(two, op, expect, **fields)
    assert table(one) == table(two)
    assert 1 <= len(table(one)["voters"]) <= MAX_VOTERS
    ids = [n["id"] for n in table(one)["nodes"]]
    assert ids == sorted(set(ids))
    restored = MembershipStateMachine(MemoryStore())
    restored.restore(S, one.snapshot(S))
    assert table(restored) == table(one)


def test_a_placement_names_cluster_nodes_moves_with_a_swap_and_pins_its_nodes():
    sm = seeded(5)
    assert apply(sm, "place", 1, group=3, voters=[5, 4, 3]) == {"ok": True, "changed": True, "epoch": 2, "placed": 3}
    assert apply(sm, "place", None, group=3, voters=[3, 4, 5])["changed"] is False, "the same placement again"
    assert table(sm)["placements"] == {"3": [3, 4, 5]}
    for bad in ([], [1, 1], [1, 2, 3, 4, 5, 6, 7, 8], [9], "1,2", [True]):
        refused = apply(sm, "place", group=3, voters=bad)
        assert refused["ok"] is False and table(sm)["placements"] == {"3": [3, 4, 5]}, bad
    assert apply(sm, "place", group=0xFFFFFFFE, voters=[1, 2, 3])["error"] == INVALID, "not the system group"
    refused = apply(sm, "remove", id=4)
    assert refused["error"] == INVALID and "move them first" in refused["message"]
    new = apply(sm, "add", host="10.0.0.9", peer_port=7000, client_port=7100, public_key="key9")["id"]
    apply(sm, "place", group=5, voters=[4, new, 1])
    refused = apply(sm, "swap", old=4, new=new)
    assert refused["error"] == INVALID and "a voter short" in refused["message"]
    apply(sm, "place", group=5, voters=None)
    apply(sm, "swap", old=4, new=new)
    assert table(sm)["placements"] == {"3": [3, 5, new]}
    assert apply(sm, "place", 2, group=3, voters=[1, 2, 3])["error"] == EPOCH_CONFLICT
    epoch = table(sm)["epoch"]
    assert apply(sm, "place", epoch, group=3, voters=None)["changed"] is True
    assert table(sm)["placements"] == {}


class _ClientOverTheTable:
    """What paxos_core/membership.py uses of a Client, over the state machine: reads and changes go to `sm`, and
    every node's status says it knows epoch `status_epoch` (behind the table, as right after a change)."""

    def __init__(self, sm, status_epoch):
        self.sm, self.status_epoch, self.status_asked = sm, status_epoch, 0
        self.nodes = [1, 2, 3, 4, 5]
        self.endpoints = {n: None for n in self.nodes}
        self.workers = 1

    def read(self, group, query, mode, timeout):
        return self.sm.read(S, query)

    def propose(self, group, command, timeout=None):
        (result,) = self.sm.apply_batch(S, [(self.sm.applied_next(S), [(0, 0, command)])])[0]

        class Reply:
            pass
        reply = Reply()
        reply.result = result
        return reply

    def _learn_members(self, table):
        return sorted(n["id"] for n in table["nodes"] if n["role"] != "removed")

    def _status_of(self, nodes, timeout):
        self.status_asked += 1
        return [{"node": n, "worker": 0, "membership": {"epoch": self.status_epoch}, "max_lag": 0} for n in nodes]


def test_a_change_against_an_epoch_the_table_passed_conflicts_without_asking_whether_it_is_safe():
    """CI run of 11c2d68: two removals made at once against epoch 1; the second read the table after the first
    (epoch 2) and, before proposing, asked the nodes whether it would keep a live quorum: nodes 2 and 3 had not
    learned epoch 2 yet, so it failed with WouldLoseQuorum, where the change was bound to an EpochConflict (it
    changes nothing either way). A change against a passed epoch is now proposed as it is (the state machine
    refuses it, or finds it made already); one against the table's epoch is still checked."""
    from paxos_core.errors import EpochConflict, WouldLoseQuorum
    from paxos_core.membership import Membership
    sm = seeded(5)
    assert apply(sm, "remove", expect=1, id=4)["epoch"] == 2
    client = _ClientOverTheTable(sm, status_epoch=1)
    with pytest.raises(EpochConflict) as conflict:
        Membership(client).remove(5, expect=1)
    assert conflict.value.epoch == 2 and client.status_asked == 0
    assert Membership(client).remove(4, expect=1).changed is False       # made already: unchanged, not refused
    with pytest.raises(WouldLoseQuorum):
        Membership(client).remove(5, expect=2)                            # the current epoch: the nodes are asked
    assert client.status_asked == 1 and table(sm)["epoch"] == 2

"""Bad input to the protocol core: a message that passed its frame's checksum but carries a value this build
cannot decode (a newer peer's format, a buggy or hostile member), or a ballot in another node's name, is
refused and counted, and changes nothing. (A worker that let the decode error escape Engine.receive died, and
its node gave up after a few restarts.)"""
import random

import pytest

from paxos_core.core.ballot import pack
from paxos_core.core.config import CoreConfig
from paxos_core.core.engine import Engine
from paxos_core.wire.codec import encode_batch, encode_entries
from paxos_core.wire.message import Kind, Message

GARBAGE = (b"\xff\xff\xff\xff", b"\x02" + bytes(16), b"\x01", b"\x00\x00\x00\x05abc")


def _engine(node_id=2):
    return Engine(CoreConfig(node_id=node_id, members=(1, 2, 3), n_groups=1), random.Random(node_id))


def _preparing(engine):
    """The engine, asked to propose with no leader known, runs phase 1: (its Prepare's ballot)."""
    engine.propose(0, b"x")
    for now in range(1, 2000, 10):
        engine.tick(now)
        if engine.group_view(0)["role"] == "preparing":
            return engine.group_view(0)["ballot"]
    raise AssertionError("never started phase 1")


def _state(engine):
    view = engine.group_view(0)
    return {k: view[k] for k in ("status", "promised", "accepted", "chosen_next", "chain", "known_mark", "role",
                                 "pending", "ballot")}


@pytest.mark.parametrize("value", GARBAGE)
@pytest.mark.parametrize("kind", [Kind.CATCHUP_REPLY, Kind.FORWARD, Kind.PROMISE])
def test_a_message_whose_value_does_not_decode_is_refused_and_changes_nothing(kind, value):
    engine = _engine()
    ballot = _preparing(engine) if kind == Kind.PROMISE else 0
    engine.take_effects()
    before = _state(engine)
    # A catch-up reply that claims more is chosen (mark 5, chosen mark 9) than we know; a Promise for our ballot.
    message = Message(kind, 0, 0, ballot, 5, 9, 0, value, src=3)
    engine.receive([message])                              # must not raise
    assert _state(engine) == before
    assert engine.counters_dict()["malformed_refused"] == 1
    fx = engine.take_effects()
    assert not fx.records and not fx.chosen
    # The engine goes on: a well-formed message is handled as ever.
    good = encode_entries([(0, pack(1, 1), encode_batch([(1, 1, b"v")]))])
    if kind == Kind.CATCHUP_REPLY:
        from paxos_core.core.learner import chain_of
        engine.receive([Message(Kind.CATCHUP_REPLY, 0, 0, 0, 1, 1, chain_of([encode_batch([(1, 1, b"v")])]), good,
                                src=3)])
        assert engine.group_view(0)["chosen_next"] == 1


@pytest.mark.parametrize("kind", [Kind.PREPARE, Kind.ACCEPT])
def test_a_prepare_or_accept_under_another_nodes_ballot_is_refused(kind):
    # Node 3 sends under a ballot of node 1's (the highest there is: the old code promised it, and no node could
    # ever lead again, its rounds wrapping to 0).
    engine = _engine()
    forged = (1 << 64) - 1 - 0xFFFF + 1
    message = Message(kind, 0, 0, forged, 0, 0, 0, encode_batch([(3, 1, b"v")]), src=3)
    engine.receive([message])
    fx = engine.take_effects()
    assert engine.group_view(0)["promised"] == 0 and not engine.group_view(0)["accepted"]
    assert not fx.records and not fx.send_now and not fx.send_after
    assert engine.counters_dict()["forged_ballots_refused"] == 1
    # Under its own ballot, node 3 is answered as ever.
    engine.receive([Message(kind, 0, 0, pack(1, 3), 0, 0, 0, encode_batch([(3, 1, b"v")]), src=3)])
    assert engine.group_view(0)["promised"] == pack(1, 3)


def _loop():
    """Node 1 of 3's replica loop on a memory log (the loop a worker runs)."""
    from paxos_core.replica.loop import LoopSettings, ReplicaLoop
    from paxos_core.statemachine.store import MemoryStore
    from paxos_core.storage.memory import MemoryLog

    clock = [1000.0]
    core = CoreConfig(node_id=1, members=(1, 2, 3), n_groups=2)
    log = MemoryLog(1)
    loop = ReplicaLoop(LoopSettings(node_id=1, index=0, workers=1, tick_s=0.01, lease_ticks=30), core,
                       clock=lambda: clock[0], log=log, store=MemoryStore(), send=lambda m: None, hosted=[0, 1],
                       recovery=log.recover(), rng=random.Random(7))
    return loop, clock


@pytest.mark.parametrize("value", [encode_batch([(2, 1, b"\x01short")]),            # a client entry cut short
                                   encode_batch([(2, 1, b"\x02" + bytes(40))]),      # a client batch that lies
                                   b"\x02" + bytes(8)])                              # a batch of a newer format
def test_a_chosen_value_that_does_not_decode_stops_its_group_instead_of_killing_the_worker(value):
    # Node 2 (a buggy or hostile member, or a newer build) gets such a value chosen with node 1's vote: node 1
    # votes for what it cannot read (it does not decode values to vote) and learns it chosen from the mark of
    # the next Accept. The old worker died applying it; the group stops here now, with the reason, and the
    # other group goes on.
    loop, clock = _loop()
    ballot = pack(1, 2)
    good = encode_batch([(2, 1, b"")])
    from paxos_core.core.learner import chain_of
    for instance, mark, chain, v in ((0, 0, 0, value), (1, 1, chain_of([value]), good)):
        clock[0] += 0.02
        loop.poll_timeout()
        loop.turn([Message(Kind.ACCEPT, 0, instance, ballot, mark, 0, chain, v, src=2)], ())   # must not raise
    clock[0] += 0.02
    loop.poll_timeout()
    loop.turn((), ())
    view = loop.engine.group_view(0)
    assert view["status"] == "stopped" and "does not decode" in view["stop_reason"]
    assert loop.sm.applied_next(0) == 0                     # nothing of it applied
    assert loop.engine.group_view(1)["status"] == "ok"

"""Catch-up when the node asked cannot answer: soak seed 3,002,585 (docs/RELIABILITY.md).

A wiped node of five, rebuilding, asked only node 3, its catch-up source (messages from a leader or a peer
ahead set it again), and node 3's CHAIN record at 64 was damaged, so its log served nothing that ends there: 250 requests, nothing learned, the group repairing at the end. Two fixes, each tested here on its own
against the production engine and effect cycle, and the seed itself in tests/test_simulator.py:
  - a request that brought nothing within the catch-up interval is followed by one to a peer drawn at random;
  - a reply that should end at a missing or damaged CHAIN record carries the chain computed from a lower one.
"""
import random

import pytest

from paxos_core.core.ballot import pack
from paxos_core.core.config import CoreConfig
from paxos_core.core.engine import Engine
from paxos_core.core.learner import chain_of
from paxos_core.replica.cycle import run_cycle
from paxos_core.storage.memory import MemoryLog
from paxos_core.storage.records import CHAIN_RECORD, group_key
from paxos_core.wire.codec import decode_entries, encode_batch, encode_entries
from paxos_core.wire.message import Kind, Message


def _engine(node_id, members, **config):
    return Engine(CoreConfig(node_id=node_id, members=members, n_groups=1, **config), random.Random(node_id))


class _Capture:
    def __init__(self):
        self.messages = []

    def __call__(self, messages):
        self.messages.extend(messages)

    def take(self, kind):
        found = [(dest, m) for dest, m in self.messages if m.kind == kind]
        self.messages = []
        return found


def _asked_node_1_for_ten_values(**config):
    """Node 2 of five, told by node 1 (its leader) that 10 instances are chosen, has asked node 1 for them."""
    engine = _engine(2, (1, 2, 3, 4, 5), catchup_interval_ticks=3, **config)
    log = MemoryLog(2)
    capture = _Capture()
    engine.receive([Message(Kind.CHOSEN, 0, 10, pack(1, 1), 10, 0, 0, b"", src=1)])
    engine.tick(1)
    run_cycle(engine, log, capture)
    assert [dest for dest, _ in capture.take(Kind.CATCHUP_REQ)] == [1]
    return engine, log, capture


@pytest.mark.parametrize("plant", ["", "catchup-source-only"])
def test_an_unanswered_catchup_request_is_followed_by_one_to_another_peer(plant):
    engine = _engine(2, (1, 2, 3, 4, 5), catchup_interval_ticks=3, plant=plant)
    log = MemoryLog(2)
    capture = _Capture()
    asked = []
    now = 0
    for _ in range(40):
        # The leader (node 1) says 10 instances are chosen, at every turn: node 2 holds none of them, and the
        # leader never answers its requests (its log cannot serve them).
        engine.receive([Message(Kind.CHOSEN, 0, 10, pack(1, 1), 10, 0, 0, b"", src=1)])
        now += 1
        engine.tick(now)
        run_cycle(engine, log, capture)
        asked += [dest for dest, _ in capture.take(Kind.CATCHUP_REQ)]
    assert asked[0] == 1, "the first request goes to the node that said the values are chosen"
    assert len(asked) >= 10, asked
    if plant:                                   # the planted bug asks the silent leader again and again
        assert set(asked) == {1}, asked
        return
    assert set(asked[1:]) - {1}, "every request went to the leader, which never answers: %s" % asked
    assert set(asked) <= {1, 3, 4, 5}

    # An answer that brings values resets it: the next request goes to the source again.
    values = [encode_batch([(1, k, b"v%d" % k)]) for k in range(5)]
    engine.receive([Message(Kind.CATCHUP_REPLY, 0, 0, 0, 5, 10, chain_of(values),
                            encode_entries([(i, pack(1, 1), v) for i, v in enumerate(values)]), src=1)])
    run_cycle(engine, log, capture)
    assert engine.learned(0)[0] == 5
    assert [dest for dest, _ in capture.take(Kind.CATCHUP_REQ)] == [1]


def test_after_a_quiet_while_the_node_that_announced_the_mark_is_asked_first():
    """A request long past (more than two intervals) does not count as unanswered: when the group is heard of
    again, the node that says the values are chosen is asked, not a peer drawn at random."""
    engine, log, capture = _asked_node_1_for_ten_values()
    for source in (3, 4, 5, 3, 4):
        # Long after the unanswered request, another node says more is chosen: it is asked.
        now = engine.now + 20
        engine.receive([Message(Kind.CHOSEN, 0, 10, pack(1, source), 10 + source, 0, 0, b"", src=source)])
        engine.tick(now)
        run_cycle(engine, log, capture)
        assert [dest for dest, _ in capture.take(Kind.CATCHUP_REQ)] == [source]


def test_the_node_asked_last_to_no_avail_is_not_asked_again_after_a_quiet_while():
    """Soak seed 4,401,544: a learner restarted behind in an idle group asked the node its promise named as
    leader, a node that had since left the cluster, and asked it again at the next catch-up pass, more than two
    intervals later, and stayed behind. The node asked last, if nothing came of it, is passed over for another."""
    engine, log, capture = _asked_node_1_for_ten_values()
    engine.tick(engine.now + 20)          # nothing came back; long after, node 1 is named again
    engine.receive([Message(Kind.CHOSEN, 0, 10, pack(1, 1), 10, 0, 0, b"", src=1)])
    run_cycle(engine, log, capture)
    asked = [dest for dest, _ in capture.take(Kind.CATCHUP_REQ)]
    assert len(asked) == 1 and asked[0] in (3, 4, 5), asked

    # Values came (from whichever node): progress forgets the peer asked, so a group caught up keeps no entry,
    # and the node that announces the next mark is asked first again.
    values = [encode_batch([(1, k, b"v%d" % k)]) for k in range(10)]
    engine.receive([Message(Kind.CATCHUP_REPLY, 0, 0, 0, 10, 10, chain_of(values),
                            encode_entries([(i, pack(1, 1), v) for i, v in enumerate(values)]), src=asked[0])])
    run_cycle(engine, log, capture)
    assert engine.learned(0)[0] == 10 and engine.catchup_asked == {}
    engine.receive([Message(Kind.CHOSEN, 0, 12, pack(1, 1), 12, 0, 0, b"", src=1)])
    run_cycle(engine, log, capture)
    assert [dest for dest, _ in capture.take(Kind.CATCHUP_REQ)] == [1]


@pytest.mark.parametrize("plant", ["", "catchup-any-peer"])
def test_a_peer_drawn_to_ask_is_one_heard_from_lately(plant):
    """Simulator seed 525: a learner of an idle group, cut off while the group changed, had one refresh in the
    four seconds after the heal, and drew a node that had left the cluster. Drawn peers are those heard from
    within peer_live ticks, if any."""
    engine, log, capture = _asked_node_1_for_ten_values(peer_live_ticks=50, plant=plant)
    to_heard = 0
    unheard = []
    for turn in range(12):
        # One node was heard from 40 ticks ago (a message for a group not hosted here), the one before it 80
        # ticks ago, node 1, the source, long ago: the source and the one live peer take turns.
        heard = 3 + turn % 3
        engine.receive([Message(Kind.CATCHUP_REQ, 99, 0, 0, 0, 0, 0, b"", src=heard)])
        engine.tick(engine.now + 40)
        run_cycle(engine, log, capture)
        asked = [dest for dest, _ in capture.take(Kind.CATCHUP_REQ)]
        assert len(asked) == 1, (turn, asked)
        if asked[0] not in (1, heard):
            unheard.append((turn, heard, asked[0]))
        to_heard += asked[0] == heard
    if plant:                                   # the planted bug draws nodes not heard from for ever
        assert unheard, "the plant drew only live peers"
        return
    assert not unheard, unheard
    assert to_heard == 6


def test_a_reply_that_ends_at_a_damaged_chain_record_is_served_with_the_chain_from_a_lower_one():
    values = [encode_batch([(1, k, b"value %d" % k)]) for k in range(130)]
    for damage in ("flip", "delete", None):
        engine = _engine(2, (1, 2, 3), catchup_max_instances=64)
        log = MemoryLog(2)
        capture = _Capture()
        engine.receive([Message(Kind.CATCHUP_REPLY, 0, 0, 0, 130, 130, chain_of(values),
                                encode_entries([(i, pack(1, 1), v) for i, v in enumerate(values)]), src=1)])
        run_cycle(engine, log, capture)
        assert engine.learned(0)[0] == 130
        key = group_key(CHAIN_RECORD, 0, 64)
        assert key in log.store, "the log keeps a CHAIN record every 64 instances"
        if damage == "flip":
            record = bytearray(log.store[key])
            record[-1] ^= 0x40
            log.store[key] = bytes(record)
        elif damage == "delete":
            del log.store[key]
        assert (log.read_chain(0, 64) is None) == (damage is not None)
        capture.messages = []
        # Node 3 asks from 0; a reply holds at most 64 values, so it ends at 64, where the record is damaged.
        engine.receive([Message(Kind.CATCHUP_REQ, 0, 0, 0, 0, 64, 0, b"", src=3)])
        _, short = run_cycle(engine, log, capture)
        replies = capture.take(Kind.CATCHUP_REPLY)
        assert short == 0 and len(replies) == 1, (damage, short, replies)
        dest, reply = replies[0]
        assert dest == 3 and (reply.instance, reply.mark) == (0, 64)
        assert reply.chain == chain_of(values[:64])
        assert [v for _, _, v in decode_entries(reply.value)] == values[:64]

        # The receiver learns them (the chain check passes), and goes on from 64.
        receiver = _engine(3, (1, 2, 3))
        receiver.receive([reply])
        run_cycle(receiver, MemoryLog(3), _Capture())
        assert receiver.learned(0)[0] == 64


def test_a_catchup_request_from_beyond_our_mark_makes_us_learn_from_its_sender():
    """Soak seed 5,022,045: node 3, a new voter of the system group cut off while the swap that made it one was
    chosen (the idle group's leader then left), never heard of it: its refreshes drew a rebuilding node and
    the node that had left, while node 4's catch-up requests from instance 13 went unused. A request from
    beyond our chosen mark says its sender learned everything below it: we take it as a known mark and ask
    that sender, as for a CHOSEN mark. A request from at or below our mark asks nothing."""
    engine = _engine(3, (1, 2, 3, 4, 5), catchup_interval_ticks=3)
    log = MemoryLog(3)
    capture = _Capture()
    engine.receive([Message(Kind.CATCHUP_REQ, 0, 0, 0, 0, 64, 0, b"", src=4)])
    engine.tick(1)
    run_cycle(engine, log, capture)
    assert capture.take(Kind.CATCHUP_REQ) == [] and engine.group_view(0)["known_mark"] == 0
    engine.receive([Message(Kind.CATCHUP_REQ, 0, 13, 0, 0, 64, 0, b"", src=4)])
    engine.tick(2)
    run_cycle(engine, log, capture)
    asked = capture.take(Kind.CATCHUP_REQ)
    assert [(dest, m.instance) for dest, m in asked] == [(4, 0)]
    assert engine.group_view(0)["known_mark"] == 13

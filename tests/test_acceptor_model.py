"""Hypothesis stateful tests of the acceptor against a deliberately simple reference model.

Two levels:
  * AcceptorState (the compiled role) against the textbook rules;
  * a whole Engine acting as acceptor (node 2), fed Prepare/Accept messages, crashed and recovered from its
    own records, checking the replies, which of them wait for the persist, and the durable state.
"""
import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from paxos_core.core.acceptor import ACCEPTED, PROMISED, PROMISED_AGAIN, REJECTED, AcceptorState
from paxos_core.core.ballot import pack
from paxos_core.core.config import CoreConfig
from paxos_core.core.engine import Engine
from paxos_core.storage.records import encode_records
from paxos_core.storage.recovery import recover
from paxos_core.wire.message import Kind, Message

# Ballots of the two other nodes (node 2 is the acceptor under test).
ballots = st.builds(pack, st.integers(0, 6), st.sampled_from([1, 3]))
instances = st.integers(0, 5)
values = st.binary(min_size=0, max_size=8)


class ReferenceAcceptor:
    """The acceptor rules as a textbook states them, with nothing else."""

    def __init__(self):
        self.promised = 0
        self.accepted = {}

    def prepare(self, ballot):
        if ballot < self.promised:
            return REJECTED
        if ballot == self.promised:
            return PROMISED_AGAIN
        self.promised = ballot
        return PROMISED

    def accept(self, instance, ballot, value):
        if ballot < self.promised:
            return REJECTED
        self.promised = ballot
        self.accepted[instance] = (ballot, value)
        return ACCEPTED


class AcceptorStateMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.real = AcceptorState(2)
        self.model = ReferenceAcceptor()

    @rule(ballot=ballots)
    def prepare(self, ballot):
        assert self.real.prepare(1, ballot) == self.model.prepare(ballot)

    @rule(instance=instances, ballot=ballots, value=values)
    def accept(self, instance, ballot, value):
        assert self.real.accept(1, instance, ballot, value) == self.model.accept(instance, ballot, value)

    @invariant()
    def same_state(self):
        assert self.real.promised_of(1) == self.model.promised
        assert self.real.accepted_of(1) == self.model.accepted
        assert self.real.promised_of(0) == 0 and self.real.accepted_of(0) == {}


TestAcceptorState = AcceptorStateMachine.TestCase
TestAcceptorState.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


class EngineAcceptorMachine(RuleBasedStateMachine):
    """An engine (node 2 of 1,2,3) as an acceptor, with crashes that keep only persisted records."""

    GROUP = 0

    def __init__(self):
        super().__init__()
        self.config = CoreConfig(node_id=2, members=(1, 2, 3), n_groups=1)
        self.store = {}
        self.engine = Engine(self.config, random.Random(0))
        self.model = ReferenceAcceptor()
        self.vouched_promise = 0       # highest ballot of a reply that left the node
        self.vouched_accepts = {}      # instance -> ballot of a released ACCEPTED

    def _step(self, message):
        self.engine.receive([message])
        fx = self.engine.take_effects()
        # Replies that vouch for state wait for the persist; rejections do not.
        for dest, msg in fx.send_now:
            assert msg.kind in (Kind.REJECT,), "a %s left before its record was durable" % msg.kind
        for dest, msg in fx.send_after:
            assert msg.kind in (Kind.PROMISE, Kind.ACCEPTED)
        for key, value in encode_records(fx.records):
            self.store[key] = value
        self.engine.persisted(fx.token)
        for dest, msg in fx.send_after:
            if msg.kind == Kind.PROMISE:
                self.vouched_promise = max(self.vouched_promise, msg.ballot)
            else:
                self.vouched_accepts[msg.instance] = max(self.vouched_accepts.get(msg.instance, 0), msg.ballot)
        return fx

    @rule(ballot=ballots, first=instances)
    def prepare(self, ballot, first):
        src = ballot & 0xFFFF
        expected = self.model.prepare(ballot)
        fx = self._step(Message(Kind.PREPARE, self.GROUP, first, ballot, 0, 0, 0, b"", src=src))
        replies = fx.send_now + fx.send_after
        assert len(replies) == 1
        kind = replies[0][1].kind
        assert kind == (Kind.REJECT if expected == REJECTED else Kind.PROMISE)
        if expected == PROMISED:
            assert len(fx.records) == 1, "a raised promise is persisted exactly once"
        else:
            assert not fx.records

    @rule(instance=instances, ballot=ballots, value=values)
    def accept(self, instance, ballot, value):
        src = ballot & 0xFFFF
        expected = self.model.accept(instance, ballot, value)
        fx = self._step(Message(Kind.ACCEPT, self.GROUP, instance, ballot, 0, 0, 0, value, src=src))
        replies = fx.send_now + fx.send_after
        assert len(replies) == 1
        assert replies[0][1].kind == (Kind.REJECT if expected == REJECTED else Kind.ACCEPTED)
        assert len(fx.records) == (1 if expected == ACCEPTED else 0)

    @rule()
    def crash_and_recover(self):
        recovery = recover(sorted(self.store.items()))
        self.engine = Engine(self.config, random.Random(1), recovered=recovery.groups)

    @invariant()
    def matches_model_and_never_forgets_what_it_vouched_for(self):
        view = self.engine.group_view(self.GROUP)
        assert view["promised"] == self.model.promised
        assert {i: tuple(bv) for i, bv in view["accepted"].items()} == self.model.accepted
        assert view["promised"] >= self.vouched_promise
        for instance, ballot in self.vouched_accepts.items():
            assert view["accepted"][instance][0] >= ballot


TestEngineAcceptor = EngineAcceptorMachine.TestCase
TestEngineAcceptor.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)

"""The simulator's global view: what is really chosen, and the invariants every run must keep.

The oracle sees every Accept a proposer sends and every vote an acceptor releases (an ACCEPTED reply leaving
the node, or a leader counting its own). A value is chosen at (group, instance) the moment a majority of the
instance's voters have released votes for the same ballot; the value is the one the ballot's proposer sent.

The voters of an instance j (membership, docs/design/membership.md) are the oracle's own: those of the last
ADOPT it saw chosen at an instance <= j - alpha whose epoch is newer than the ones before it (the first
configuration where there is none), computed from its own chosen log, never from a node's view. A vote at j
before every instance up to j - alpha is chosen is a violation (no node may act there yet: rule R2), and so is
an Accept at j under a ballot that a majority of j's voters (the proposer counted as one of them if it is)
never promised: phase 1 must have run under the voters that govern j (rule R4).

Groups are keyed by ``group_key(group, incarnation)``: a group id removed and added again is another group.

Invariants (each violation is recorded with the simulated time):
  * at most one value is chosen per (group, instance), and a chosen value never changes;
  * a proposer never sends two different values under one ballot for one instance;
  * a node learns only the chosen value, in instance order, so learned logs are prefixes of one another;
  * promised and accepted ballots never go backwards across a restart (against the synced records and
    against every reply the node had released);
  * every acknowledged proposal is in the chosen log.
"""
from ..core.voters import BadAdopt, decode_adopt, is_adopt
from ..wire.codec import proposals_of


class Violation(Exception):
    pass


def group_key(group, incarnation):
    """The oracle's name for one incarnation of a group: the id itself for the first one."""
    return group if incarnation == 1 else "%d@%d" % (group, incarnation)


def key_parts(key):
    """(group, incarnation) of an oracle's group name (group_key)."""
    if isinstance(key, int):
        return key, 1
    group, incarnation = key.split("@")
    return int(group), int(incarnation)


class Oracle:
    def __init__(self, n_nodes, alpha=None, voters=None):
        """`alpha` None: no membership (every node votes at every instance, nothing else is checked)."""
        self.majority = n_nodes // 2 + 1
        self.alpha = alpha
        self.first_voters = frozenset(voters or range(1, n_nodes + 1))
        self.adopts = {}          # group -> {instance: (epoch, voters)} of the chosen ADOPT values
        self.firsts = {}          # group -> (epoch, voters) it starts on, when not the first voters (a group
                                  # added at run time: what the operator's add named)
        self.prefix = {}          # group -> every instance below it is chosen (as far as the oracle saw)
        self.promisers = {}       # (group, ballot) -> nodes that sent a PROMISE for it
        self.values = {}          # (group, instance, ballot) -> value sent by the ballot's proposer
        self.votes = {}           # (group, instance, ballot) -> set of acceptor ids
        self.chosen = {}          # (group, instance) -> value
        self.learned = {}         # (node, group) -> [next instance, rolling log fingerprint]
        self.logs = {}            # group -> list of chosen values in order, as learned (for prefix checks)
        self.replied_promise = {}     # (node, group) -> highest ballot the node vouched for in a reply
        self.replied_accept = {}      # (node, group, instance) -> ballot of the node's released vote
        # node -> group incarnations it promised or voted in before it lost its state, until it rebuilt each
        # (the simulator calls rebuilt()): a promise or vote there before that is an acceptor that forgot.
        self.must_rebuild = {}
        self.acked = 0
        self.violations = []
        self.now = 0

    def violate(self, text):
        self.violations.append("t=%dus %s" % (self.now, text))

    # -------------------------------------------------------------- proposer side
    def on_promise_sent(self, node, group, ballot):
        self.promisers.setdefault((group, ballot), set()).add(node)
        self.on_promise_reply(node, group, ballot)

    def on_accept_sent(self, group, instance, ballot, value):
        config = self.config_of(group, instance)
        if config is not None:
            promised = self.promisers.get((group, ballot), set()) | {ballot & 0xFFFF}
            if len(promised & config) < len(config) // 2 + 1:
                self.violate("an Accept for group %s instance %d under ballot %d, which only %s of its voters %s "
                             "promised (phase 1 ran under other voters)"
                             % (group, instance, ballot, sorted(promised & config), sorted(config)))
        key = (group, instance, ballot)
        known = self.values.get(key)
        if known is None:
            self.values[key] = value
        elif known != value:
            self.violate("ballot %d proposed two values for group %s instance %d" % (ballot, group, instance))

    # -------------------------------------------------------------- acceptor side
    def on_vote(self, node, group, instance, ballot):
        """An acceptor released its vote for (instance, ballot)."""
        key = (group, instance, ballot)
        prev = self.replied_accept.get((node, group, instance), 0)
        if ballot > prev:
            self.replied_accept[(node, group, instance)] = ballot
        self.on_promise_reply(node, group, ballot)
        voters = self.votes.get(key)
        if voters is None:
            voters = self.votes[key] = set()
        voters.add(node)
        config = self.config_of(group, instance)
        if config is None:
            self.violate("node %d voted for group %s instance %d before every instance up to %d was chosen "
                         "(its voters are not decided yet)" % (node, group, instance, instance - self.alpha))
            return
        if len(voters & config) >= len(config) // 2 + 1:
            value = self.values.get(key)
            if value is None:
                self.violate("votes for group %s instance %d ballot %d that no proposer sent"
                             % (group, instance, ballot))
                return
            chosen = self.chosen.get((group, instance))
            if chosen is None:
                self.chosen[(group, instance)] = value
                self._chosen_now(group, instance, value)
            elif chosen != value:
                self.violate("TWO VALUES CHOSEN for group %s instance %d (%r then %r at ballot %d)"
                             % (group, instance, chosen[:40], value[:40], ballot))

    def _chosen_now(self, group, instance, value):
        if is_adopt(value):
            try:
                self.adopts.setdefault(group, {})[instance] = decode_adopt(value)
            except BadAdopt:
                pass            # skipped alike by every node
        at = self.prefix.get(group, 0)
        while (group, at) in self.chosen:
            at += 1
        self.prefix[group] = at

    def config_of(self, group, instance):
        """The voters of (group, instance) by the oracle's chosen log, or None while an instance they depend
        on is not chosen yet."""
        if self.alpha is None:
            return self.first_voters
        last = instance - self.alpha
        if last >= self.prefix.get(group, 0):
            return None
        epoch, voters = self.firsts.get(group, (1, self.first_voters))
        for i, (e, v) in sorted(self.adopts.get(group, {}).items()):
            if i > last:
                break
            if e > epoch:
                voters, epoch = frozenset(v), e
        return voters

    def on_added(self, node, group, first):
        """`node` holds `group` (an incarnation's oracle key) from now on, starting on `first` ((epoch, voters);
        None: the first voters). Every node of an incarnation must start it on the same voters."""
        first = (first[0], frozenset(first[1])) if first else (1, self.first_voters)
        known = self.firsts.setdefault(group, first)
        if known != first:
            self.violate("node %d added %s on epoch %d's voters %s, another node on epoch %d's %s"
                         % (node, group, first[0], sorted(first[1]), known[0], sorted(known[1])))

    def on_served(self, node, group, instance, value):
        """A node sent `value` as the chosen value of (group, instance) in a catch-up reply."""
        chosen = self.chosen.get((group, instance))
        if chosen is None:
            self.violate("node %d served group %s instance %d as chosen, but no quorum chose it"
                         % (node, group, instance))
        elif chosen != value:
            self.violate("node %d served a value for group %s instance %d that is not the chosen one (a vote?)"
                         % (node, group, instance))

    def on_promise_reply(self, node, group, ballot):
        if ballot > self.replied_promise.get((node, group), 0):
            self.replied_promise[(node, group)] = ballot

    # -------------------------------------------------------------- learner side
    def on_learn(self, node, group, instance, value):
        state = self.learned.get((node, group))
        if state is None:
            state = self.learned[(node, group)] = [0]
        if instance != state[0]:
            self.violate("node %d learned group %s instance %d out of order (expected %d)"
                         % (node, group, instance, state[0]))
        state[0] = instance + 1
        chosen = self.chosen.get((group, instance))
        if chosen is None:
            self.violate("node %d learned group %s instance %d, which no quorum chose" % (node, group, instance))
        elif chosen != value:
            self.violate("node %d learned a value for group %s instance %d that differs from the chosen one"
                         % (node, group, instance))
        log = self.logs.setdefault(group, [])
        if instance < len(log):
            if log[instance] != value:
                self.violate("learned logs of group %s are not prefixes of one another at instance %d"
                             % (group, instance))
        elif instance == len(log):
            log.append(value)

    def on_handed_over(self, node, group):
        """`node` dropped its copy of `group` (placed on other nodes; Engine.handoff): nothing it promised or
        voted binds it any more. It voted in no configuration at or past its chosen mark, and every instance
        below is chosen (docs/architecture.md, "Handover"): held again, it learns up to that mark before it
        votes, and promises afresh from 0. What it votes for from then on is judged as any vote is (one value
        per instance, votes counted only from the instance's voters)."""
        self.replied_promise.pop((node, group), None)
        for key in [k for k in self.replied_accept if k[0] == node and k[1] == group]:
            del self.replied_accept[key]
        self.learned.pop((node, group), None)

    def on_amnesia(self, node):
        """`node` lost (or may have lost) its synced state and rebuilds. The rebuild rule keeps every promise it
        gave that a quorum counted (docs/architecture.md, "the rebuild rule"): one that no other node backs up
        to a majority may be forgotten. So from here on the node is held to the highest ballot it promised
        that a majority (it and peers whose own promises reached that ballot) backs. And in every group
        incarnation it took part in, it must rebuild before it promises or votes again (check_rebuilt)."""
        self.must_rebuild.setdefault(node, set()).update(
            {g for (n, g) in self.replied_promise if n == node} | {g for (n, g, _) in self.replied_accept if n == node})
        for (n, group), ballot in list(self.replied_promise.items()):
            if n != node:
                continue
            peers = [b for (m, g), b in self.replied_promise.items() if g == group and m != node]
            backed = [x for x in peers + [0, ballot]
                      if x <= ballot and 1 + sum(1 for b in peers if b >= x) >= self.majority]
            self.replied_promise[(n, group)] = max(backed) if backed else 0
        # Its votes: the rebuild learns every instance below the peers' marks and tops before it votes again,
        # so a chosen value it voted for is kept (and "one value per instance" checks that), while a vote that
        # no quorum took may be forgotten (its ballot's Accept stopped counting after vote_ttl_ticks, which the
        # rebuild waits out). A later plain restart is held to the votes it gives from here on.
        for key in [k for k in self.replied_accept if k[0] == node]:
            del self.replied_accept[key]

    def check_rebuilt(self, node, group, what, rebuilt):
        """`node` sends `what` (a promise, a vote) in `group`; `rebuilt`: whether the node's copy of it rebuilt
        since the node last lost its state."""
        if group not in self.must_rebuild.get(node, ()):
            return
        if rebuilt:
            self.must_rebuild[node].discard(group)
        else:
            self.violate("node %d sent %s in group %s, in which it took part before it lost its state, without "
                         "having rebuilt it" % (node, what, group))

    def on_restart_state(self, node, group, promised, accepted, chosen_next):
        """Right after a restart: nothing the node vouched for may be forgotten."""
        replied = self.replied_promise.get((node, group), 0)
        if promised < replied:
            self.violate("node %d group %s: promise went back from %d to %d across a restart"
                         % (node, group, replied, promised))
        for (n, g, instance), ballot in self.replied_accept.items():
            if n != node or g != group or instance < chosen_next:
                continue
            entry = accepted.get(instance)
            if entry is None or entry[0] < ballot:
                self.violate("node %d group %s instance %d: accepted ballot went back from %d to %s across a "
                             "restart" % (node, group, instance, ballot, entry[0] if entry else "nothing"))

    def forget_learned(self, node):
        """A restarted node learns its log again from the start of what it recovered."""
        for key in [k for k in self.learned if k[0] == node]:
            del self.learned[key]

    def set_learned_start(self, node, group, chosen_next):
        self.learned[(node, group)] = [chosen_next]

    def on_install(self, node, group, applied):
        """`node` swapped in a snapshot at `applied`: it learns on from there. A swap only ever moves a node
        forward, and the values it learned right after the swap (in the same cycle) may already be counted."""
        state = self.learned.get((node, group))
        if state is None or state[0] < applied:
            self.learned[(node, group)] = [applied]

    # -------------------------------------------------------------- clients
    def on_ack(self, node, group, instance, payload):
        self.acked += 1
        chosen = self.chosen.get((group, instance))
        if chosen is None:
            self.violate("acknowledged proposal at group %s instance %d, which is not chosen" % (group, instance))
            return
        if not any(entry[2] == payload for entry in proposals_of(chosen)):
            self.violate("acknowledged proposal %r is not in the chosen value of group %s instance %d"
                         % (payload[:40], group, instance))

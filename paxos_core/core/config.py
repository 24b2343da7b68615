"""Configuration of the protocol core: who the members are and the protocol's knobs.

Times are in ticks: logical time, advanced by whoever drives the core (the runtime's clock, or the
simulator). The core never reads a clock.
"""
from dataclasses import dataclass, fields

from ..errors import ConfigError

# Planted bugs, to show that the simulator's checks can fail. Protocol core: ignore-promise, reply-before-sync,
# promise-not-persisted, learn-without-quorum, requeue-reverse (a leader that steps down re-queues its proposals
# in reverse), amnesia-votes (a node that lost synced state votes at once, without rebuilding). Replica layer
# and its loop: lease-overrun, no-fencing, serve-before-write (catch-up read from the log before the cycle's
# records are written), stale-lease-clock (lease decisions use the clock read before the poll), batch-together
# (a batch too big for one entry proposed as all its entries at once, not one after another). Storage:
# wal-rollback (damaged synced data silently recovered point-in-time). Groups: readd-amnesia (a removed group
# re-added with the same incarnation, as an acceptor with no memory), add-after-amnesia-votes (a group added to a
# worker that lost its synced state before votes at once: it may have voted in that incarnation then),
# join-newer-votes (a leftover copy replaced by the newer incarnation its peers hold joins it as a voter at once,
# even on a worker that lost its state), join-intent-lost (the tombstone of such a copy does not name the
# incarnation it makes way for: a crash before the add leaves the node without the group for good). Forwarding: forward-twice (a proposal
# relayed back while mastership moves is held again, so forwards grow with every move). Elections:
# prepare-unpromised (a proposer whose own acceptor refused its ballot campaigns on the peers' promises alone).
# Replica groups: remove-keeps-state (a removed group's state machine data outlives it, into the next incarnation).
# Retention: weigh-short (the cut by weight stops one block of 64 short: logs keep more than retain_bytes).
# Adaptive batching: fill-reverse (the proposals queued during one input are packed at take_effects backwards).
# Elections: reprepare-uncapped (a new leader re-proposes every instance its promises reported at once, past
# its chosen mark + window, where it cannot yet know who votes). Membership: config-at-i (an ADOPT governs from
# the instance after it, not alpha later), count-any-vote (votes and promises count from any node, not only the
# voters of the instance's configuration, and learners answer as voters would, as a removed node that has not
# learned its removal does), no-reprepare-at-activation (a leader goes on past an activation under
# the promises of the old voters), retire-early (the membership driver stops sending to a node the table dropped
# at once, not once every group adopted voters without it: a group it still votes or leads in is cut off),
# snapshot-drops-config (a snapshot carries the first configuration, not the group's), handoff-early (a node
# placed elsewhere drops its copy of a group as soon as it votes in none of its configurations, without waiting
# for a majority of the voters carrying it on to have learned what it had), reenter-without-learning (a node
# placed on a group again votes at once, before it learned the instances it voted in before it handed it over).
# ignore-late-adopt (the membership driver takes no notice of an older epoch's ADOPT chosen after it found
# the group done), renew-non-voter (a master's chosen commands renew its lease in every node's view even where it
# votes no more: simulator seed 897). Replica groups: remove-before-cycle (a removal drops the group from the
# engine before the cycle that carries out its pending effects: votes leave for a group no longer hosted).
# Forwarding: relay-appends (our own proposal relayed back by a former leader is queued after our own later ones;
# soak seed 3,154,073). Mastership: claim-while-rebuilding (a node rebuilding a group may claim and hold its
# mastership: soak seed 4,100,239), redirect-without-catchup (a node that sends a client to a voter does not ask
# whether it is behind: soak seed 4,100,027). Snapshots: stage-silent-source (a staging waits for its source for
# ever, turning down every other peer's offer: simulator seed 1,666). Membership: leave-at-adoption (a removed node
# leaves once its groups adopted voters without it, before those govern: nemesis seed 346). Leases:
# renew-own-non-voter (a master's own command renews its own lease where it votes no more, while the others'
# views of it are not renewed), config-forgets-history (the configuration of a chosen instance is answered with
# the one in force at the node's chosen mark: nodes that learned further than others answer differently; both
# simulator seed 1,686). add-first-voters (a group added at run time starts on the first voters, not on those its
# ADD_GROUP names: once a majority of them left the cluster it can never choose again; soak seed 4,910,844).
# leave-voters-only (a removed node counts a voter's handover reply once that voter's current configuration has
# the table's voters, whatever its epoch: an earlier epoch's with the same voters, while an ADOPT that counts the
# node again may still be chosen; simulator seed 8,002,243).
#: The system group's id (issue 14): the cluster's node table and membership epochs (statemachine/membership.py)
#: are a group like the others, hosted by worker 0 of every node in the slot before its data groups. Data groups
#: never use this id (nor 0xFFFFFFFF).
SYSTEM_GROUP = 0xFFFFFFFE


def shard_of(group, workers):
    """The worker (on every node) that hosts `group`: ``group % workers``, and 0 for the system group. THE
    sharding function: the node's config, the replica loop and the client all route with it."""
    return 0 if group == SYSTEM_GROUP else group % workers

PLANTS = ("ignore-promise", "reply-before-sync", "promise-not-persisted", "learn-without-quorum", "lease-overrun",
          "no-fencing", "serve-before-write", "stale-lease-clock", "wal-rollback", "requeue-reverse",
          "readd-amnesia", "amnesia-votes", "batch-together", "forward-twice", "truncate-too-far",
          "install-non-atomic", "prepare-unpromised",
          "remove-keeps-state", "weigh-short", "fill-reverse", "reprepare-uncapped",
          "config-at-i", "count-any-vote", "no-reprepare-at-activation", "retire-early",
          "snapshot-drops-config", "handoff-early", "reenter-without-learning", "ignore-late-adopt",
          "renew-non-voter", "remove-before-cycle", "relay-appends", "claim-while-rebuilding",
          "redirect-without-catchup", "stage-silent-source", "leave-at-adoption", "renew-own-non-voter",
          "config-forgets-history", "leave-unhanded", "catchup-any-peer", "catchup-source-only",
          "stale-preference", "same-voters-idle", "add-first-voters", "add-after-amnesia-votes",
          "join-newer-votes", "join-intent-lost", "status-omits-added-groups", "leave-voters-only")


@dataclass(frozen=True)
class CoreConfig:
    node_id: int
    members: tuple                      # node ids of every voting member, this node included
    n_groups: int = 1                   # how many groups this core hosts
    group_offset: int = 0               # hosted group ids are offset + k * stride, k = 0 .. n_groups-1
    group_stride: int = 1
    window: int = 8                     # instances in flight per group (1 = strict PhxPaxos behaviour)
    max_batch_count: int = 4096         # proposals packed into one instance at most
    max_batch_bytes: int = 1 << 20      # bytes of proposals packed into one instance at most
    max_value_bytes: int = 1 << 20      # one proposal's payload at most
    retransmit_ticks: int = 4           # resend an unanswered Accept/Prepare after this long
    max_retransmits: int = 4            # then give up the ballot and prepare a new one
    retransmit_backoff: bool = True     # an Accept's k-th resend waits retransmit_ticks x 2^k (a loaded peer is
                                        # not flooded with copies of what it has queued)
    election_backoff_ticks: tuple = (2, 12)   # random wait before retrying a lost election
    leader_timeout_ticks: int = 20      # a leader not heard from for this long is presumed gone
    forward_timeout_ticks: int = 12     # forwarded proposals not chosen by then are proposed here
    idle_chosen_ticks: int = 3          # a leader idle this long tells learners its chosen mark (a busy one
                                        # carries it on its next Accept instead)
    catchup_interval_ticks: int = 3     # at most one catch-up request per group per interval
    catchup_max_instances: int = 256    # instances per catch-up reply at most
    proposal_timeout_ticks: int = 200   # a proposal not chosen by then is reported expired (unknown outcome)
    sticky_ticks: int = 0               # an acceptor that took an Accept from its leader refuses other nodes'
                                        # Prepares for this long (0: never). Set to the master lease: while
                                        # the master leads, nobody else can get a value chosen behind its back
    vote_ttl_ticks: int = 0             # promises and votes count only this long after the Prepare/Accept was
                                        # first sent (0: 4 x (max_retransmits + 1) x retransmit_ticks)
    repair_wait_ticks: int = 0          # a rebuilding node waits this long before it asks its peers
                                        # (0: 2 x vote_ttl_ticks; must exceed vote_ttl under clock drift)
    peer_lag_instances: int = 0         # peers' floor: the leader tells every node the lowest chosen mark of the
                                        # live peers at most this far behind, and retention keeps logs above it,
                                        # so such a peer catches up from the log, not by snapshot (0: off)
    peer_live_ticks: int = 0            # ... a peer counts if heard within this long (0: 5 x leader_timeout_ticks)
    fill_at_take: bool = True           # a leader packs the proposals of one batch of input (all propose()
                                        # calls before take_effects) into instances when the effects are taken,
                                        # not one instance per call while the window has room
    alpha: int = 0                      # a configuration adopted at instance i governs from i + alpha on; the
                                        # same on every node, at least the window (0: the window)
    voters: tuple = ()                  # the groups' first configuration (epoch 1): its voters, a subset of
                                        # members (empty: every member)
    system_group: bool = False          # this core also hosts the system group (SYSTEM_GROUP), in slot 0; the
                                        # data groups then take slots 1 .. n_groups
    plant: str = ""                     # planted bug for testing the tests (never in production)

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError("core config field %r: %s" % (name, why))

        members = tuple(int(m) for m in self.members)
        object.__setattr__(self, "members", members)
        if not members:
            bad("members", "at least one member is required")
        if len(set(members)) != len(members):
            bad("members", "node ids must be distinct, got %r" % (members,))
        for m in members:
            if not 1 <= m <= 0xFFFE:
                bad("members", "node id %d out of range 1..65534" % m)
        if len(members) > 63:
            bad("members", "at most 63 voting members")
        if self.node_id not in members:
            bad("node_id", "%d is not one of members %r" % (self.node_id, members))
        ints = all(isinstance(getattr(self, n), int) and not isinstance(getattr(self, n), bool)
                   for n in ("max_retransmits", "retransmit_ticks", "vote_ttl_ticks", "repair_wait_ticks"))
        if ints and not self.vote_ttl_ticks:
            object.__setattr__(self, "vote_ttl_ticks", 4 * (self.max_retransmits + 1) * self.retransmit_ticks)
        if not self.peer_live_ticks and isinstance(self.leader_timeout_ticks, int):
            object.__setattr__(self, "peer_live_ticks", 5 * self.leader_timeout_ticks)
        if ints and not self.repair_wait_ticks:
            object.__setattr__(self, "repair_wait_ticks", 2 * self.vote_ttl_ticks)
        if self.sticky_ticks < 0:
            bad("sticky_ticks", "must be >= 0, got %r" % (self.sticky_ticks,))
        positive = ("n_groups", "group_stride", "window", "max_batch_count", "max_batch_bytes",
                    "max_value_bytes", "retransmit_ticks", "max_retransmits", "leader_timeout_ticks",
                    "forward_timeout_ticks", "idle_chosen_ticks", "catchup_interval_ticks",
                    "catchup_max_instances", "proposal_timeout_ticks", "vote_ttl_ticks", "repair_wait_ticks",
                    "peer_live_ticks")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(name, "must be a positive integer, got %r" % (value,))
        if not isinstance(self.peer_lag_instances, int) or isinstance(self.peer_lag_instances, bool) \
                or self.peer_lag_instances < 0:
            bad("peer_lag_instances", "must be an integer >= 0, got %r" % (self.peer_lag_instances,))
        if self.group_offset < 0 or self.group_offset >= self.group_stride:
            bad("group_offset", "must be in 0..group_stride-1, got %r" % (self.group_offset,))
        lo_hi = tuple(self.election_backoff_ticks)
        if len(lo_hi) != 2 or not 0 <= lo_hi[0] <= lo_hi[1]:
            bad("election_backoff_ticks", "must be (low, high) with 0 <= low <= high, got %r" % (lo_hi,))
        object.__setattr__(self, "election_backoff_ticks", lo_hi)
        if self.catchup_max_instances < 64:
            bad("catchup_max_instances", "must be at least 64 (a reply ends at a chain record), got %r"
                % (self.catchup_max_instances,))
        if self.repair_wait_ticks <= self.vote_ttl_ticks:
            bad("repair_wait_ticks", "must exceed vote_ttl_ticks (%d), got %r"
                % (self.vote_ttl_ticks, self.repair_wait_ticks))
        if not isinstance(self.alpha, int) or isinstance(self.alpha, bool) or self.alpha < 0:
            bad("alpha", "must be an integer >= 0, got %r" % (self.alpha,))
        if not self.alpha:
            object.__setattr__(self, "alpha", self.window)
        if self.alpha < self.window:
            bad("alpha", "%d is less than the window (%d): a leader must never run further ahead than alpha"
                % (self.alpha, self.window))
        voters = tuple(int(v) for v in self.voters) or members
        if len(set(voters)) != len(voters) or not set(voters) <= set(members) or not 1 <= len(voters) <= 7:
            bad("voters", "1 to 7 distinct ids among members %r, got %r" % (members, self.voters))
        object.__setattr__(self, "voters", tuple(sorted(voters)))
        if self.plant and self.plant not in PLANTS:
            bad("plant", "unknown plant %r; known: %s" % (self.plant, ", ".join(PLANTS)))

    @property
    def quorum(self):
        return len(self.members) // 2 + 1

    def replace(self, **changes):
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return CoreConfig(**values)

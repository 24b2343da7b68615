"""What a worker does about membership on its own (issue 14, step 4; docs/design/membership.md), sans-I/O.

Step 4 so far: the system group (core/config.py's SYSTEM_GROUP) is hosted by worker 0 of every node, and
its table starts empty. Worker 0 of every node proposes the seed (epoch 1: the node file's members, all
voters, and the cluster's alpha) until the applied table is seeded. Seeding is idempotent (a seeded table
takes a later seed as a no-op), so every node may propose it, at any time, as often as it likes: the first
one chosen makes epoch 1, and a node whose file lists other members than the table does not change it
(``status`` reports the mismatch).

The seed goes through the loop like a client's proposal, without a session (client id 0) and without a
client to answer (the identity ``INTERNAL``, whose replies the loop drops): it waits for the system group's
master, is redirected when another node is master (that node proposes its own), and is proposed again when
it times out. Nothing here reads a clock: ``on_tick`` gets the loop's tick counter.
"""
from __future__ import annotations

import collections
import itertools
import json
import logging

from ..core.config import SYSTEM_GROUP
from ..statemachine.membership import encode_change
from ..statemachine.user import decode_user_result

log = logging.getLogger("paxos_core.membership")

INTERNAL = None              # the identity of requests the loop makes itself: their replies go nowhere
STALLED_AFTER = 4            # a group asked again this often (after 1 + 2 + 4 + 8 retry periods) leaves the window


def seed_command(config, public_keys=None) -> bytes:
    """The seed of a node file's cluster: every member (its address, and its CURVE public key as text, "-"
    without keys), all voters, and cluster.alpha. `public_keys`: node id -> z85 bytes (None: no keys)."""
    nodes = []
    for n in config.nodes:
        key = public_keys.get(n.id) if public_keys else None
        nodes.append({"id": n.id, "host": n.host, "peer_port": n.peer_port, "client_port": n.client_port,
                      "public_key": key.decode("ascii") if key else "-"})
    return encode_change("seed", alpha=config.alpha, nodes=nodes)


class MembershipDriver:
    """One per worker: seeds the system group's table (on the worker hosting it), and makes every group of
    the worker adopt the voters of the table's newest epoch (see the module docstring)."""

    def __init__(self, seed: bytes = b"", retry_ticks: int = 100, adopt_per_turn: int = 256, plant: str = "",
                 leave_after_ticks: int = 1000, refresh_ticks: int = 256, sweep_ticks: int = 1000,
                 catch_up_ticks: int = 3000, max_adopting: int = 128):
        self.seed = seed
        self.plant_retire_early = plant == "retire-early"
        self.plant_leave_unhanded = plant == "leave-unhanded"
        self.plant_ignore_late_adopt = plant == "ignore-late-adopt"
        self.plant_leave_at_adoption = plant == "leave-at-adoption"
        self.plant_same_voters_idle = plant == "same-voters-idle"
        self.plant_leave_voters_only = plant == "leave-voters-only"
        self.retry_ticks = retry_ticks
        self.adopt_per_turn = adopt_per_turn
        # At most this many groups adopting at once (asked, not done): each one asked costs an election when
        # idle, an ADOPT and alpha instances, and asking every group of a worker at once (50,000 at 100,000
        # groups) flooded the nodes with elections whose round trips outlived their timers: nothing was chosen
        # any more (bench member, 100,000 groups). The next groups are asked as these finish. 128: at 100,000
        # groups, 2,048 took 129-163 s with the load at a tenth, 512 about 70 s at a fifth, 128 77-97 s at two
        # fifths (docs/BENCHMARKS.md).
        self.max_adopting = max_adopting
        self.seeded = not seed            # nothing to seed: done
        self.next_try = 0                 # tick at which the seed is proposed (again)
        self.proposed = 0                 # how many times it was
        self.system_applied = -1          # the system group's applied mark when the table was last read
        self.epoch = 0                    # the newest table epoch this worker knows
        self.table = {"epoch": 0}         # ... that table
        self.voters = ()                  # ... its voters, which every group is to adopt
        self.placements = {}              # ... but these groups: their own voters (group -> voters)
        self.members = ()                 # the nodes messages go to (Engine.set_members)
        self.wanted_members = ()          # ... the table's voters and learners, which they become once every
                                          # group here adopted the table's voters
        self.todo = collections.deque()   # groups to look at for adoption (every hosted group, at a new epoch)
        self.behind = {}                  # group -> tick it was last asked to adopt, until its voters are the table's
        self.asked_again = {}             # group -> how many times it was asked again (it waits longer each time)
        self.stalled = set()              # groups asked again STALLED_AFTER times: they hold no place in the window
        self.adopts = 0                   # Engine.adopt calls made
        self.removed_epoch = None         # the table's epoch that removed this node
        self.removed_at = 0               # ... the tick it learned so
        self.left = False                 # ... and every group here goes on without it (the node may stop)
        self.leave_after_ticks = leave_after_ticks
        self.refresh_ticks = refresh_ticks
        # Ticks may advance by several at once (a long poll, a pause): periodic work runs when its time passed.
        self.next_refresh = refresh_ticks
        self.refresh_again = 0            # the tick of a refresh's second request (0: none due)
        self.refresh_from = 0             # the system group's chosen mark when the refresh asked
        self.stuck_before = False         # the system group had an accepted instance above its chosen mark
        self.next_stuck_check = 0
        self.sweep_ticks = sweep_ticks
        self.sweep = collections.deque()  # groups of the periodic sweep still to look at
        self.next_sweep = sweep_ticks
        self.next_leave_check = 0
        self.leaving = None               # groups not handed over yet, once this node is removed (see _leave)
        self.table_at = 0                 # the tick this node learned the newest table (see _retire)
        self.next_behind_check = 0
        self.pokes = 0                    # catch-up requests for groups still on older voters here
        self.catch_up = collections.deque()   # groups still to ask a peer about once in this pass
        self.catch_up_passes = 0
        self.catch_up_ticks = catch_up_ticks
        self.next_catch_up = 0            # the first pass: at the first tick
        self.nudges = 0                   # barriers proposed to get an idle group a leader that proposes its ADOPT
        self.handing = {}                 # group -> tick: groups placed on other nodes, being handed over
        self.next_handover = 0
        self.handed_over = 0              # groups this worker stopped holding (ReplicaLoop.vacate_groups)
        self.reentered = 0                # groups it holds again, placed here again (ReplicaLoop.reenter_group)

    # ------------------------------------------------------------------ inputs
    def on_tick(self, loop, now: int) -> None:
        """Called by the loop when its tick advanced."""
        engine = loop.engine
        if now >= self.next_catch_up:
            self.next_catch_up = now + self.catch_up_ticks
            self.catch_up_all(engine)
        if self.catch_up:
            self._catch_up(engine)
        if engine.hosts(SYSTEM_GROUP):
            if now >= self.next_refresh:
                self.next_refresh = now + self.refresh_ticks
                # The system group is idle between changes, and a node that missed the last chosen mark of a
                # change (a lost notice) would keep an old table until the next one: ask a peer now and then.
                self.refresh_from = engine.learned(SYSTEM_GROUP)[0]
                self.refresh_again = now + self.refresh_ticks // 8
                engine.poke(SYSTEM_GROUP)
            elif self.refresh_again and now >= self.refresh_again:
                self.refresh_again = 0
                if engine.learned(SYSTEM_GROUP)[0] == self.refresh_from:
                    # Nothing came of it: the peer asked may be gone (left, or down) while it still counts as
                    # heard from lately. Ask once more: the engine asks another peer than the one that brought
                    # nothing (soak seed 7,000,027: a voter cut off while a swap was chosen, the leader that
                    # announced it gone, drew the node that had left at its one refresh after the heal).
                    engine.poke(SYSTEM_GROUP)
            if now >= self.next_stuck_check:
                self.next_stuck_check = now + self.refresh_ticks // 4
                # An instance this node accepted may be chosen without any voter knowing (its leader crashed
                # after the votes): in an idle group nobody runs phase 1 again to find out. Seen twice in a row
                # with no leader at work, a barrier gets the group one, and the instance is learned.
                view = engine.group_view(SYSTEM_GROUP)
                stuck = view["top"] > view["chosen_next"] and not view["active"]
                if stuck and self.stuck_before:
                    self.nudges += 1
                    loop.nudge(SYSTEM_GROUP)
                self.stuck_before = stuck
            applied = loop.sm.applied_next(SYSTEM_GROUP)
            if applied != self.system_applied:
                self.system_applied = applied
                self.on_table(loop, loop.sm.membership_table())
            if not self.seeded:
                self._seed(loop, now)
        if not self.todo and not self.sweep and self.voters and now >= self.next_sweep:
            # Now and then every group is looked at again (not counted as still to adopt): a change asked under
            # an older table may have been chosen after the group was found done (simulator seed 154).
            self.next_sweep = now + self.sweep_ticks
            self.sweep = collections.deque(engine.groups())
            self._reenter(loop)
        if self.todo or self.behind or self.sweep:
            self._adopt(loop, now)
        if self.handing and now >= self.next_handover:
            self.next_handover = now + 8
            self._hand_over(loop)
        self._retire(loop)
        if self.removed_epoch is not None and not self.left and now >= self.next_leave_check:
            self.next_leave_check = now + 16
            self._leave(loop, now)

    def catch_up_all(self, engine) -> None:
        """Ask a peer once about every group here, adopt_per_turn a turn: at start, after the worker stood still
        (the loop calls it), and every catch_up_ticks (30 s). The last value chosen in an idle group while this
        node was down, paused or cut off reaches it no other way: nobody sends in that group again until it is
        used (nemesis seed 2: a node restarted just after an ADOPT's activation stayed one instance behind;
        seed 314: a node cut off while an idle group's last two instances were chosen). The cost: one small
        request per group and pass (100,000 groups on a worker: about 3,300 a second)."""
        if len(engine.members) < 2:
            self.catch_up = collections.deque()        # nobody to ask
            return
        self.catch_up = collections.deque(engine.groups())
        self.catch_up_passes += 1

    def _catch_up(self, engine):
        todo = self.catch_up
        for _ in range(min(self.adopt_per_turn, len(todo))):
            group = todo.popleft()
            if engine.behind(group) >= 0:      # hosted and voting: a rebuilding group has a way of its own
                engine.poke(group)

    def _leave(self, loop, now):
        """This node was removed: it has left once it has handed every group here over, or leave_after_ticks
        after it learned of its removal (the other nodes stop sending to it once their groups have the voters
        without it in force: it may never hear the last of them).

        Handed over (Engine.handoff, as a node does with a group placed elsewhere): no configuration it knows
        of the group counts it, current or pending, and a majority of the voters that carry the group on told
        it they have learned every instance it had learned. Voters without it merely adopted govern only
        alpha instances later, and until then its vote may be needed (nemesis seed 346: node 4 left as soon as
        the system group adopted the table that removed it, the system group's master was killed, and the two
        voters left of four could not choose the instances before the activation for three minutes). Nor is
        its own view enough once those govern there: it may have learned instances that the others have not,
        chosen with its vote and that of a voter that has since lost its memory (soak seed 4,514,976: node 1
        left knowing group 0 up to 18, the others up to 14; the voters of 14-17 were 1, 2 and 5, node 5 was
        rebuilding and needed node 1 to finish, and the group stood still for good)."""
        engine = loop.engine
        if self.plant_leave_at_adoption:
            done = lambda g: loop.node_id not in engine.latest_config(g)[1]     # noqa: E731 (planted bug)
        elif self.plant_leave_unhanded:
            done = lambda g: not engine.votes_anywhere(g, loop.node_id)        # noqa: E731 (planted bug)
        else:
            # The voters carrying a group on must be in a configuration at least as new as the last epoch this
            # node voted in: the table may have come back to an earlier epoch's voters (A, B, A), and an ADOPT
            # of B's epoch that counts this node may still be chosen where the group is in A's configuration
            # (simulator seed 8,002,243); from the epoch on, rule R5 voids it.
            floor = 0 if self.plant_leave_voters_only else self.voter_until(loop.node_id)
            done = lambda g: engine.handoff(g, self.voters_for(g), floor)     # noqa: E731
        if self.leaving is None:
            self.leaving = collections.deque(engine.groups())
        # Up to adopt_per_turn groups a check, in turn (each handoff asks the voters again while it waits).
        for _ in range(min(self.adopt_per_turn, len(self.leaving))):
            group = self.leaving.popleft()
            if engine.hosts(group) and not done(group):
                self.leaving.append(group)
        if now - self.removed_at >= self.leave_after_ticks or not self.leaving:
            self.left = True

    def on_table(self, loop, table: dict) -> None:
        """The system group's table as applied on this node (the worker hosting it reads its own state; the
        others get it from that worker). Only a newer epoch changes anything."""
        epoch = table["epoch"]
        if epoch <= self.epoch:
            return
        if epoch >= 1:
            self.seeded = True
        self.epoch = epoch
        self.table = table
        self.table_at = loop.ticks
        if self.removed_epoch is None and any(n["id"] == loop.node_id and n["role"] == "removed"
                                               for n in table.get("nodes", ())):
            self.removed_epoch = epoch          # this node is removed: it leaves (see _leave)
            self.removed_at = loop.ticks
        self.wanted_members = tuple(sorted(set(table["voters"]) | set(table["learners"])))
        voters = tuple(sorted(table["voters"]))
        placements = {int(g): tuple(v) for g, v in table.get("placements", {}).items()}
        # Every group is looked at again at each newer epoch, even one whose voters are those of the table this
        # node knew before: it may have missed the epochs between, and its groups may be on their voters
        # (simulator seed 1,636: node 3, down during epoch 2, went from epoch 1 to 3, both voters 3, 4, 5, and
        # found nothing to do; the epoch-2 ADOPT it chose as leader, in the same turn, came before it knew epoch
        # 3, and the group stayed on epoch 2's voters with its master never asking it to adopt).
        if not self.plant_same_voters_idle or voters != self.voters or placements != self.placements:
            self.voters = voters
            self.placements = placements
            self.todo = collections.deque(loop.engine.groups())
            self.behind.clear()
            self.asked_again.clear()
            self.stalled.clear()
        self._reenter(loop)
        # Messages go to the table's nodes at once, and still to a node it dropped until every group here has
        # adopted the voters that leave it out: until then it may vote (or lead) in some group, and it learns
        # of its removal like every node, through the system group.
        current = self.members or loop.engine.members      # at start: the node file's members
        if self.plant_retire_early:
            current = ()          # planted bug: a dropped node gets no more messages at once
        self._set_members(loop, tuple(sorted(set(current) | set(self.wanted_members))))
        self._retire(loop)

    def _set_members(self, loop, members):
        if loop.node_id in members and members != self.members:
            loop.engine.set_members(members)
        self.members = members

    def _retire(self, loop):
        """Every group here has the table's voters in force, and leave_after_ticks have passed since this node
        learned the table: the nodes it dropped get no more messages. Until then a removed node may still be
        handing its groups over (see _leave: it waits for the voters carrying them on to say they learned all
        it had, and they can say so only while they talk to it), and it leaves anyway after that long."""
        if (not self.todo and not self.behind and self.members != self.wanted_members
                and loop.ticks - self.table_at >= self.leave_after_ticks):
            self._set_members(loop, self.wanted_members)

    def group_added(self, group) -> None:
        """A group added at run time starts in the configuration its ADD_GROUP named (the same on every node:
        the voters the newest table the client read places it on, or the first configuration): it adopts the
        table's voters like every other group if they are not those. On a node being removed, it is handed
        over like the groups it held when it learned so (see _leave)."""
        if self.voters:
            self.todo.append(group)
        if self.leaving is not None:
            self.leaving.append(group)

    # ------------------------------------------------------------------ seeding
    def _seed(self, loop, now):
        if now < self.next_try:
            return
        # Not seeded yet: propose the seed, and again after retry_ticks (a request that timed out, or was
        # redirected to a master that has not proposed one yet, is simply made again). The seed may be chosen
        # already without this node having heard (the group went idle after it): ask a peer for what we miss.
        self.next_try = now + self.retry_ticks
        self.proposed += 1
        loop.engine.poke(SYSTEM_GROUP)
        loop.propose_internal(SYSTEM_GROUP, self.seed, self.retry_ticks)

    # ------------------------------------------------------------------ adoption
    def _adopt(self, loop, now):
        """Ask up to adopt_per_turn groups to adopt the table's voters (Engine.adopt: the group's leader
        proposes it; idempotent), and look again at the groups asked before until their voters are the table's."""
        engine = loop.engine
        epoch = self.epoch
        budget = self.adopt_per_turn
        todo = self.todo if self.todo else self.sweep
        while todo and budget > 0 and len(self.behind) - len(self.stalled) < self.max_adopting:
            group = todo.popleft()
            budget -= 1
            if not engine.hosts(group):
                continue
            if self.placed_elsewhere(loop.node_id, group):
                self.handing.setdefault(group, now)
            latest_epoch, latest_voters = engine.latest_config(group)
            if latest_voters == self.voters_for(group) and latest_epoch < epoch:
                engine.withdraw_adopt(group)      # an older epoch's change asked here must not come after
            if latest_voters == self.voters_for(group) or latest_epoch >= epoch:
                # Adopted (or a newer change is under way there), but maybe not in force yet: until its
                # activation, the voters it leaves still vote, so it is watched like the groups asked (the
                # nodes dropped keep getting messages until then; a restarted driver found this, simulator
                # seed 20,161).
                config = engine.config_of(group, engine.learned(group)[0])
                if config.voters != self.voters_for(group) and config.epoch <= epoch:
                    self.behind.setdefault(group, now)
                continue
            self._ask(loop, group, now)
        if budget > 0 and self.behind and now >= self.next_behind_check:
            self.next_behind_check = now + 8
            # Groups asked before: done when their current configuration is the table's; asked again (and an
            # idle one nudged) every retry_ticks otherwise. Looked at in turn: one not done goes to the back.
            for group, asked in list(itertools.islice(self.behind.items(), budget)):
                if not engine.hosts(group):
                    self._done(group)
                    continue
                config = engine.config_of(group, engine.learned(group)[0])
                want = self.voters_for(group)
                latest_epoch, latest_voters = engine.latest_config(group)
                # Done once the voters in force are the table's and no older epoch's other voters are pending
                # (an ADOPT chosen after the table moved on: see adopt_chosen).
                if (config.voters == want and (latest_voters == want or latest_epoch >= epoch)) \
                        or config.epoch > epoch:
                    self._done(group)
                else:
                    del self.behind[group]
                    self.behind[group] = asked
                    # Asked again after retry_ticks, then twice, four, eight times as long: a group slow to adopt
                    # on a loaded node is not sent an election per retry period (each one preempting the last).
                    again = self.asked_again.get(group, 0)
                    if now - asked >= self.retry_ticks << min(again, 3):
                        self.asked_again[group] = again + 1
                        if again + 1 >= STALLED_AFTER:
                            # Not done after about 15 s of asking (no quorum of its voters answers, or it is
                            # stopped): still asked, but it no longer keeps another group from its turn.
                            self.stalled.add(group)
                        self._ask(loop, group, now)
        self._retire(loop)

    def _done(self, group):
        """`group` is no longer watched (adopted, gone, or it cannot adopt)."""
        self.behind.pop(group, None)
        self.asked_again.pop(group, None)
        self.stalled.discard(group)

    def adopt_chosen(self, loop, group) -> None:
        """An ADOPT of `group` was chosen (the loop sees every one). If it names voters the table does not want
        and an epoch older than the table's, the group is looked at again: an older epoch's ADOPT proposed
        before the table moved on (in flight when the driver withdrew it, or re-proposed by a new leader from
        a minority's vote) may be chosen after the driver found the group done (simulator seed 2092: 116
        groups back on a removed node's voters, with nothing left to ask them to adopt the newer epoch)."""
        if not self.voters or not loop.engine.hosts(group) or self.plant_ignore_late_adopt:
            return                    # (planted bug: a late ADOPT waits for the next sweep of every group)
        latest_epoch, latest_voters = loop.engine.latest_config(group)
        if latest_epoch < self.epoch and latest_voters != self.voters_for(group):
            self.todo.append(group)

    def voter_until(self, node_id):
        """The last epoch of the table in which `node_id` was a voter, once it is one no more (0: not known)."""
        for node in self.table.get("nodes", ()):
            if node["id"] == node_id:
                return int(node.get("voter_until", 0))
        return 0

    def voters_for(self, group):
        """The voters the table wants `group` to have: its placement's, else the cluster's."""
        return self.placements.get(group, self.voters)

    # ------------------------------------------------------------------ where groups are held
    def placed_elsewhere(self, node_id, group) -> bool:
        """The table places `group` on other nodes: this one is neither among the voters it wants the group to
        have nor one of the cluster's learners (which hold every group until promoted). Never the system
        group, never before the table is known, never on a node being removed (it leaves as a whole)."""
        if group == SYSTEM_GROUP or self.epoch < 1 or self.removed_epoch is not None or not self.voters:
            return False
        return node_id not in self.voters_for(group) and node_id not in self.table.get("learners", ())

    def _hand_over(self, loop):
        """Groups placed elsewhere: each is dropped here once Engine.handoff says a majority of the voters
        carrying it on learned all this node had (and this node votes in none of its configurations); up to
        adopt_per_turn a turn, in one ReplicaLoop.vacate_groups."""
        engine = loop.engine
        ready = []
        for group in list(self.handing)[:self.adopt_per_turn]:
            if not engine.hosts(group) or not self.placed_elsewhere(loop.node_id, group):
                del self.handing[group]
            elif engine.handoff(group, self.voters_for(group)):
                del self.handing[group]
                ready.append(group)
            else:
                # Polled in turn: one still waiting goes to the back.
                self.handing[group] = self.handing.pop(group)
        if ready:
            self.handed_over += len(ready)
            loop.vacate_groups(ready)

    def _reenter(self, loop):
        """Groups this node handed over that the table places here again: held again, rebuilt first."""
        for group in [g for g in loop.vacated if not self.placed_elsewhere(loop.node_id, g)]:
            if self.epoch < 1 or self.removed_epoch is not None:
                return
            self.reentered += 1
            loop.reenter_group(group)
            self.todo.append(group)

    def _ask(self, loop, group, now):
        engine = loop.engine
        try:
            engine.adopt(group, self.epoch, self.voters_for(group))
        except ValueError as exc:             # BadAdopt: a table this build cannot follow; never stop the worker
            log.error("membership: group %d cannot adopt epoch %d's voters %s: %s", group, self.epoch,
                      self.voters_for(group), exc)
            self._done(group)
            return
        self.adopts += 1
        self.behind[group] = now
        # An idle group has no leader to propose the ADOPT: the node that should drive it proposes a barrier,
        # which gets it one. That node is the group's master if there is one, else one of its current voters,
        # another one each time the group is asked again (one of them is up).
        slot = loop.slot_of(group)
        master = loop.masters.known_master(slot, loop.ticks)
        if master and not engine.votes_in(group, master):
            master = 0                          # it cannot lead there any more: the voters take turns
        ballot, leading = engine.ballot_of(group)
        if leading:
            return
        if master:
            driver = master
        else:
            # The same one on every node (no duel), spread over the voters by group (the groups asked at once
            # do not all elect one node), another one each time the group is asked again.
            current = engine.config_of(group, engine.learned(group)[0]).voters
            driver = current[(group + self.asked_again.get(group, 0)) % len(current)] if current else 0
        if driver == loop.node_id:
            self.nudges += 1
            loop.nudge(group)
        else:
            # The ADOPT may be chosen already, and this node not told: a learner that joined an idle group whose
            # master is gone hears from nobody (nemesis seed 1: a replacement's idle groups stayed at 0).
            self.pokes += 1
            engine.poke(group)

    # ------------------------------------------------------------------ status
    def status(self, loop) -> dict:
        """What this worker knows of the table and how far its groups are in adopting it."""
        out = {"epoch": self.epoch, "voters": list(self.voters), "members": list(self.members),
               "groups_to_check": len(self.todo), "groups_adopting": len(self.behind),
               "groups_stalled": len(self.stalled), "adopts": self.adopts,
               "nudges": self.nudges, "pokes": self.pokes, "catch_up_passes": self.catch_up_passes,
               "handing_over": len(self.handing), "handed_over": self.handed_over, "reentered": self.reentered,
               "groups_vacated": len(loop.vacated)}
        if loop.engine.hosts(SYSTEM_GROUP):
            table = loop.sm.membership_table()
            out.update(table_epoch=table["epoch"], learners=table["learners"], seed_proposed=self.proposed)
        return out


def table_of(read_result: bytes) -> dict:
    """The table from the reply to a read of the system group (query b"table")."""
    return json.loads(decode_user_result(read_result))

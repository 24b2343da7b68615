"""The membership driver's bookkeeping (replica/membership_driver.py), against a stand-in engine and loop.

The driver is sans-I/O: it reads the engine's view of each group and calls Engine.adopt. These tests hold the
engine's answers still and watch what the driver asks, where the simulator only sees the end result.
"""
import pytest

from paxos_core.replica.membership_driver import MembershipDriver

GROUP = 7


class StandInEngine:
    """Only what the driver reads: one data group, its configurations, and the calls it gets."""

    def __init__(self, current, latest=None):
        self.members = (1, 2, 3, 4, 5)
        self.current = current                 # (epoch, voters) in force
        self.latest = latest or current        # (epoch, voters) newest, pending or current
        self.adopts = []                       # (group, epoch, voters) asked
        self.withdrawn = []
        self.pokes = []
        self.carried_on = True                 # a majority of the voters carrying a group on learned all we had
        self.handoffs_asked = []               # (group, placement) of each Engine.handoff call
        self.min_epochs = []                   # the min_epoch of each Engine.handoff call

    def hosts(self, group):
        return group == GROUP

    def groups(self):
        return [GROUP]

    def latest_config(self, group):
        return self.latest

    def config_of(self, group, instance):
        epoch, voters = self.current

        class Config:
            pass
        config = Config()
        config.epoch, config.voters = epoch, voters
        return config

    def learned(self, group):
        return (10, 0)

    def adopt(self, group, epoch, voters):
        self.adopts.append((group, epoch, tuple(voters)))

    def withdraw_adopt(self, group):
        self.withdrawn.append(group)

    def behind(self, group):
        return 0

    def poke(self, group):
        self.pokes.append(group)

    def votes_in(self, group, node):
        return node in self.current[1]

    def votes_anywhere(self, group, node):
        return node in self.current[1] or node in self.latest[1]

    def handoff(self, group, placement=None, min_epoch=0):
        """Engine.handoff as the driver sees it (node 1's view): True once node 1 votes in no configuration of
        the group, the voters carrying it on told it they learned all it had (`carried_on`), and their current
        configuration is of `min_epoch` or newer."""
        self.handoffs_asked.append((group, tuple(placement or ())))
        self.min_epochs.append(min_epoch)
        return not self.votes_anywhere(group, 1) and self.carried_on and self.current[0] >= min_epoch

    def ballot_of(self, group):
        return 0, False

    def set_members(self, members):
        self.members = members


class StandInLoop:
    def __init__(self, engine):
        self.node_id = 1
        self.engine = engine
        self.ticks = 0
        self.vacated = set()
        self.nudged = []

        class Masters:
            def known_master(self, slot, now):
                return 0
        self.masters = Masters()

    def slot_of(self, group):
        return 0

    def nudge(self, group):
        self.nudged.append(group)


def table(epoch, voters, removed=(), voter_until=None):
    nodes = [{"id": n, "role": "voter"} for n in voters] + [{"id": n, "role": "removed"} for n in removed]
    if voter_until is not None:
        for node in nodes:
            if node["role"] == "removed":
                node["voter_until"] = voter_until
    return {"epoch": epoch, "voters": list(voters), "learners": [], "nodes": nodes}


def run(driver, loop, ticks):
    for _ in range(ticks):
        loop.ticks += 1
        driver.on_tick(loop, loop.ticks)


@pytest.mark.parametrize("plant", ["", "ignore-late-adopt"])
def test_an_older_epochs_adopt_chosen_after_the_group_was_found_done_is_followed_by_the_newest_epochs(plant):
    """Simulator seed 2092: the table went to epoch 3 (node 2 added) while a group was at epoch 2's voters
    (1, 3, 4, 5); its ADOPT of epoch 3 was in flight when the table went on to epoch 4 (node 2 removed again),
    whose voters the group already had. The driver withdrew what it could and found the group done; then the
    epoch-3 ADOPT was chosen and the group voted with node 2 to the end, nobody asking it to adopt epoch 4
    (with the plant ignore-late-adopt, the code before, nobody does)."""
    old, added = (1, 3, 4, 5), (1, 2, 3, 4, 5)
    engine = StandInEngine(current=(2, old))
    loop = StandInLoop(engine)
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, plant=plant)
    driver.on_table(loop, table(3, added))
    run(driver, loop, 1)
    assert engine.adopts == [(GROUP, 3, added)]
    driver.on_table(loop, table(4, old, removed=(2,)))
    run(driver, loop, 200)
    assert engine.withdrawn and engine.adopts == [(GROUP, 3, added)]     # found done: the voters are the table's
    assert not driver.todo and not driver.behind
    # The epoch-3 ADOPT is chosen anyway (it was in flight); the loop tells the driver of every chosen ADOPT.
    engine.latest = (3, added)
    driver.adopt_chosen(loop, GROUP)
    run(driver, loop, 1)
    if plant:
        assert engine.adopts[-1] == (GROUP, 3, added) and GROUP not in driver.behind
        return
    assert engine.adopts[-1] == (GROUP, 4, old)
    # Watched until it is in force.
    assert GROUP in driver.behind
    engine.latest = engine.current = (4, old)
    run(driver, loop, 20)
    assert not driver.behind


def test_an_adopt_of_the_tables_voters_or_a_newer_epoch_changes_nothing():
    voters = (1, 3, 4, 5)
    engine = StandInEngine(current=(4, voters))
    loop = StandInLoop(engine)
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9)
    driver.on_table(loop, table(4, voters))
    run(driver, loop, 5)
    assert engine.adopts == []
    driver.adopt_chosen(loop, GROUP)                     # the table's own epoch
    engine.latest = (5, (1, 2, 3))
    driver.adopt_chosen(loop, GROUP)                     # newer than the table this worker knows
    driver.adopt_chosen(loop, GROUP + 1)                 # not hosted here
    assert not driver.todo
    run(driver, loop, 5)
    assert engine.adopts == []


@pytest.mark.parametrize("plant", ["", "same-voters-idle"])
def test_a_node_that_missed_an_epoch_asks_its_groups_to_adopt_the_next_even_with_the_voters_it_knew(plant):
    """Simulator seed 1,636: node 3 knew epoch 1 (voters 3, 4, 5), was down through epoch 2 (1, 3, 4, 5), and
    learned epoch 3 (3, 4, 5 again) in the turn that it chose, as the group's leader, epoch 2's ADOPT. The ADOPT
    was applied first (the driver still at epoch 1: nothing to do), and epoch 3's voters were the ones it knew:
    it looked at no group, and the group stayed on epoch 2's voters, its master never asking it to adopt.
    Every newer epoch now has every group looked at (with the plant same-voters-idle, the code before, none)."""
    engine = StandInEngine(current=(1, (3, 4, 5)))
    loop = StandInLoop(engine)
    loop.node_id = 3
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, plant=plant)
    driver.on_table(loop, table(1, (3, 4, 5)))
    run(driver, loop, 5)
    assert engine.adopts == [] and not driver.behind
    engine.current = engine.latest = (2, (1, 3, 4, 5))     # epoch 2's ADOPT, chosen and applied ...
    driver.adopt_chosen(loop, GROUP)                      # ... while this node knew only epoch 1
    driver.on_table(loop, table(3, (3, 4, 5), removed=(1,)))
    run(driver, loop, 5)
    asked = (GROUP, 3, (3, 4, 5)) in engine.adopts
    assert asked == (not plant)


@pytest.mark.parametrize("plant", ["", "leave-at-adoption"])
def test_a_removed_node_leaves_only_once_voters_without_it_govern_its_groups(plant):
    """Nemesis seed 346: node 4, removed, left as soon as its groups had adopted voters without it. Those govern
    only from their activation, alpha instances after the ADOPT; the system group's master was then killed, and
    the two voters left of the four that still governed could not choose for three minutes. A removed node
    leaves once no current or pending configuration of its groups names it (with the plant leave-at-adoption,
    the code before, it leaves at the adoption)."""
    engine = StandInEngine(current=(1, (1, 2, 3, 4)))
    loop = StandInLoop(engine)
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, plant=plant)
    driver.on_table(loop, table(2, (2, 3, 4), removed=(1,)))
    assert driver.removed_epoch == 2
    engine.latest = (2, (2, 3, 4))               # adopted: pending until its activation
    run(driver, loop, 200)
    assert driver.left == bool(plant)
    if plant:
        return
    engine.current = engine.latest               # in force: node 1 votes nowhere any more
    run(driver, loop, 40)
    assert driver.left


@pytest.mark.parametrize("plant", ["", "leave-voters-only"])
def test_a_removed_node_whose_table_came_back_to_earlier_voters_leaves_once_its_last_epoch_is_passed(plant):
    """Simulator seed 8,002,243: epoch 1 had voters 2, 3, 4 (here), epoch 2 promoted node 1, epoch 3 removed it
    again. The group was still in epoch 1's configuration, 2, 3, 4 (the very voters epoch 3 wants), while epoch
    2's ADOPT, counting node 1, could still be chosen; node 1 left, the ADOPT was chosen after, and the group had
    a voter gone for good. The table keeps the last epoch node 1 voted in (`voter_until`), and the driver asks
    Engine.handoff for a configuration of that epoch or newer (with the plant leave-voters-only, the code
    before, any epoch)."""
    engine = StandInEngine(current=(1, (2, 3, 4)))
    loop = StandInLoop(engine)
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, plant=plant, leave_after_ticks=10**6)
    driver.on_table(loop, table(3, (2, 3, 4), removed=(1,), voter_until=2))
    assert driver.voter_until(1) == 2
    run(driver, loop, 200)
    assert engine.min_epochs and set(engine.min_epochs) == {0 if plant else 2}
    assert driver.left == bool(plant)
    if plant:
        return
    engine.current = engine.latest = (3, (2, 3, 4))    # the group's configuration reached epoch 3
    run(driver, loop, 40)
    assert driver.left


@pytest.mark.parametrize("plant", ["", "leave-unhanded"])
def test_a_removed_node_leaves_only_once_the_voters_carrying_its_groups_on_learned_all_it_had(plant):
    """Soak seed 4,514,976: node 1, removed, had learned group 0 up to 18 and left, as no configuration there
    counted it any more; the others had learned up to 14, and the voters of 14-17 were 1, 2 and 5, of which
    node 5 was rebuilding after losing its log and needed node 1 to finish: the group never chose again. A
    removed node leaves once it has handed each group over (Engine.handoff: a majority of the voters carrying
    it on, the table's, told it they learned every instance it had), or leave_after_ticks after it learned of
    its removal (with the plant leave-unhanded, the code before, it leaves as soon as it votes nowhere)."""
    engine = StandInEngine(current=(2, (2, 3, 4)))       # in force already: node 1 votes nowhere
    engine.carried_on = False                            # ... but no voter said it learned all node 1 had
    loop = StandInLoop(engine)
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, plant=plant, leave_after_ticks=500)
    driver.on_table(loop, table(2, (2, 3, 4), removed=(1,)))
    run(driver, loop, 200)
    assert driver.left == bool(plant)
    if plant:
        return
    assert (GROUP, (2, 3, 4)) in engine.handoffs_asked, "the table's voters are the ones asked"
    engine.carried_on = True
    run(driver, loop, 40)
    assert driver.left

    # Voters that never answer (they dropped the node, or are down) do not keep it for ever.
    engine = StandInEngine(current=(2, (2, 3, 4)))
    engine.carried_on = False
    loop = StandInLoop(engine)
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, leave_after_ticks=500)
    driver.on_table(loop, table(2, (2, 3, 4), removed=(1,)))
    run(driver, loop, 400)
    assert not driver.left
    run(driver, loop, 200)
    assert driver.left


class StandInEngineOfMany(StandInEngine):
    """Groups 0 .. n-1, each at its own configuration (`done` ones have the newest voters in force)."""

    def __init__(self, n, current):
        super().__init__(current)
        self.n = n
        self.done = set()

    def hosts(self, group):
        return 0 <= group < self.n

    def groups(self):
        return list(range(self.n))

    def latest_config(self, group):
        return self.latest if group in self.done else self.current

    def config_of(self, group, instance):
        config = super().config_of(group, instance)
        if group in self.done:
            config.epoch, config.voters = self.latest
        return config


def test_at_most_max_adopting_groups_adopt_at_once_and_the_next_are_asked_as_they_finish():
    """bench member at 100,000 groups: every group of a worker asked at once (50,000) made an election per idle
    group, and the nodes chose nothing any more. The driver keeps a window of groups adopting."""
    old, new = (1, 2, 3, 4), (1, 2, 3)
    engine = StandInEngineOfMany(20, current=(1, old))
    loop = StandInLoop(engine)
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, max_adopting=4)
    driver.on_table(loop, table(2, new, removed=(4,)))
    run(driver, loop, 5)
    assert [a[0] for a in engine.adopts] == [0, 1, 2, 3] and len(driver.todo) == 16
    engine.latest = (2, new)
    asked = set()
    for _ in range(40):
        assert len(driver.behind) <= 4
        asked |= set(driver.behind)
        engine.done |= set(driver.behind)                 # each group asked adopts
        run(driver, loop, 8)
    assert asked == set(range(20)) and not driver.todo and not driver.behind
    assert len(engine.adopts) == 20                         # each asked once: none had to be asked again


def test_a_group_slow_to_adopt_is_asked_again_ever_later_by_a_driver_every_node_agrees_on():
    """A group asked is asked again after retry_ticks, then 2, 4, 8 times as long (not an election a second
    on a loaded node, each preempting the last); the node that proposes its barrier is one of its current
    voters picked by group id and by how often it was asked, the same on every node."""
    voters = (1, 2, 3, 4)
    engine = StandInEngineOfMany(1, current=(1, voters))
    loops = {node: StandInLoop(engine) for node in voters}
    drivers = {node: MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, retry_ticks=100)
               for node in voters}
    for node, loop in loops.items():
        loop.node_id = node
        drivers[node].on_table(loop, table(2, (1, 2, 3), removed=(4,)))
    for _ in range(1700):
        for node, loop in loops.items():
            loop.ticks += 1
            drivers[node].on_tick(loop, loop.ticks)
    assert len(engine.adopts) == 4 * 5                             # ticks 1, ~100, ~300, ~700, ~1500 on each node
    nudgers = [node for node, loop in loops.items() for _ in loop.nudged]
    assert len(nudgers) == 5                              # one node per ask round: no duel
    # Another voter each time: (group 0 + times asked again) mod 4 -> voters 1, 2, 3, 4, 1.
    assert sorted(nudgers) == [1, 1, 2, 3, 4]


def test_groups_that_cannot_adopt_do_not_keep_the_others_from_their_turn_for_ever():
    """Groups that stay behind (no quorum of their voters answers, or stopped) are asked again ever later, and
    after about 15 retry periods no longer hold a place in the window: the next groups are asked, and the
    stalled ones are still watched (status counts them)."""
    old, new = (1, 2, 3, 4), (1, 2, 3)
    engine = StandInEngineOfMany(12, current=(1, old))
    loop = StandInLoop(engine)
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, max_adopting=4, retry_ticks=100)
    driver.on_table(loop, table(2, new, removed=(4,)))
    engine.latest = (2, new)
    run(driver, loop, 1400)
    assert sorted(driver.behind) == [0, 1, 2, 3] and len(driver.todo) == 8     # stuck ones fill the window
    for _ in range(30):
        engine.done |= set(driver.behind) - {0, 1, 2, 3}    # every group but 0-3 adopts once asked
        run(driver, loop, 8)
    assert driver.stalled == {0, 1, 2, 3} and not driver.todo
    assert sorted(driver.behind) == [0, 1, 2, 3]
    assert driver.status(loop)["groups_stalled"] == 4
    engine.done |= {0, 1, 2, 3}                              # they can at last
    run(driver, loop, 40)
    assert not driver.behind and not driver.stalled


def test_a_dropped_node_gets_messages_until_its_groups_have_other_voters_in_force_and_a_while_after():
    """The other side of the handoff above: a node the table dropped is still a peer (its messages answered,
    ours sent to it) until every group here has voters without it in force, and leave_after_ticks after this
    node learned the table, the time it has to hand its groups over: only a peer that talks to it can tell it
    that it has learned all it had (soak seed 4,514,976)."""
    engine = StandInEngine(current=(1, (1, 2, 3, 5)), latest=(2, (1, 2, 3)))     # adopted, not in force yet
    loop = StandInLoop(engine)
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, leave_after_ticks=300)
    driver.on_table(loop, table(2, (1, 2, 3), removed=(5,)))
    run(driver, loop, 400)
    assert 5 in engine.members, "the group still counts node 5 here"
    engine.current = engine.latest                     # in force: node 5 votes nowhere here any more
    run(driver, loop, 20)
    assert 5 not in engine.members and driver.members == (1, 2, 3)

    # In force at once, but the table is new: node 5 stays a peer for leave_after_ticks.
    engine = StandInEngine(current=(2, (1, 2, 3)))
    loop = StandInLoop(engine)
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, leave_after_ticks=300)
    driver.on_table(loop, table(2, (1, 2, 3), removed=(5,)))
    run(driver, loop, 250)
    assert 5 in engine.members
    run(driver, loop, 100)
    assert 5 not in engine.members


def test_a_removed_node_hands_over_a_group_added_after_it_learned_of_its_removal():
    """Soak seed 4,910,844: node 2, removed, had built its list of groups to hand over; group 3 was removed
    there (dropped from the list) and added again, and node 2 left without handing the new incarnation over,
    which counted it. A group added on a node being removed now joins that list."""
    class Engine(StandInEngineOfMany):
        hosted = {1}
        handed = set()

        def hosts(self, group):
            return group in self.hosted

        def groups(self):
            return sorted(self.hosted)

        def handoff(self, group, placement=None, min_epoch=0):
            return group in self.handed

    engine = Engine(2, current=(2, (2, 3, 4)))
    loop = StandInLoop(engine)
    driver = MembershipDriver(sweep_ticks=10**9, catch_up_ticks=10**9, leave_after_ticks=10**6)
    driver.on_table(loop, table(2, (2, 3, 4), removed=(1,)))
    run(driver, loop, 40)
    assert not driver.left, "group 1 is not handed over yet"
    engine.hosted = {0, 1}
    driver.group_added(0)
    engine.handed = {1}
    run(driver, loop, 40)
    assert not driver.left, "group 0, added since, is not handed over yet"
    engine.handed = {0, 1}
    run(driver, loop, 40)
    assert driver.left


def test_a_refresh_of_the_system_group_that_brought_nothing_asks_once_more():
    """Soak seed 7,000,027: a voter cut off while a swap was chosen in the idle system group, whose leader had
    announced it and then left, had one refresh in the heal window, and the peer the engine drew for it was the
    node that had left (heard from lately, so it still counted as live): the node kept the old table to the
    end. A refresh whose request brought nothing asks once more, refresh_ticks // 8 later (the engine then asks
    another peer than the one that brought nothing); a refresh that brought news asks nothing more."""
    from paxos_core.core.config import SYSTEM_GROUP

    class SystemEngine(StandInEngine):
        def __init__(self):
            super().__init__((1, (1, 2, 3)))
            self.system_mark = 3

        def hosts(self, group):
            return group in (GROUP, SYSTEM_GROUP)

        def learned(self, group):
            return (self.system_mark, 0) if group == SYSTEM_GROUP else (10, 0)

        def group_view(self, group):
            return {"top": self.system_mark, "chosen_next": self.system_mark, "active": False}

    class SM:
        def applied_next(self, group):
            return 0

        def membership_table(self):
            return {"epoch": 0}

    engine = SystemEngine()
    loop = StandInLoop(engine)
    loop.sm = SM()
    driver = MembershipDriver(b"", refresh_ticks=64)
    driver.seeded = True
    run(driver, loop, 63)
    assert engine.pokes.count(SYSTEM_GROUP) == 0
    run(driver, loop, 1)
    assert engine.pokes.count(SYSTEM_GROUP) == 1, "the refresh"
    run(driver, loop, 7)
    assert engine.pokes.count(SYSTEM_GROUP) == 1
    run(driver, loop, 1)
    assert engine.pokes.count(SYSTEM_GROUP) == 2, "nothing came of it: once more, 64 // 8 ticks later"
    run(driver, loop, 64 - 8)
    assert engine.pokes.count(SYSTEM_GROUP) == 3, "the next refresh"
    engine.system_mark = 21                  # its request brought the values chosen meanwhile
    run(driver, loop, 63)
    assert engine.pokes.count(SYSTEM_GROUP) == 3, "news: no second request"
    run(driver, loop, 1)
    assert engine.pokes.count(SYSTEM_GROUP) == 4, "the next refresh"

"""Per-instance voters (core/voters.pyx, issue 14 step 3): the ADOPT value, config(j), and the state that a
CONFIG record, a LOW record or a snapshot will carry. The engine does not use the table yet."""
import random

import pytest

from paxos_core.core import voters as voters_module
from paxos_core.core.voters import (ADOPT_TAG, BadAdopt, Config, VoterTable, decode_adopt, encode_adopt,
                                    is_adopt)
from paxos_core.native import module_status
from paxos_core.wire.codec import encode_batch


def test_the_compiled_module_is_the_one_loaded():
    name, compiled, path = module_status(voters_module.__name__)
    assert compiled, path


def test_adopt_round_trip_and_canonical_order():
    value = encode_adopt(7, (5, 1, 3))
    assert value[0] == ADOPT_TAG and is_adopt(value)
    assert decode_adopt(value) == (7, (1, 3, 5))
    assert encode_adopt(7, (1, 3, 5)) == value, "one voter set, one encoding"
    assert len(value) == 1 + 8 + 1 + 2 * 3


def test_no_other_log_value_looks_like_an_adopt():
    assert not is_adopt(b"")                                  # a no-op
    assert not is_adopt(encode_batch([(1, 1, b"put")]))       # a batch starts with its version byte
    with pytest.raises(BadAdopt):
        decode_adopt(encode_batch([(1, 1, b"put")]))


@pytest.mark.parametrize("epoch,voters", [
    (0, (1, 2, 3)),             # epoch 0 is not an epoch
    (1, ()),                    # no voters
    (1, tuple(range(1, 9))),    # more than 7
    (1, (1, 1, 2)),             # a voter twice
    (1, (0, 1, 2)),             # node ids start at 1
    (1, (1, 0xFFFF)),           # ids are 1 to 0xFFFE (0xFFFF is reserved)
])
def test_a_bad_configuration_cannot_be_encoded(epoch, voters):
    with pytest.raises(BadAdopt):
        encode_adopt(epoch, voters)


def test_malformed_adopt_values_are_refused():
    good = encode_adopt(3, (1, 2, 3))
    cases = [
        good[:-1],                                      # short
        good + b"\0",                                   # long
        good[:9] + bytes([4]) + good[10:],              # count says 4, holds 3
        good[:10] + (2).to_bytes(2, "little") + (1).to_bytes(2, "little") + good[14:],   # not ascending
        bytes([ADOPT_TAG]) + (0).to_bytes(8, "little") + bytes([1]) + (1).to_bytes(2, "little"),  # epoch 0
        bytes([ADOPT_TAG]) + b"\1\0",                   # cut inside the epoch
    ]
    for value in cases:
        assert is_adopt(value)
        with pytest.raises(BadAdopt):
            decode_adopt(value)


def test_config_counts_votes_by_position_and_a_majority():
    config = Config(4, (2, 4, 5, 7, 9))
    assert config.quorum == 3
    assert [config.position(n) for n in (2, 4, 5, 7, 9)] == [0, 1, 2, 3, 4]
    assert config.position(1) == -1 and config.position(3) == -1, "a stranger has no position: its vote is dropped"
    assert Config(1, (1,)).quorum == 1 and Config(1, (1, 2)).quorum == 2 and Config(1, (1, 2, 3, 4)).quorum == 3


def test_config_of_an_instance_is_the_last_adopt_chosen_alpha_or_more_below_it():
    table = VoterTable(4, 8, 1, (1, 2, 3))
    slot = 2
    assert table.config(slot, 0).voters == (1, 2, 3)
    # Learned in instance order: instances 0-9 ordinary, 10 an ADOPT of epoch 2.
    for i in range(10):
        assert table.learned(slot, i, encode_batch([(1, i, b"x")])) == 0
    assert table.learned(slot, 10, encode_adopt(2, (1, 2, 4))) == 18
    assert table.config(slot, 17).voters == (1, 2, 3), "below 10 + alpha the old voters still govern"
    assert table.config(slot, 18).voters == (1, 2, 4) and table.config(slot, 18).epoch == 2
    assert table.position(slot, 30, 3) == -1 and table.position(slot, 30, 4) == 2
    assert table.position(slot, 17, 3) == 2 and table.position(slot, 17, 4) == -1
    # Other slots are untouched.
    assert table.config(1, 30).voters == (1, 2, 3) and table.config(3, 30).voters == (1, 2, 3)

    # A second ADOPT inside the first one's alpha: each activates at its own instance + alpha.
    assert table.learned(slot, 12, encode_adopt(3, (2, 4, 5))) == 20
    assert [table.config(slot, j).epoch for j in (17, 18, 19, 20, 21)] == [1, 2, 2, 3, 3]
    # Not newer than the latest (pending) epoch: a no-op (R5), as is a malformed one.
    assert table.learned(slot, 13, encode_adopt(3, (1, 2, 3))) == 0
    assert table.learned(slot, 14, encode_adopt(2, (1, 2, 3))) == 0
    assert table.learned(slot, 15, encode_adopt(9, (1, 2, 3))[:-1]) == 0
    assert table.latest_epoch(slot) == 3

    # The chosen mark passes the activations: they become current, and the pending list goes.
    assert table.advance(slot, 18) == 1
    assert table.config(slot, 18).epoch == 2 and table.config(slot, 20).epoch == 3
    assert table.advance(slot, 25) == 1
    assert slot not in table.pending and table.config(slot, 25).voters == (2, 4, 5)
    assert table.advance(slot, 40) == 0


def test_config_of_matches_its_definition_on_random_logs():
    """The table against the definition, computed from the whole chosen log: for every instance j below the
    chosen mark + alpha, config(j) is the last ADOPT of a newer epoch chosen at i <= j - alpha."""
    rng = random.Random(14)
    for alpha in (1, 3, 8):
        table = VoterTable(1, alpha, 1, (1, 2, 3))
        log = []
        epoch = 1
        for i in range(400):
            if rng.random() < 0.08:
                epoch_drawn = epoch + rng.choice((-1, 0, 1, 1, 2))
                value = encode_adopt(max(1, epoch_drawn), rng.sample(range(1, 8), rng.choice((1, 3, 5))))
            else:
                value = encode_batch([(1, i, b"v")])
            log.append(value)
            table.learned(0, i, value)
            epoch = max(epoch, decode_adopt(value)[0]) if is_adopt(value) else epoch
            if rng.random() < 0.3:
                table.advance(0, i + 1)
            for j in range(i + 1, i + 1 + alpha):
                assert table.config(0, j) is _definition(table, log, alpha, j), (alpha, i, j)


def _definition(table, log, alpha, j):
    epoch, voters = 1, (1, 2, 3)
    for i, value in enumerate(log[:j - alpha + 1] if j >= alpha else []):
        if is_adopt(value):
            e, v = decode_adopt(value)
            if e > epoch:
                epoch, voters = e, v
    config = table.config(0, j)
    return config if (config.epoch, config.voters) == (epoch, voters) else None


def _defined(log, alpha, j):
    epoch, voters = 1, (1, 2, 3)
    for value in (log[:j - alpha + 1] if j >= alpha else []):
        if is_adopt(value):
            e, v = decode_adopt(value)
            if e > epoch:
                epoch, voters = e, v
    return epoch, voters


def test_a_chosen_instance_has_the_same_configuration_however_far_the_node_learned_since():
    """Simulator seed 1,686: the applier asks the configuration of each instance it applies, and a node that
    had learned past an activation answered for an instance before it with the configuration after it (the
    current one), where a node that had not answered with the one before: lease renewals differed from node to
    node. config_of_chosen answers by the definition for chosen instances too, on the live table and on one
    rebuilt by replay (a restart), until truncation passes them."""
    rng = random.Random(1686)
    for alpha in (1, 3, 8):
        table = VoterTable(1, alpha, 1, (1, 2, 3))
        log, adopts = [], []
        epoch = 1
        for i in range(300):
            if rng.random() < 0.08:
                epoch_drawn = epoch + rng.choice((-1, 0, 1, 1, 2))
                value = encode_adopt(max(1, epoch_drawn), rng.sample(range(1, 8), rng.choice((1, 3, 5))))
                adopts.append((i, value))
            else:
                value = encode_batch([(1, i, b"v")])
            log.append(value)
            table.learned(0, i, value)
            table.advance(0, i + 1)
            epoch = max(epoch, decode_adopt(value)[0]) if is_adopt(value) else epoch
            for j in range(max(0, i - 30), i + 1 + alpha):
                config = table.config_of_chosen(0, j)
                assert (config.epoch, config.voters) == _defined(log, alpha, j), (alpha, i, j)
        rebuilt = VoterTable(1, alpha, 1, (1, 2, 3))
        rebuilt.replay(0, b"", adopts, 300, alpha)
        for j in range(270, 300 + alpha):
            config = rebuilt.config_of_chosen(0, j)
            assert (config.epoch, config.voters) == _defined(log, alpha, j), (alpha, j)
        assert table.history.get(0)
        table.forget_below(0, 300)
        assert 0 not in table.history          # truncated past every activation: nothing kept


def test_configurations_are_interned_and_an_idle_group_costs_two_bytes():
    table = VoterTable(1000, 8, 1, (1, 2, 3))
    assert table.config_array.nbytes == 2000
    for slot in range(1000):
        table.learned(slot, 5, encode_adopt(2, (1, 2, 4)))
        table.advance(slot, 13)
    assert table.distinct() == 2, "one Config object per epoch and voter set, shared by every group"
    assert table.config(0, 20) is table.config(999, 20)
    assert not table.pending
    table.grow(24)
    assert len(table.config_array) == 1024 and table.config(1010, 0).voters == (1, 2, 3)


def test_state_round_trip_and_damaged_state_changes_nothing():
    table = VoterTable(2, 8, 1, (1, 2, 3))
    table.learned(0, 10, encode_adopt(2, (1, 2, 4)))
    table.learned(0, 12, encode_adopt(3, (2, 4, 5)))
    state = table.state(0)
    other = VoterTable(2, 8, 1, (1, 2, 3))
    other.restore(1, state)
    assert [other.config(1, j).epoch for j in (17, 18, 20)] == [1, 2, 3]
    assert other.state(1) == state
    table.advance(0, 30)
    assert table.state(0) != state
    other.restore(1, table.state(0))
    assert 1 not in other.pending and other.config(1, 30).voters == (2, 4, 5)

    before = other.state(1)
    bad = [state[:-1], state + b"\0", b"", bytes([9]) + state[1:],
           state[:1] + (0).to_bytes(8, "little") + state[9:]]           # current epoch 0
    for damaged in bad:
        with pytest.raises(BadAdopt):
            other.restore(1, damaged)
        assert other.state(1) == before


def test_reset_puts_a_slot_in_a_given_configuration_with_nothing_pending():
    table = VoterTable(2, 8, 1, (1, 2, 3))
    table.learned(1, 0, encode_adopt(2, (1, 2, 4)))
    table.reset(1)
    assert 1 not in table.pending and table.config(1, 100).epoch == 1
    table.reset(1, 5, (3, 4, 5))
    assert table.config(1, 0).voters == (3, 4, 5) and table.latest_epoch(1) == 5


def test_a_group_added_at_run_time_starts_in_its_own_first_configuration():
    """Soak seed 4,910,844: a group added at run time started on the table's first voters, two of which had
    left the cluster; it could never choose again. Its ADD_GROUP now names the configuration it starts in, and
    an empty configuration state (records, snapshots, STATE_REPLY) stands for that one, the same on every node
    of the incarnation."""
    table = VoterTable(3, 8, 1, (1, 2, 5))
    first = voters_module.config_state(3, (3, 4, 5))
    assert voters_module.first_config(first) == (3, (3, 4, 5))
    table.set_first(1, first)
    table.reset(1)
    assert table.config(1, 0).voters == (3, 4, 5) and table.latest_epoch(1) == 3
    assert table.compact_state(1) == b"" and table.first_state(1) == first
    assert table.config(0, 0).voters == (1, 2, 5) and table.first_state(0) == b"", "the other slots: the table's"
    table.learned(1, 4, encode_adopt(4, (2, 3, 4)))
    assert voters_module.state_configs(table.compact_state(1)) == [(3, (3, 4, 5)), (4, (2, 3, 4))]
    table.replay(1, b"", [(4, encode_adopt(4, (2, 3, 4)))], 20, 8)
    assert table.config(1, 20).voters == (2, 3, 4) and table.config_of_chosen(1, 11).voters == (3, 4, 5), \
        "a replay from an empty base starts from the group's first configuration"
    table.set_first(1, b"")
    table.reset(1)
    assert table.config(1, 0).voters == (1, 2, 5)
    table.grow(2)
    assert table.first_state(4) == b""
    pending = table.state(2)[:-1] + bytes([1]) + (9).to_bytes(8, "little") + voters_module.config_state(
        2, (1, 2))[1:-1]
    for bad in (b"\x01", first[:-1], first + b"\0", pending):
        with pytest.raises(BadAdopt):
            table.set_first(2, bad)
        assert table.first_state(2) == b""
    with pytest.raises(BadAdopt):
        voters_module.config_state(0, (1, 2))
    assert table.normal_first(voters_module.config_state(1, (5, 2, 1))) == b"", "the table's own: empty"
    assert table.normal_first(first) == first and table.normal_first(b"") == b""

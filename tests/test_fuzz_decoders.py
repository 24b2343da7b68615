"""Every decoder under fuzzed input (short runs; tools/fuzz.py does the long ones, docs/RELIABILITY.md).

Each input must decode or raise the decoder's documented error class with a clear message (one line), and
nothing may allocate far beyond its input: the examples run under an address-space bound (RLIMIT_AS), so an
allocation of gigabytes is a MemoryError, which is a failure here. Inputs: random bytes, valid encodings
mutated (bit flips, truncation, interesting values in integer fields such as huge lengths and counts) with
their checksum fixed or not, and hand-made huge length fields at each format's known offsets.
"""
import importlib.util
import random
import resource
import struct
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paxos_core import errors
from paxos_core.wire import codec, rpc

_spec = importlib.util.spec_from_file_location("paxos_fuzz_tool", Path(__file__).parent.parent / "tools" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
# Address space a decoder may use: the test process's size when this module's first test starts + 1 GiB, ONE
# bound for every example (a bound re-taken from the size at each example would let memory kept between
# examples, say a worker's arrays, ratchet up without limit). Not the size at import: in a full run the
# modules are imported first, and the tests before these grow the process (threads, arenas) by more than that.
_BOUND = None


@contextmanager
def memory_bound():
    """RLIMIT_AS at _BOUND for the block (the soft limit goes back afterwards)."""
    global _BOUND
    if _BOUND is None:
        _BOUND = fuzz.address_space() + (1 << 30)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (max(_BOUND, fuzz.address_space() + (64 << 20)), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


_TARGETS = {}


def target(name):
    if name not in _TARGETS:
        _TARGETS[name] = fuzz.TARGETS[name]()
    return _TARGETS[name]


def check(name, data):
    """Run one input; fail with the input if it was not handled as documented."""
    with memory_bound():
        try:
            target(name).check(data)
        except fuzz.Crash as exc:
            _TARGETS.pop(name, None)          # its state (a worker's loop) may be half-changed
            pytest.fail("%s: %s\ninput (hex): %s" % (name, exc, data.hex()))


NAMES = sorted(fuzz.TARGETS)


# ---------------------------------------------------------------------------------------------- fuzzed
@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(name, data):
    check(name, data)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(seed=st.integers(0, 2 ** 32))
def test_mutated_encodings(name, seed):
    """A valid encoding (or a structured one) mutated; its checksum fixed half the time."""
    t = target(name)
    rng = random.Random(seed)
    check(name, fuzz.generate(rng, t, t.seeds()))


@pytest.mark.parametrize("name", NAMES)
def test_seeds_are_accepted(name):
    """The valid encodings the fuzzer starts from decode (else the mutations test nothing but the surface)."""
    t = target(name)
    seeds = t.seeds()
    if name == "frame":
        with pytest.raises(errors.WrongCluster):        # the last one is from another cluster, on purpose
            t.run(seeds.pop())
        assert all(codec.decode_frame(s, fuzz.CLUSTER, fuzz.DEST)[1] for s in seeds[1:])
    for data in seeds:
        t.run(data)


# ---------------------------------------------------------------------------------------------- huge lengths
def _frame():
    return target("frame").seeds()[2]


@pytest.mark.parametrize("offset,width", [(16, 4), (20, 4), (28 + 44, 4)])
@pytest.mark.parametrize("value", [0xFFFFFFFF, 0x7FFFFFFF, 1 << 24])
@pytest.mark.parametrize("fix_crc", [False, True])
def test_frame_huge_length_fields(offset, width, value, fix_crc):
    """Message count, body length and a value length set huge: a FrameError, nothing allocated."""
    data = bytearray(_frame())
    struct.pack_into("<I", data, offset, value)
    data = bytes(data)
    if fix_crc:
        data = target("frame").fixup(data)
    check("frame", data)
    with pytest.raises(errors.FrameError):
        codec.decode_frame(data, fuzz.CLUSTER, fuzz.DEST)


@pytest.mark.parametrize("value", [0xFFFFFFFF, 1 << 20])
def test_entries_and_batch_huge_counts(value):
    entries = bytearray(target("entries").seeds()[2])
    struct.pack_into("<I", entries, 0, value)
    with pytest.raises(errors.MalformedFrame):
        codec.decode_entries(bytes(entries))
    entries = bytearray(target("entries").seeds()[2])
    struct.pack_into("<I", entries, 4 + 16, value)                 # the first entry's value length
    with pytest.raises(errors.MalformedFrame):
        codec.decode_entries(bytes(entries))
    batch = bytearray(target("batch").seeds()[3])
    struct.pack_into("<I", batch, 1, value)
    with pytest.raises(errors.MalformedFrame):
        codec.decode_batch(bytes(batch))


@pytest.mark.parametrize("count, message", [
    (0xFFFFFFFF, "batch request of 4294967295 operations: at most %d" % rpc.MAX_BATCH_OPS),
    (rpc.MAX_BATCH_OPS, "declares %d items" % rpc.MAX_BATCH_OPS),
])
def test_batch_request_huge_count_is_refused_before_allocation(count, message):
    """A PROPOSE_BATCH declaring 2**32-1 operations in a few bytes: refused by its count alone (above
    rpc.MAX_BATCH_OPS); one declaring MAX_BATCH_OPS in a few bytes: by comparing the count with the bytes
    left. Each with a message that says so."""
    frame = rpc.propose_batch_request(1, 0, 100, 5, 1, [b"ab"])
    frame = frame[:41] + struct.pack("<I", count) + frame[45:]        # the count, after 9 + 32 bytes
    with memory_bound(), pytest.raises(errors.BadRequest, match=message):
        rpc.decode_request(frame)


@pytest.mark.parametrize("frame", [
    rpc.add_group_request(1, 5) + b"\x00",                                  # trailing byte
    rpc.add_group_request(1, 5)[:-1] + b"\x02",                             # an unknown flag
    rpc.simple_request(rpc.REMOVE_GROUP, 1, 5)[:-1],                        # truncated group id
    rpc.simple_request(rpc.STATUS, 1) + b"junk",
    rpc.propose_request(1, 0, 1, 2, 3, b"")[:20],
    bytes([99]) + bytes(8),                                                 # unknown op
])
def test_malformed_requests_get_one_line_bad_request(frame):
    with pytest.raises(errors.BadRequest) as info:
        rpc.decode_request(frame)
    assert fuzz.unclear(info.value) is None and "request" in str(info.value)


def test_add_group_request_carries_the_join_flag_and_its_first_configuration():
    from paxos_core.core.voters import config_state

    first = config_state(2, (1, 2, 4))
    assert rpc.decode_request(rpc.add_group_request(3, 9, 2, first, join=True)) == (rpc.ADD_GROUP, 3, 9, 2, first,
                                                                                     True)
    assert rpc.decode_request(rpc.add_group_request(3, 9, 2)) == (rpc.ADD_GROUP, 3, 9, 2, b"", False)
    # A group alone, or a group and an incarnation (no flags): as before.
    assert rpc.decode_request(rpc.add_group_request(3, 9)[:13]) == (rpc.ADD_GROUP, 3, 9, 0, b"", False)
    assert rpc.decode_request(rpc.add_group_request(3, 9, 4)[:15]) == (rpc.ADD_GROUP, 3, 9, 4, b"", False)


@pytest.mark.parametrize("body,decode", [
    (b"\x01\x00", rpc.decode_propose_ok),
    (struct.pack("<I", 0xFFFFFFFF), rpc.decode_propose_batch_ok),
    (struct.pack("<IQI", 1, 5, 1000), rpc.decode_propose_batch_ok),
    (struct.pack("<I", 0xFFFFFFFF), rpc.split_reply_batch),
    (b"\x01", rpc.split_reply_batch),
    (b"\x01\x02", rpc.decode_event),
])
def test_malformed_replies_raise_bad_request(body, decode):
    """Before: struct.error escaped from these into the client's I/O thread, which then failed every request
    in flight."""
    with memory_bound(), pytest.raises(errors.BadRequest):
        decode(body)


def test_record_huge_value_length():
    key_value = target("record").seeds()[7]          # an instance record
    data = bytearray(key_value)
    struct.pack_into("<I", data, 14 + 32, 0xFFFFFFFF)            # the value length
    data = target("record").fixup(bytes(data))
    check("record", data)
    with pytest.raises(errors.RecordCorrupt):
        fuzz.rec.decode_record(data[:14], data[14:])


# ---------------------------------------------------------------------------------------------- the worker
def test_add_group_of_the_highest_group_id_allocates_nothing():
    """Issue 10: 13 bytes (ADD_GROUP for group 2**32-1, no incarnation) made a worker grow its per-group
    arrays to 2**31 slots (16 GiB). It is refused with BAD_REQUEST before anything is allocated, and the worker
    goes on serving."""
    t = fuzz.WorkerTarget()
    t._fresh()
    slots = t.loop.engine.n_slots
    frame = rpc.add_group_request(7, 0xFFFFFFFC)[:13]          # the highest group id of worker 0 of 2 (the two
                                                               # above it are reserved: the system group)
    assert len(frame) == 13
    with memory_bound():
        t.loop.turn((), [(b"c", frame)])
    replies = [rpc.decode_reply(f) for _, f in t.loop.take_replies()]
    assert [(s, r) for s, r, _ in replies] == [(rpc.BAD_REQUEST, 7)]
    assert "max_group_id" in replies[0][2].decode()
    assert t.loop.engine.n_slots == slots
    t.loop.turn((), [(b"c", rpc.add_group_request(8, 8))])            # a group within the bound still works
    assert [rpc.decode_reply(f)[:2] for _, f in t.loop.take_replies()] == [(rpc.OK, 8)]
    assert t.loop.engine.hosts(8)


def test_worker_answers_every_seed_request():
    t = fuzz.WorkerTarget()
    for data in t.seeds():
        check("worker", data)


@pytest.mark.parametrize("edit", [
    lambda text: text.replace("id = ", 'id = "%s"\nx = ' % ("a" * 3000), 1),         # a huge value
    lambda text: '"line\\nbreak" = 1\n' + text,                                       # a key with a newline
    lambda text: text.replace("[node]", "[node]\n%s = 1" % ("k" * 3000)),             # a huge unknown key
])
def test_config_errors_stay_one_short_line(edit):
    """Found by tools/fuzz.py: a message quoted the file's value or key whole (thousands of characters, or a
    newline in a quoted key)."""
    t = target("config")
    data = edit(t.files[0].decode()).encode()
    with pytest.raises(errors.ConfigError) as info:
        t.run(data)
    assert fuzz.unclear(info.value) is None, str(info.value)[:300]


def test_remove_group_with_parked_requests_does_not_crash_the_worker(tmp_path):
    """Found by tools/fuzz.py (--decoder worker --seed 10, input 39575): REMOVE_GROUP of a group with requests
    parked for its master ran a last cycle whose claim outcome routed them again, into an engine that no
    longer had the group (UnknownGroup: the worker died). They are now answered UNKNOWN_GROUP. The run up to
    that input is replayed (a few seconds)."""
    found = []
    with memory_bound():
        crashes, _slowest = fuzz.run_mutate(fuzz.WorkerTarget(), 39576, 10, found.append,
                                            crash_dir=str(tmp_path))
    assert crashes == 0, found


def test_config_with_a_keys_dir_name_too_long_is_a_config_error():
    """Found by tools/fuzz.py (--decoder config --seed 10, input 81454): is_dir() of a name longer than the file
    system allows raised OSError out of load_config."""
    t = target("config")
    data = t.files[0].decode().replace('keys_dir = "keys"', 'keys_dir = "%s"' % ("k" * 5000)).encode()
    assert data != t.files[0]
    with pytest.raises(errors.ConfigError, match="cluster.keys_dir") as info:
        t.run(data)
    assert fuzz.unclear(info.value) is None


def test_remove_group_during_a_master_change_does_not_crash_the_worker(tmp_path):
    """Found by tools/fuzz.py (--decoder worker --seed 10, input 620369, after the fix above): the last cycle
    of REMOVE_GROUP reported a master change of the group, and telling the engine who should lead it asked
    about a group it no longer had (UnknownGroup). The inputs since the loop's last reset are replayed."""
    t = fuzz.WorkerTarget()
    rng = random.Random(10)
    seeds = t.seeds()
    inputs = [seeds[k] if k < len(seeds) else fuzz.generate(rng, t, seeds) for k in range(620370)]
    start = 620369 - 620369 % t.RESET_EVERY
    found = []
    with memory_bound():
        for k in range(start, 620370):
            try:
                t.check(inputs[k])
            except fuzz.Crash as exc:
                found.append((k, str(exc)))
    assert not found

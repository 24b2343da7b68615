"""The wire codec: frames, entry lists, proposal batches, and the error contract."""
import importlib.machinery
import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from paxos_core import native
from paxos_core.errors import (FrameChecksumError, FrameError, FrameTooLarge, FrameTruncated, MalformedFrame,
                               PaxosError, UnknownVersion, WrongCluster)
from paxos_core.wire import codec
from paxos_core.wire.checksum import crc32c
from paxos_core.wire.codec import (BatchBuilder, FrameEncoder, decode_batch, decode_entries, decode_frame,
                                   encode_batch, encode_entries, encode_frame, peek_frame_header)
from paxos_core.wire.message import KIND_MAX, Kind, Message

CLUSTER = 0xC0FFEE
U8, U16, U32, U64 = 0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
ALL_KINDS = list(range(1, KIND_MAX + 1))

FRAME_HEADER = struct.Struct("<2sBBQHHIII")
MESSAGE_HEADER = struct.Struct("<BBHIQQQQII")


# ------------------------------------------------------------------------------------------------ helpers

def reference_message(kind, group=0, instance=0, ballot=0, mark=0, aux=0, chain=0, value=b"", flags=0,
                      reserved=1, value_len=None):
    """A message encoded independently of the codec (struct), with knobs to break it. `reserved` is the u16
    at offset 2: the group incarnation (1 for a group never removed)."""
    vlen = len(value) if value_len is None else value_len
    return MESSAGE_HEADER.pack(kind, flags, reserved, group, instance, ballot, mark, aux, chain, vlen) + value


def reference_frame(body, count, cluster=CLUSTER, sender=1, dest=2, version=1, flags=0, magic=b"PX",
                    body_len=None, crc=None):
    """A frame encoded independently of the codec; the crc is correct unless given."""
    blen = len(body) if body_len is None else body_len
    head = FRAME_HEADER.pack(magic, version, flags, cluster, sender, dest, count, blen, 0)[:24]
    if crc is None:
        crc = crc32c(body, crc32c(head))
    return head + struct.pack("<I", crc) + body


def reseal(frame):
    """Recompute the crc of a (possibly tampered) frame so that only the later checks can catch it."""
    frame = bytes(frame)
    return frame[:24] + struct.pack("<I", crc32c(frame[28:], crc32c(frame[:24]))) + frame[28:]


def set_body_len(frame, n):
    frame = bytearray(frame)
    struct.pack_into("<I", frame, 20, n)
    return bytes(frame)


def msg(kind=Kind.ACCEPT, group=1, instance=2, ballot=3, mark=4, aux=5, chain=6, value=b"v", flags=0, src=0):
    return Message(kind, group, instance, ballot, mark, aux, chain, value, flags=flags, src=src)


def sample_messages():
    return [msg(Kind.PREPARE, value=b""), msg(Kind.ACCEPT, group=7, value=b"hello"),
            msg(Kind.CHOSEN, group=U32, instance=U64, value=b"\x00" * 3)]


def with_src(messages, src):
    out = []
    for m in messages:
        t = list(m.as_tuple())
        kind, flags, _, group, instance, ballot, mark, aux, chain, value, inc = t
        out.append(Message(kind, group, instance, ballot, mark, aux, chain, value, flags=flags, src=src, inc=inc))
    return out


def raises_exactly(cls, fn, *args, match=None, **kwargs):
    with pytest.raises(FrameError) as info:
        fn(*args, **kwargs)
    assert type(info.value) is cls, "expected %s, got %r" % (cls.__name__, info.value)
    assert isinstance(info.value, FrameError) and isinstance(info.value, PaxosError)
    if match is not None:
        assert match in str(info.value), str(info.value)
    return info.value


# ------------------------------------------------------------------------------------------------ module

def test_codec_is_the_compiled_extension():
    name, compiled, path = native.module_status("paxos_core.wire.codec")
    assert "paxos_core.wire.codec" in native.NATIVE_MODULES
    assert compiled, path
    assert codec.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_c_api_is_exported_for_cimport():
    capi = codec.__pyx_capi__
    for name in ("encode_frame", "decode_frame", "decode_frame_ptr", "peek_frame_header", "encode_entries",
                 "decode_entries", "decode_entries_ptr", "encode_batch", "decode_batch", "decode_batch_ptr"):
        assert name in capi, name


def test_constants():
    assert codec.FRAME_HEADER_SIZE == 28
    assert codec.MESSAGE_HEADER_SIZE == 48
    assert codec.FRAME_VERSION == 1
    assert codec.DEFAULT_MAX_FRAME_BYTES == 64 * 1024 * 1024
    assert codec.DEFAULT_MAX_VALUE_BYTES == 16 * 1024 * 1024
    assert FRAME_HEADER.size == 28 and MESSAGE_HEADER.size == 48


def test_docstring_documents_the_error_contract():
    doc = codec.__doc__
    for cls in (FrameTruncated, MalformedFrame, UnknownVersion, FrameTooLarge, FrameChecksumError, WrongCluster):
        assert cls.__name__ in doc


# ------------------------------------------------------------------------------------------------ layout

def test_encoding_matches_the_documented_layout():
    ms = [msg(Kind.PROMISE, group=0x01020304, instance=0x1112131415161718, ballot=0x2122232425262728,
              mark=0x3132333435363738, aux=0x4142434445464748, chain=0x51525354, value=b"abc", flags=0x61),
          msg(Kind.FORWARD, value=b"")]
    body = b"".join(reference_message(m.kind, m.group, m.instance, m.ballot, m.mark, m.aux, m.chain, m.value,
                                      m.flags) for m in ms)
    expected = reference_frame(body, 2, cluster=0x0102030405060708, sender=0x0A0B, dest=0x0C0D)
    frame = encode_frame(0x0102030405060708, 0x0A0B, 0x0C0D, ms)
    assert frame == expected
    assert frame[:4] == b"PX\x01\x00"
    assert frame[4:12] == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    assert frame[28] == Kind.PROMISE and frame[29] == 0x61 and frame[30:32] == b"\x01\0"   # incarnation 1
    assert frame[32:36] == bytes([4, 3, 2, 1])
    assert struct.unpack_from("<I", frame, 24)[0] == crc32c(frame[28:], crc32c(frame[:24]))


def test_empty_frame():
    frame = encode_frame(CLUSTER, 1, 2, [])
    assert len(frame) == 28
    assert decode_frame(frame, CLUSTER, 2) == (1, [])
    assert FrameEncoder(CLUSTER, 1, 2).finish() == frame


# ------------------------------------------------------------------------------------------------ round trips

@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("extreme", ["zero", "max"])
def test_round_trip_every_kind_with_extreme_fields(kind, extreme):
    if extreme == "zero":
        m = Message(kind, 0, 0, 0, 0, 0, 0, b"", flags=0)
        cluster, sender, dest = 0, 0, 0
    else:
        m = Message(kind, U32, U64, U64, U64, U64, U32, b"\xff" * 300, flags=U8)
        cluster, sender, dest = U64, U16, U16
    for frame in (encode_frame(cluster, sender, dest, [m]), _encode_incrementally(cluster, sender, dest, [m])):
        got_sender, got = decode_frame(frame, cluster, dest)
        assert got_sender == sender
        assert got == with_src([m], sender)
        assert got[0].src == sender
        hdr = peek_frame_header(frame)
        assert (hdr["cluster_id"], hdr["sender"], hdr["dest"], hdr["count"]) == (cluster, sender, dest, 1)


def _encode_incrementally(cluster, sender, dest, messages):
    enc = FrameEncoder(cluster, sender, dest)
    for m in messages:
        enc.add(m)
    return enc.finish()


def test_round_trip_all_kinds_in_one_frame_and_many_groups():
    ms = [msg(kind=ALL_KINDS[i % len(ALL_KINDS)], group=i * 7919, instance=i, value=bytes([i % 256]) * (i % 50))
          for i in range(2000)]
    frame = encode_frame(CLUSTER, 3, 4, ms)
    sender, got = decode_frame(frame, CLUSTER, 4)
    assert sender == 3
    assert got == with_src(ms, 3)
    assert len({m.group for m in got}) == 2000


def test_round_trip_large_values():
    big = bytes(range(256)) * 4096                           # 1 MiB
    at_limit = b"\x5a" * codec.DEFAULT_MAX_VALUE_BYTES       # exactly the default value limit
    ms = [msg(value=big), msg(value=b""), msg(value=at_limit)]
    frame = encode_frame(CLUSTER, 1, 2, ms)
    _, got = decode_frame(frame, CLUSTER)
    assert [m.value for m in got] == [big, b"", at_limit]


def test_decode_accepts_any_bytes_like():
    ms = sample_messages()
    frame = encode_frame(CLUSTER, 1, 2, ms)
    expected = (1, with_src(ms, 1))
    assert decode_frame(bytearray(frame), CLUSTER) == expected
    assert decode_frame(memoryview(frame), CLUSTER) == expected
    assert decode_frame(memoryview(b"junk" + frame + b"junk")[4:-4], CLUSTER) == expected
    assert peek_frame_header(bytearray(frame))["count"] == 3
    # decoded values do not alias the input buffer
    buf = bytearray(frame)
    _, got = decode_frame(buf, CLUSTER)
    buf[:] = bytes(len(buf))
    assert got == expected[1]


def test_decode_rejects_non_buffers():
    with pytest.raises(TypeError):
        decode_frame("PX", CLUSTER)
    with pytest.raises(TypeError):
        decode_frame(None, CLUSTER)


def test_encode_frame_accepts_any_iterable():
    ms = sample_messages()
    assert encode_frame(CLUSTER, 1, 2, iter(ms)) == encode_frame(CLUSTER, 1, 2, ms)
    assert encode_frame(CLUSTER, 1, 2, tuple(ms)) == encode_frame(CLUSTER, 1, 2, ms)


def test_src_of_the_input_is_not_sent():
    m = msg(src=99)
    _, got = decode_frame(encode_frame(CLUSTER, 5, 2, [m]), CLUSTER)
    assert got[0].src == 5


message_strategy = st.builds(
    lambda kind, flags, group, instance, ballot, mark, aux, chain, value: Message(
        kind, group, instance, ballot, mark, aux, chain, value, flags=flags),
    st.integers(1, KIND_MAX), st.integers(0, U8), st.integers(0, U32), st.integers(0, U64),
    st.integers(0, U64), st.integers(0, U64), st.integers(0, U64), st.integers(0, U32), st.binary(max_size=200))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, U64), st.integers(0, U16), st.integers(0, U16), st.lists(message_strategy, max_size=30))
def test_round_trip_property(cluster, sender, dest, messages):
    frame = encode_frame(cluster, sender, dest, messages)
    assert frame == _encode_incrementally(cluster, sender, dest, messages)
    assert len(frame) == 28 + sum(48 + len(m.value) for m in messages)
    got_sender, got = decode_frame(frame, cluster, dest)
    assert got_sender == sender
    assert got == with_src(messages, sender)


# ------------------------------------------------------------------------------------------------ FrameEncoder

def test_encoder_count_nbytes_and_reuse():
    enc = FrameEncoder(CLUSTER, 1, 2)
    assert (enc.count, enc.nbytes) == (0, 28)
    first = sample_messages()
    for m in first:
        enc.add(m)
    assert enc.count == 3
    assert enc.nbytes == 28 + sum(48 + len(m.value) for m in first)
    frame1 = enc.finish()
    assert len(frame1) == enc.nbytes + sum(48 + len(m.value) for m in first)
    assert (enc.count, enc.nbytes) == (0, 28)
    second = [msg(Kind.REJECT, value=b"second")]
    for m in second:
        enc.add(m)
    frame2 = enc.finish()
    assert frame1 == encode_frame(CLUSTER, 1, 2, first)
    assert frame2 == encode_frame(CLUSTER, 1, 2, second)
    assert decode_frame(frame2, CLUSTER, 2) == (1, with_src(second, 1))


def test_encoder_grows_and_shrinks():
    enc = FrameEncoder(CLUSTER, 1, 2)
    big = [msg(value=b"x" * 100_000) for _ in range(60)]     # ~6 MB: past the shrink threshold
    for m in big:
        enc.add(m)
    frame = enc.finish()
    assert decode_frame(frame, CLUSTER)[1] == with_src(big, 1)
    small = [msg(value=b"y")]
    enc.add(small[0])
    assert decode_frame(enc.finish(), CLUSTER)[1] == with_src(small, 1)


def test_encoder_reset_discards():
    enc = FrameEncoder(CLUSTER, 1, 2)
    enc.add(msg())
    enc.reset()
    assert enc.count == 0
    assert enc.finish() == encode_frame(CLUSTER, 1, 2, [])


def test_encoder_attributes():
    enc = FrameEncoder(U64, U16, 0)
    assert (enc.cluster_id, enc.sender, enc.dest) == (U64, U16, 0)


@pytest.mark.parametrize("sender,dest", [(-1, 0), (0, -1), (65536, 0), (0, 65536)])
def test_encoder_refuses_bad_node_ids(sender, dest):
    with pytest.raises(ValueError):
        FrameEncoder(CLUSTER, sender, dest)
    with pytest.raises(ValueError):
        encode_frame(CLUSTER, sender, dest, [])


@pytest.mark.parametrize("kind", [0, KIND_MAX + 1, 255])
def test_encoder_refuses_unknown_kinds_and_stays_unchanged(kind):
    enc = FrameEncoder(CLUSTER, 1, 2)
    enc.add(msg())
    before = enc.nbytes
    with pytest.raises(ValueError):
        enc.add(Message(kind))
    assert (enc.count, enc.nbytes) == (1, before)
    assert enc.finish() == encode_frame(CLUSTER, 1, 2, [msg()])
    with pytest.raises(ValueError):
        encode_frame(CLUSTER, 1, 2, [msg(), Message(kind)])


def test_encoder_type_errors():
    enc = FrameEncoder(CLUSTER, 1, 2)
    with pytest.raises(TypeError):
        enc.add(None)
    with pytest.raises(TypeError):
        enc.add((1, 2, 3))
    with pytest.raises(TypeError):
        enc.add(Message(Kind.ACCEPT, value=None))
    with pytest.raises(TypeError):
        encode_frame(CLUSTER, 1, 2, [msg(), "not a message"])
    with pytest.raises(TypeError):
        encode_frame(CLUSTER, 1, 2, [Message(Kind.ACCEPT, value=None)])
    assert enc.count == 0


def test_encoder_frame_limit_raises_frame_too_large_and_leaves_state():
    enc = FrameEncoder(CLUSTER, 1, 2, max_frame_bytes=200)
    enc.add(msg(value=b"a" * 100))            # 148 bytes of body
    err = raises_exactly(FrameTooLarge, enc.add, msg(value=b"b" * 10))
    assert "200" in str(err)
    assert enc.count == 1
    enc.add(msg(value=b"c" * 4))              # exactly 200
    assert enc.nbytes == 228
    frame = enc.finish()
    assert decode_frame(frame, CLUSTER, max_frame_bytes=200)[1][1].value == b"c" * 4


# ------------------------------------------------------------------------------------------------ decode errors

def valid_frame(messages=None, cluster=CLUSTER, sender=1, dest=2):
    return encode_frame(cluster, sender, dest, sample_messages() if messages is None else messages)


@pytest.mark.parametrize("length", range(0, 28))
def test_shorter_than_header_is_truncated(length):
    frame = valid_frame()
    raises_exactly(FrameTruncated, decode_frame, frame[:length], CLUSTER)
    raises_exactly(FrameTruncated, peek_frame_header, frame[:length])


def test_shorter_than_header_wins_over_bad_magic():
    raises_exactly(FrameTruncated, decode_frame, b"XX\x09", CLUSTER)


@pytest.mark.parametrize("magic", [b"XX", b"PY", b"px", b"\0\0"])
def test_wrong_magic(magic):
    frame = reseal(magic + valid_frame()[2:])
    err = raises_exactly(MalformedFrame, decode_frame, frame, CLUSTER)
    assert "magic" in str(err)
    raises_exactly(MalformedFrame, peek_frame_header, frame)


def test_wrong_magic_wins_over_version():
    frame = reference_frame(b"", 0, magic=b"QX", version=7)
    raises_exactly(MalformedFrame, decode_frame, frame, CLUSTER)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version(version):
    frame = bytearray(valid_frame())
    frame[2] = version
    frame = reseal(frame)
    err = raises_exactly(UnknownVersion, decode_frame, frame, CLUSTER)
    assert str(version) in str(err)
    raises_exactly(UnknownVersion, peek_frame_header, frame)


def test_unknown_version_wins_over_size_and_truncation():
    frame = reference_frame(b"", 0, version=2, body_len=U32)
    raises_exactly(UnknownVersion, decode_frame, frame, CLUSTER)


def test_body_length_over_limit_is_too_large_before_reading_the_body():
    # Only the 28-byte header is present and the crc is wrong: the size check must come first.
    header_only = reference_frame(b"", 1, body_len=U32, crc=0)
    err = raises_exactly(FrameTooLarge, decode_frame, header_only, CLUSTER)
    assert str(U32) in str(err)
    frame = valid_frame([msg(value=b"z" * 1000)])
    raises_exactly(FrameTooLarge, decode_frame, frame, CLUSTER, max_frame_bytes=1047)
    assert decode_frame(frame, CLUSTER, max_frame_bytes=1048)[1][0].value == b"z" * 1000


def test_default_frame_limit():
    header_only = reference_frame(b"", 0, body_len=codec.DEFAULT_MAX_FRAME_BYTES + 1, crc=0)
    raises_exactly(FrameTooLarge, decode_frame, header_only, CLUSTER)
    header_only = reference_frame(b"", 0, body_len=codec.DEFAULT_MAX_FRAME_BYTES, crc=0)
    raises_exactly(FrameTruncated, decode_frame, header_only, CLUSTER)


def test_truncated_body():
    frame = valid_frame()
    for cut in range(28, len(frame)):
        err = raises_exactly(FrameTruncated, decode_frame, frame[:cut], CLUSTER)
    assert str(len(frame)) in str(err)


@pytest.mark.parametrize("extra", [b"\0", b"junk", bytes(100)])
def test_trailing_bytes(extra):
    err = raises_exactly(MalformedFrame, decode_frame, valid_frame() + extra, CLUSTER)
    assert "trailing" in str(err)


def test_checksum_mismatch():
    frame = valid_frame()
    for pos in (24, 27, 28, 40, len(frame) - 1):
        bad = bytearray(frame)
        bad[pos] ^= 0x10
        raises_exactly(FrameChecksumError, decode_frame, bytes(bad), CLUSTER)
    # header fields are covered too
    for pos in (3, 4, 11, 12, 14, 16):
        bad = bytearray(frame)
        bad[pos] ^= 0x01
        raises_exactly(FrameChecksumError, decode_frame, bytes(bad), CLUSTER)


def test_checksum_wins_over_cluster_and_destination():
    frame = bytearray(valid_frame(cluster=CLUSTER + 1, dest=9))
    frame[-1] ^= 1
    raises_exactly(FrameChecksumError, decode_frame, bytes(frame), CLUSTER, 2)


def test_wrong_cluster():
    frame = valid_frame(cluster=CLUSTER + 1)
    err = raises_exactly(WrongCluster, decode_frame, frame, CLUSTER)
    assert str(CLUSTER + 1) in str(err) and str(CLUSTER) in str(err)
    raises_exactly(WrongCluster, decode_frame, valid_frame(cluster=0), U64)


def test_wrong_cluster_wins_over_destination():
    raises_exactly(WrongCluster, decode_frame, valid_frame(cluster=7, dest=3), CLUSTER, 4)


def test_wrong_destination():
    frame = valid_frame(dest=3)
    err = raises_exactly(MalformedFrame, decode_frame, frame, CLUSTER, 4)
    assert "addressed to node 3, this is node 4" in str(err)
    assert decode_frame(frame, CLUSTER, 3)[0] == 1
    assert decode_frame(frame, CLUSTER, -1)[0] == 1
    assert decode_frame(frame, CLUSTER)[0] == 1


def test_nonzero_frame_flags():
    frame = bytearray(valid_frame())
    frame[3] = 0x80
    err = raises_exactly(MalformedFrame, decode_frame, reseal(frame), CLUSTER)
    assert "flags" in str(err)


# -- per-message checks, inside crc-valid frames

def test_message_header_running_past_the_body():
    body = reference_message(Kind.ACCEPT, value=b"abc")
    frame = reference_frame(body + bytes(47), 2)
    raises_exactly(MalformedFrame, decode_frame, frame, CLUSTER)
    frame = reference_frame(body[:47], 1)
    raises_exactly(MalformedFrame, decode_frame, frame, CLUSTER)


def test_value_running_past_the_body():
    for declared in (4, 100, U32):
        body = reference_message(Kind.ACCEPT, value=b"abc", value_len=declared)
        err = raises_exactly(MalformedFrame, decode_frame, reference_frame(body, 1), CLUSTER)
        assert "runs past" in str(err)
    # the second message's value overruns
    body = reference_message(Kind.ACCEPT, value=b"abc") + reference_message(Kind.ACCEPT, value=b"de",
                                                                             value_len=3)
    err = raises_exactly(MalformedFrame, decode_frame, reference_frame(body, 2), CLUSTER)
    assert "message 1 at body offset 51" in str(err)


@pytest.mark.parametrize("kind", [0, KIND_MAX + 1, 128, 255])
def test_unknown_kind(kind):
    body = reference_message(Kind.ACCEPT) + reference_message(kind, value=b"x")
    err = raises_exactly(MalformedFrame, decode_frame, reference_frame(body, 2), CLUSTER)
    assert "kind %d" % kind in str(err)


def test_value_over_the_value_limit():
    body = reference_message(Kind.ACCEPT, value=b"x" * 101)
    frame = reference_frame(body, 1)
    err = raises_exactly(FrameTooLarge, decode_frame, frame, CLUSTER, max_value_bytes=100)
    assert "101" in str(err) and "100" in str(err)
    assert decode_frame(frame, CLUSTER, max_value_bytes=101)[1][0].value == b"x" * 101


def test_default_value_limit():
    value = b"\1" * (codec.DEFAULT_MAX_VALUE_BYTES + 1)
    frame = encode_frame(CLUSTER, 1, 2, [msg(value=value)])
    raises_exactly(FrameTooLarge, decode_frame, frame, CLUSTER)


@pytest.mark.parametrize("inc", [1, 0x100, U16])
def test_group_incarnation_round_trips(inc):
    body = reference_message(Kind.ACCEPT, reserved=inc)
    _, [m] = decode_frame(reference_frame(body, 1), CLUSTER)
    assert m.inc == inc
    again = encode_frame(CLUSTER, 1, 0, [m])
    assert decode_frame(again, CLUSTER)[1][0].inc == inc


def test_count_larger_than_messages():
    body = reference_message(Kind.ACCEPT, value=b"a" * 60)
    raises_exactly(MalformedFrame, decode_frame, reference_frame(body, 2), CLUSTER)
    raises_exactly(MalformedFrame, decode_frame, reference_frame(body, U32), CLUSTER)
    raises_exactly(MalformedFrame, decode_frame, reference_frame(b"", 1), CLUSTER)


def test_count_smaller_than_messages_leaves_bytes():
    body = reference_message(Kind.ACCEPT) + reference_message(Kind.ACCEPTED)
    err = raises_exactly(MalformedFrame, decode_frame, reference_frame(body, 1), CLUSTER)
    assert "left" in str(err)
    raises_exactly(MalformedFrame, decode_frame, reference_frame(body, 0), CLUSTER)
    raises_exactly(MalformedFrame, decode_frame, reference_frame(body + b"\0", 2), CLUSTER)


def test_one_bad_message_rejects_the_whole_frame():
    good = [msg(Kind.ACCEPT, instance=i) for i in range(5)]
    body = b"".join(reference_message(m.kind, m.group, m.instance, m.ballot, m.mark, m.aux, m.chain, m.value)
                    for m in good)
    assert decode_frame(reference_frame(body, 5), CLUSTER)[1] == with_src(good, 1)
    raises_exactly(MalformedFrame, decode_frame, reference_frame(body + reference_message(0), 6), CLUSTER)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_flipping_any_byte_is_detected(mask):
    frame = valid_frame()
    for pos in range(len(frame)):
        bad = bytearray(frame)
        bad[pos] ^= mask
        with pytest.raises(FrameError):
            decode_frame(bytes(bad), CLUSTER, 2)


def test_peek_frame_header():
    frame = valid_frame(cluster=U64, sender=U16, dest=0)
    hdr = peek_frame_header(frame)
    assert hdr["version"] == 1
    assert hdr["cluster_id"] == U64
    assert hdr["sender"] == U16
    assert hdr["dest"] == 0
    assert hdr["count"] == 3
    assert hdr["body_len"] == len(frame) - 28
    assert peek_frame_header(frame[:28]) == hdr          # the header alone is enough


# ------------------------------------------------------------------------------------------------ fuzzing

def decode_or_frame_error(data, **kwargs):
    try:
        decode_frame(data, CLUSTER, 2, **kwargs)
    except FrameError:
        return False
    return True


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data):
    decode_or_frame_error(data)
    decode_or_frame_error(b"PX\x01" + data)
    try:
        peek_frame_header(data)
    except FrameError:
        pass


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 40), st.integers(0, 3))
def test_fuzz_arbitrary_bodies_in_valid_frames(body, count, extra):
    # crc-valid frames around arbitrary bodies: exercises every per-message check
    frame = reference_frame(body, count)
    accepted = decode_or_frame_error(frame, max_value_bytes=200)
    if accepted:
        _, got = decode_frame(frame, CLUSTER, max_value_bytes=200)
        assert encode_frame(CLUSTER, 1, 2, got) == frame      # only canonical encodings decode
    assert not decode_or_frame_error(frame + bytes(extra + 1))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(message_strategy, min_size=1, max_size=6), st.data())
def test_fuzz_mutations_and_truncations_of_valid_frames(messages, data):
    frame = bytearray(encode_frame(CLUSTER, 1, 2, messages))
    n_edits = data.draw(st.integers(1, 6))
    for _ in range(n_edits):
        op = data.draw(st.sampled_from(["set", "xor", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, max(len(frame) - 1, 0)))
        byte = data.draw(st.integers(0, 255))
        if op == "set" and frame:
            frame[pos] = byte
        elif op == "xor" and frame:
            frame[pos] ^= byte or 1
        elif op == "insert":
            frame[pos:pos] = bytes([byte])
        elif op == "delete" and frame:
            del frame[pos]
        elif op == "truncate":
            del frame[pos:]
    decode_or_frame_error(bytes(frame))
    # the same damage with the body length and crc repaired reaches the per-message parser
    if len(frame) >= 28 and data.draw(st.booleans()):
        fixed = reseal(set_body_len(frame, len(frame) - 28))
        if decode_or_frame_error(fixed):
            _, got = decode_frame(fixed, CLUSTER)
            assert encode_frame(CLUSTER, peek_frame_header(fixed)["sender"], 2, got) == fixed


# ------------------------------------------------------------------------------------------------ entry lists

def test_entries_layout():
    entries = [(0x0102030405060708, 0x1112131415161718, b"abc"), (0, 0, b"")]
    expected = (struct.pack("<I", 2) + struct.pack("<QQI", *entries[0][:2], 3) + b"abc"
                + struct.pack("<QQI", 0, 0, 0))
    assert encode_entries(entries) == expected
    assert encode_entries([]) == b"\0\0\0\0"


def test_entries_round_trip():
    entries = [(0, 0, b""), (U64, U64, b"x" * 1000), (5, 7, bytes(range(256)))]
    assert decode_entries(encode_entries(entries)) == entries
    assert decode_entries(encode_entries([])) == []
    assert decode_entries(bytearray(encode_entries(entries))) == entries
    assert decode_entries(memoryview(encode_entries(entries))) == entries
    assert encode_entries(iter(entries)) == encode_entries(entries)
    assert encode_entries([list(e) for e in entries]) == encode_entries(entries)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, U64), st.integers(0, U64), st.binary(max_size=100)), max_size=20))
def test_entries_round_trip_property(entries):
    data = encode_entries(entries)
    assert len(data) == 4 + sum(20 + len(v) for _, _, v in entries)
    assert decode_entries(data) == entries


def test_entries_malformed():
    data = encode_entries([(1, 2, b"abc"), (3, 4, b"defg")])
    for cut in range(len(data)):
        raises_exactly(MalformedFrame, decode_entries, data[:cut])
    raises_exactly(MalformedFrame, decode_entries, data + b"\0")
    # count larger / smaller than the entries present
    raises_exactly(MalformedFrame, decode_entries, struct.pack("<I", 3) + data[4:])
    raises_exactly(MalformedFrame, decode_entries, struct.pack("<I", 1) + data[4:])
    raises_exactly(MalformedFrame, decode_entries, struct.pack("<I", U32) + data[4:])
    raises_exactly(MalformedFrame, decode_entries, struct.pack("<I", 0) + data[4:])
    # a value length running past the end
    bad = bytearray(data)
    struct.pack_into("<I", bad, 4 + 16, 100)
    raises_exactly(MalformedFrame, decode_entries, bytes(bad))


def test_entries_type_errors():
    with pytest.raises(TypeError):
        encode_entries([(1, 2, "text")])
    with pytest.raises((TypeError, ValueError)):
        encode_entries([(1, 2)])
    with pytest.raises(OverflowError):
        encode_entries([(-1, 2, b"")])
    with pytest.raises(TypeError):
        decode_entries("text")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_entries_fuzz(data):
    try:
        entries = decode_entries(data)
    except FrameError as exc:
        assert type(exc) is MalformedFrame
    else:
        assert encode_entries(entries) == data


# ------------------------------------------------------------------------------------------------ batches

def test_batch_layout():
    entries = [(0x0102, 0x1112131415161718, b"abc"), (U16, 0, b"")]
    expected = (b"\x01" + struct.pack("<I", 2) + struct.pack("<HQI", 0x0102, 0x1112131415161718, 3) + b"abc"
                + struct.pack("<HQI", U16, 0, 0))
    assert encode_batch(entries) == expected


def test_empty_batch_is_empty_bytes():
    assert encode_batch([]) == b""
    assert decode_batch(b"") == []
    assert BatchBuilder().finish() == b""
    assert decode_batch(b"\x01\0\0\0\0") == []


def test_batch_round_trip():
    entries = [(0, 0, b""), (U16, U64, b"p" * 5000), (3, 4, b"\0\1\2")]
    assert decode_batch(encode_batch(entries)) == entries
    assert decode_batch(bytearray(encode_batch(entries))) == entries
    assert decode_batch(memoryview(encode_batch(entries))) == entries
    assert encode_batch(iter(entries)) == encode_batch(entries)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, U16), st.integers(0, U64), st.binary(max_size=100)), max_size=20))
def test_batch_round_trip_property(entries):
    data = encode_batch(entries)
    assert decode_batch(data) == entries
    b = BatchBuilder()
    for origin, seq, payload in entries:
        b.add(origin, seq, payload)
    assert b.count == len(entries)
    assert b.nbytes == len(data)
    assert b.finish() == data


def test_batch_builder_reuse_and_bytes_like_payloads():
    b = BatchBuilder()
    assert (b.count, b.nbytes) == (0, 0)
    b.add(1, 2, bytearray(b"ab"))
    b.add(3, 4, memoryview(b"xcdx")[1:3])
    assert (b.count, b.nbytes) == (2, 5 + 2 * 16)
    assert b.finish() == encode_batch([(1, 2, b"ab"), (3, 4, b"cd")])
    assert (b.count, b.nbytes) == (0, 0)
    b.add(5, 6, b"z" * 5_000_000)               # grows past the shrink threshold
    assert decode_batch(b.finish()) == [(5, 6, b"z" * 5_000_000)]
    b.add(7, 8, b"small")
    assert decode_batch(b.finish()) == [(7, 8, b"small")]


def test_batch_builder_errors():
    b = BatchBuilder()
    with pytest.raises(ValueError):
        b.add(-1, 0, b"")
    with pytest.raises(ValueError):
        b.add(65536, 0, b"")
    with pytest.raises(OverflowError):
        b.add(1, -1, b"")
    with pytest.raises(TypeError):
        b.add(1, 1, "text")
    assert b.count == 0


def test_batch_unknown_version():
    data = bytearray(encode_batch([(1, 2, b"abc")]))
    for version in (0, 2, 255):
        data[0] = version
        raises_exactly(UnknownVersion, decode_batch, bytes(data))
    raises_exactly(UnknownVersion, decode_batch, b"\x02")


def test_batch_malformed():
    data = encode_batch([(1, 2, b"abc"), (3, 4, b"defg")])
    for cut in range(1, len(data)):
        raises_exactly(MalformedFrame, decode_batch, data[:cut])
    raises_exactly(MalformedFrame, decode_batch, data + b"\0")
    raises_exactly(MalformedFrame, decode_batch, b"\x01" + struct.pack("<I", 3) + data[5:])
    raises_exactly(MalformedFrame, decode_batch, b"\x01" + struct.pack("<I", 1) + data[5:])
    raises_exactly(MalformedFrame, decode_batch, b"\x01" + struct.pack("<I", U32) + data[5:])
    bad = bytearray(data)
    struct.pack_into("<I", bad, 5 + 10, 4)
    raises_exactly(MalformedFrame, decode_batch, bytes(bad))


def test_batch_type_errors():
    with pytest.raises(TypeError):
        encode_batch([(1, 2, "text")])
    with pytest.raises(OverflowError):
        encode_batch([(65536, 2, b"")])
    with pytest.raises(TypeError):
        decode_batch(17)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_batch_fuzz(data):
    try:
        entries = decode_batch(data)
    except FrameError as exc:
        assert type(exc) in (MalformedFrame, UnknownVersion)
    else:
        assume(data != b"\x01\0\0\0\0")   # the one non-canonical form: an explicit empty batch
        assert encode_batch(entries) == data


def test_batch_inside_a_frame_round_trip():
    batch = encode_batch([(1, 10, b"set x=1"), (2, 11, b"set y=2")])
    entries = encode_entries([(100, 7, batch), (101, 7, b"")])
    frame = encode_frame(CLUSTER, 1, 2, [msg(Kind.PROMISE, value=entries), msg(Kind.ACCEPT, value=batch)])
    _, (promise, accept) = decode_frame(frame, CLUSTER, 2)
    (i0, b0, v0), (i1, b1, v1) = decode_entries(promise.value)
    assert (i0, b0, i1, b1, v1) == (100, 7, 101, 7, b"")
    assert decode_batch(v0) == decode_batch(accept.value) == [(1, 10, b"set x=1"), (2, 11, b"set y=2")]

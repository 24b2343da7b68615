"""crc32c: known vectors, hardware/portable agreement, seed chaining."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxos_core.wire.checksum import crc32c, crc32c_portable, hardware_accelerated

BOTH = [crc32c, crc32c_portable]

# RFC 3720 (iSCSI) appendix B.4 test vectors and the customary "check" value.
VECTORS = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
]


@pytest.mark.parametrize("fn", BOTH, ids=["dispatch", "portable"])
@pytest.mark.parametrize("data,expected", VECTORS, ids=[str(i) for i in range(len(VECTORS))])
def test_known_vectors(fn, data, expected):
    assert fn(data) == expected


@pytest.mark.parametrize("fn", BOTH, ids=["dispatch", "portable"])
def test_bytes_like_inputs(fn):
    data = b"123456789"
    assert fn(bytearray(data)) == 0xE3069283
    assert fn(memoryview(data)) == 0xE3069283
    assert fn(memoryview(b"xx" + data + b"yy")[2:-2]) == 0xE3069283


@pytest.mark.parametrize("fn", BOTH, ids=["dispatch", "portable"])
def test_empty_input_returns_seed(fn):
    assert fn(b"", 0) == 0
    assert fn(b"", 0x12345678) == 0x12345678


def test_hardware_flag_is_boolean():
    assert hardware_accelerated() in (True, False)


def test_hardware_and_portable_agree_on_many_lengths_and_alignments():
    rng = random.Random(1234)
    buf = bytearray(rng.getrandbits(8) for _ in range(5000))
    view = memoryview(buf)
    lengths = list(range(0, 130)) + [255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097 - 16]
    for offset in range(0, 16):
        for length in lengths:
            piece = view[offset:offset + length]
            assert crc32c(piece) == crc32c_portable(piece), (offset, length)
            seed = rng.getrandbits(32)
            assert crc32c(piece, seed) == crc32c_portable(piece, seed), (offset, length, seed)


def test_large_buffer_agreement():
    rng = random.Random(99)
    data = rng.randbytes(1 << 20)
    assert crc32c(data) == crc32c_portable(data)


@pytest.mark.parametrize("fn", BOTH, ids=["dispatch", "portable"])
def test_seed_chaining_examples(fn):
    data = b"The quick brown fox jumps over the lazy dog" * 7
    whole = fn(data)
    for cut in range(len(data) + 1):
        assert fn(data[cut:], fn(data[:cut])) == whole
    # three pieces
    assert fn(data[200:], fn(data[50:200], fn(data[:50]))) == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=600))
def test_seed_chaining_property(a, b):
    assert crc32c(b, crc32c(a)) == crc32c(a + b)
    assert crc32c_portable(b, crc32c_portable(a)) == crc32c_portable(a + b)
    assert crc32c(a + b) == crc32c_portable(a + b)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.integers(0, 299), st.integers(0, 7))
def test_single_bit_flip_changes_crc(data, pos, bit):
    pos %= len(data)
    flipped = bytearray(data)
    flipped[pos] ^= 1 << bit
    assert crc32c(bytes(flipped)) != crc32c(data)

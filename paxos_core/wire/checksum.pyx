# cython: language_level=3
"""crc32c (Castagnoli) checksums for frames and storage records.

The C implementation lives in csrc/crc32c.c (SSE4.2 instruction when the CPU has it, tables otherwise);
its extern declarations are in pxd/crc32c.pxd.
"""
from libc.stdint cimport uint32_t

cimport crc32c as _c

# Build the lookup tables now, at import, rather than racing on first use.
_c.pxc_crc32c_portable(0, b"", 0)


cdef uint32_t crc32c_buf(const unsigned char *data, size_t length, uint32_t seed=0) noexcept nogil:
    return _c.pxc_crc32c(seed, data, length)


def crc32c(data, uint32_t seed=0):
    """crc32c of a bytes-like object; pass the previous result as ``seed`` to continue a checksum."""
    cdef const unsigned char[::1] view = data
    if view.shape[0] == 0:
        return seed
    return _c.pxc_crc32c(seed, &view[0], view.shape[0])


def crc32c_portable(data, uint32_t seed=0):
    """The portable table path, whatever the CPU (for tests that compare both paths)."""
    cdef const unsigned char[::1] view = data
    if view.shape[0] == 0:
        return seed
    return _c.pxc_crc32c_portable(seed, &view[0], view.shape[0])


def hardware_accelerated():
    """True when the SSE4.2 crc32 instruction is in use."""
    return bool(_c.pxc_crc32c_hardware())

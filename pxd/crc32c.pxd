# Extern declarations for the C crc32c in csrc/crc32c.c (no Python objects here).
from libc.stdint cimport uint32_t

cdef extern from "crc32c.h" nogil:
    uint32_t pxc_crc32c(uint32_t crc, const void *data, size_t length)
    uint32_t pxc_crc32c_portable(uint32_t crc, const void *data, size_t length)
    int pxc_crc32c_hardware()

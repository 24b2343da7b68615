from libc.stdint cimport uint32_t

cdef uint32_t crc32c_buf(const unsigned char *data, size_t length, uint32_t seed=*) noexcept nogil

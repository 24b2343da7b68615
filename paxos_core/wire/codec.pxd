# C-level interface of paxos_core.wire.codec (see codec.pyx for the wire layouts and the error contract).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from paxos_core.wire.message cimport Message

# Layout constants as C constants (the Python module exposes them as FRAME_HEADER_SIZE etc.).
cdef enum:
    CODEC_FRAME_HEADER_SIZE = 28
    CODEC_MESSAGE_HEADER_SIZE = 48
    CODEC_FRAME_VERSION = 1
    CODEC_BATCH_VERSION = 1
    CODEC_BATCH_HEADER_SIZE = 5            # u8 version, u32 count
    CODEC_BATCH_ENTRY_HEADER_SIZE = 14     # u16 origin, u64 seq, u32 len
    CODEC_ENTRIES_HEADER_SIZE = 4          # u32 count
    CODEC_ENTRY_HEADER_SIZE = 20           # u64 instance, u64 ballot, u32 len
    CODEC_DEFAULT_MAX_FRAME_BYTES = 67108864    # 64 MiB
    CODEC_DEFAULT_MAX_VALUE_BYTES = 16777216    # 16 MiB

# A growable byte buffer owned by one encoder object (PyMem_* memory).
cdef struct GrowBuf:
    unsigned char *data
    size_t length
    size_t capacity


cdef class FrameEncoder:
    cdef GrowBuf buf             # header space (28 bytes) followed by the body so far
    cdef uint32_t n              # messages added since the last finish()
    cdef uint64_t max_body       # refuse to grow the body past this many bytes (<= 0xFFFFFFFF)
    cdef readonly uint64_t cluster_id
    cdef readonly uint16_t sender
    cdef readonly uint16_t dest

    cpdef add(self, Message m)
    cpdef bytes finish(self)
    cpdef reset(self)
    # Append one message given as fields (no Message object needed); flags and the value are copied.
    cdef int add_fields(self, uint8_t kind, uint8_t flags, uint16_t inc, uint32_t group, uint64_t instance,
                        uint64_t ballot, uint64_t mark, uint64_t aux, uint32_t chain, const unsigned char *value,
                        size_t value_len) except -1


cdef class BatchBuilder:
    cdef GrowBuf buf             # batch header space (5 bytes) followed by the entries so far
    cdef uint32_t n

    cpdef add(self, int origin, uint64_t seq, payload)
    cpdef bytes finish(self)
    cdef int add_raw(self, uint16_t origin, uint64_t seq, const unsigned char *payload, size_t length) except -1


cpdef bytes encode_frame(uint64_t cluster_id, int sender, int dest, messages)
cpdef tuple decode_frame(data, uint64_t expected_cluster, int expected_dest=*,
                         uint64_t max_frame_bytes=*, uint64_t max_value_bytes=*)
# The same as decode_frame on a raw buffer; `data` must stay valid for the duration of the call.
cdef tuple decode_frame_ptr(const unsigned char *data, size_t length, uint64_t expected_cluster,
                            int expected_dest, uint64_t max_frame_bytes, uint64_t max_value_bytes)
cpdef dict peek_frame_header(data)

cpdef bytes encode_entries(entries)
cpdef list decode_entries(data)
cdef list decode_entries_ptr(const unsigned char *data, size_t length)

cpdef bytes encode_batch(entries)
cpdef list decode_batch(data)
cpdef list proposals_of(bytes value)
cdef list decode_batch_ptr(const unsigned char *data, size_t length)

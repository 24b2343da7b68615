# cython: language_level=3
"""The wire codec: frames of protocol messages, entry lists and proposal batches.

All integers are little-endian.

Frame
-----
One frame carries any number of messages, possibly of many groups, from one node to ONE destination node::

    offset size field
    0      2    magic b"PX"
    2      1    format version = 1 (FRAME_VERSION)
    3      1    frame flags = 0
    4      8    cluster id (u64)
    12     2    sender node id (u16)
    14     2    destination node id (u16)
    16     4    message count (u32)
    20     4    body length in bytes (u32): the bytes after the 28-byte header
    24     4    crc32c over bytes [0, 24) followed by the body
    28     ...  body: the messages back to back

Message (inside the body): a fixed 48-byte header, then the value::

    0   1  kind (u8, 1..KIND_MAX)      1  1  flags (u8)      2  2  group incarnation (u16)
    4   4  group (u32)
    8   8  instance (u64)
    16  8  ballot (u64)
    24  8  mark (u64)
    32  8  aux (u64)
    40  4  chain (u32)
    44  4  value length (u32)
    48  .. value bytes

The sender node id of the frame becomes ``Message.src`` of every decoded message.

Entry list (the value of PROMISE and CATCHUP_REPLY)::

    u32 count, then per entry: u64 instance, u64 ballot, u32 length, value bytes

Proposal batch (the value of one Paxos instance)::

    u8 version = 1, u32 count, then per entry: u16 origin, u64 seq, u32 length, payload bytes

The empty batch (a no-op instance) is the empty byte string: ``encode_batch([]) == b""`` and
``decode_batch(b"") == []``. A version-1 batch with count 0 also decodes to ``[]``.

A log value is a batch, a no-op, or a membership ADOPT (first byte 0xC0, core/voters.pyx), which holds no
proposals: ``proposals_of(value)`` gives a chosen value's proposals in every case (``[]`` for the last two).

Error contract
--------------
Decoding is all-or-nothing: either the whole input is valid and everything is returned, or an exception is
raised and nothing is. Decoders raise only :class:`~paxos_core.errors.FrameError` subclasses on bad input
(plus ``TypeError`` when the argument is not a bytes-like object at all):

``FrameTruncated``
    The input is shorter than the 28-byte frame header, or shorter than the header plus the body length the
    header declares (the frame was cut short; the rest may still be in transit).
``MalformedFrame``
    The input is internally inconsistent: bad magic, trailing bytes after the body, a frame addressed to
    another node, non-zero frame flags, and, inside a checksum-valid body, a message header or value that
    runs past the end of the body, an unknown message kind, a message count that
    does not match the body, or leftover body bytes. Entry lists and batches raise it for truncation,
    trailing bytes and count mismatches.
``UnknownVersion``
    The frame's format version (or a batch's version byte) is not one this build understands.
``FrameTooLarge``
    The declared body length exceeds ``max_frame_bytes`` (checked before the body is read or checksummed),
    or one message value exceeds ``max_value_bytes``. Encoders raise it when a value does not fit a u32
    length or a frame body would exceed its limit (at most 4 GiB - 1 bytes).
``FrameChecksumError``
    The crc32c does not match: corruption in transit, or a forged frame.
``WrongCluster``
    The frame is intact but was sent by a node of another cluster.

Frame checks run in this order: header length, magic, version, body length limit, total length, checksum,
cluster id, destination, frame flags, then each message in turn, then the count and leftover bytes.

Encoders raise ``TypeError`` for an object that is not a Message (or a value that is not bytes) and
``ValueError`` for a message kind outside 1..KIND_MAX or a node id outside 0..65535: a frame the peers would
refuse is never produced.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

cimport cython

from paxos_core.wire.checksum cimport crc32c_buf
from paxos_core.wire.message cimport KIND_MAX, Message, make_message

from paxos_core.errors import (FrameChecksumError, FrameTooLarge, FrameTruncated, MalformedFrame,
                               UnknownVersion, WrongCluster)

FRAME_HEADER_SIZE = CODEC_FRAME_HEADER_SIZE
MESSAGE_HEADER_SIZE = CODEC_MESSAGE_HEADER_SIZE
FRAME_VERSION = CODEC_FRAME_VERSION
BATCH_VERSION = CODEC_BATCH_VERSION
DEFAULT_MAX_FRAME_BYTES = CODEC_DEFAULT_MAX_FRAME_BYTES
DEFAULT_MAX_VALUE_BYTES = CODEC_DEFAULT_MAX_VALUE_BYTES
MAX_BODY_BYTES = 0xFFFFFFFF

__all__ = [
    "FRAME_HEADER_SIZE", "MESSAGE_HEADER_SIZE", "FRAME_VERSION", "BATCH_VERSION", "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_VALUE_BYTES", "MAX_BODY_BYTES", "FrameEncoder", "BatchBuilder", "encode_frame",
    "decode_frame", "peek_frame_header", "encode_entries", "decode_entries", "encode_batch", "decode_batch",
    "proposals_of",
]

cdef uint64_t U32_MAX = 0xFFFFFFFF
cdef size_t INITIAL_CAPACITY = 4096
cdef size_t SHRINK_ABOVE = 4 * 1024 * 1024     # finish() gives back buffers that grew past this


# ---------------------------------------------------------------------------------------- little-endian access
# Written byte by byte so the result does not depend on the host's byte order; gcc/clang turn each of these
# into a single (unaligned) load or store on little-endian machines.

cdef inline uint16_t ld16(const unsigned char *p) noexcept nogil:
    return <uint16_t>((<uint16_t>p[0]) | (<uint16_t>p[1] << 8))


cdef inline uint32_t ld32(const unsigned char *p) noexcept nogil:
    return ((<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24))


cdef inline uint64_t ld64(const unsigned char *p) noexcept nogil:
    return ((<uint64_t>p[0]) | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16) | (<uint64_t>p[3] << 24)
            | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40) | (<uint64_t>p[6] << 48)
            | (<uint64_t>p[7] << 56))


cdef inline void st16(unsigned char *p, uint16_t v) noexcept nogil:
    p[0] = <unsigned char>v
    p[1] = <unsigned char>(v >> 8)


cdef inline void st32(unsigned char *p, uint32_t v) noexcept nogil:
    p[0] = <unsigned char>v
    p[1] = <unsigned char>(v >> 8)
    p[2] = <unsigned char>(v >> 16)
    p[3] = <unsigned char>(v >> 24)


cdef inline void st64(unsigned char *p, uint64_t v) noexcept nogil:
    p[0] = <unsigned char>v
    p[1] = <unsigned char>(v >> 8)
    p[2] = <unsigned char>(v >> 16)
    p[3] = <unsigned char>(v >> 24)
    p[4] = <unsigned char>(v >> 32)
    p[5] = <unsigned char>(v >> 40)
    p[6] = <unsigned char>(v >> 48)
    p[7] = <unsigned char>(v >> 56)


# ---------------------------------------------------------------------------------------- growable buffer

cdef int gb_reserve(GrowBuf *b, size_t extra) except -1:
    """Make room for `extra` more bytes after b.length."""
    if extra <= b.capacity - b.length:
        return 0
    cdef size_t limit = <size_t>(-1) >> 1
    if extra > limit - b.length:
        raise MemoryError("buffer of %d + %d bytes is too large" % (b.length, extra))
    cdef size_t need = b.length + extra
    cdef size_t cap = b.capacity if b.capacity else INITIAL_CAPACITY
    while cap < need:
        cap = cap * 2 if cap <= limit // 2 else limit
    cdef unsigned char *p = <unsigned char *>PyMem_Realloc(b.data, cap)
    if p == NULL:
        raise MemoryError("cannot grow an encoder buffer to %d bytes" % cap)
    b.data = p
    b.capacity = cap
    return 0


cdef void gb_shrink(GrowBuf *b) noexcept:
    """After a very large frame or batch, give the memory back (keeping a small buffer)."""
    cdef unsigned char *p
    if b.capacity > SHRINK_ABOVE and b.length <= INITIAL_CAPACITY:
        p = <unsigned char *>PyMem_Realloc(b.data, INITIAL_CAPACITY)
        if p != NULL:
            b.data = p
            b.capacity = INITIAL_CAPACITY


cdef void gb_free(GrowBuf *b) noexcept:
    PyMem_Free(b.data)
    b.data = NULL
    b.length = 0
    b.capacity = 0


# ---------------------------------------------------------------------------------------- frame encoding

cdef inline int check_node(int node, str what) except -1:
    if node < 0 or node > 0xFFFF:
        raise ValueError("%s node id %d is outside 0..65535" % (what, node))
    return 0


cdef inline int check_kind(uint8_t kind) except -1:
    if kind == 0 or kind > KIND_MAX:
        raise ValueError("cannot encode message kind %d: valid kinds are 1..%d" % (kind, KIND_MAX))
    return 0


cdef inline void write_message_header(unsigned char *q, uint8_t kind, uint8_t flags, uint16_t inc,
                                      uint32_t group, uint64_t instance, uint64_t ballot, uint64_t mark,
                                      uint64_t aux, uint32_t chain, uint32_t value_len) noexcept nogil:
    q[0] = kind
    q[1] = flags
    st16(q + 2, inc)
    st32(q + 4, group)
    st64(q + 8, instance)
    st64(q + 16, ballot)
    st64(q + 24, mark)
    st64(q + 32, aux)
    st32(q + 40, chain)
    st32(q + 44, value_len)


cdef inline void seal_frame(unsigned char *p, uint64_t cluster_id, uint16_t sender, uint16_t dest,
                            uint32_t count, uint32_t body_len) noexcept nogil:
    """Fill in the 28-byte header in front of a body of `body_len` bytes, checksum included."""
    p[0] = b'P'
    p[1] = b'X'
    p[2] = CODEC_FRAME_VERSION
    p[3] = 0
    st64(p + 4, cluster_id)
    st16(p + 12, sender)
    st16(p + 14, dest)
    st32(p + 16, count)
    st32(p + 20, body_len)
    cdef uint32_t crc = crc32c_buf(p, 24)
    crc = crc32c_buf(p + CODEC_FRAME_HEADER_SIZE, body_len, crc)
    st32(p + 24, crc)


cdef class FrameEncoder:
    """Builds one frame for one destination, message by message, into an internal buffer.

    ``add(m)`` appends a message, ``finish()`` returns the complete frame and resets the encoder so it can
    build the next one (for the same sender and destination). ``count`` and ``nbytes`` report the messages
    and the frame size so far (``nbytes`` is the length ``finish()`` would return). ``max_frame_bytes``
    bounds the body length (at most and by default 4 GiB - 1); ``add`` raises FrameTooLarge rather than
    exceed it, leaving the encoder unchanged.
    """

    def __cinit__(self, *args, **kwargs):
        self.buf.data = NULL
        self.buf.length = 0
        self.buf.capacity = 0
        gb_reserve(&self.buf, INITIAL_CAPACITY)
        self.buf.length = CODEC_FRAME_HEADER_SIZE
        self.n = 0
        self.max_body = U32_MAX

    def __init__(self, uint64_t cluster_id, int sender, int dest, uint64_t max_frame_bytes=U32_MAX):
        check_node(sender, "sender")
        check_node(dest, "destination")
        self.cluster_id = cluster_id
        self.sender = <uint16_t>sender
        self.dest = <uint16_t>dest
        self.max_body = max_frame_bytes if max_frame_bytes < U32_MAX else U32_MAX
        self.reset()

    def __dealloc__(self):
        gb_free(&self.buf)

    @property
    def count(self):
        """Messages added since the last finish()."""
        return self.n

    @property
    def nbytes(self):
        """Size in bytes of the frame finish() would return now (header included)."""
        return self.buf.length

    def __repr__(self):
        return "FrameEncoder(cluster=%d, %d -> %d, %d messages, %d bytes)" % (
            self.cluster_id, self.sender, self.dest, self.n, self.buf.length)

    cdef int add_fields(self, uint8_t kind, uint8_t flags, uint16_t inc, uint32_t group, uint64_t instance,
                        uint64_t ballot, uint64_t mark, uint64_t aux, uint32_t chain, const unsigned char *value,
                        size_t value_len) except -1:
        check_kind(kind)
        if value_len > U32_MAX:
            raise FrameTooLarge("a value of %d bytes does not fit the u32 value length" % value_len)
        cdef size_t body = self.buf.length - CODEC_FRAME_HEADER_SIZE
        cdef size_t size = CODEC_MESSAGE_HEADER_SIZE + value_len
        if body + size > self.max_body:
            raise FrameTooLarge("a %d-byte message does not fit a frame body of %d bytes: the limit is %d bytes"
                                % (size, body, self.max_body))
        if self.n == U32_MAX:
            raise FrameTooLarge("a frame holds at most %d messages" % U32_MAX)
        gb_reserve(&self.buf, size)
        cdef unsigned char *q = self.buf.data + self.buf.length
        write_message_header(q, kind, flags, inc, group, instance, ballot, mark, aux, chain, <uint32_t>value_len)
        if value_len:
            memcpy(q + CODEC_MESSAGE_HEADER_SIZE, value, value_len)
        self.buf.length += size
        self.n += 1
        return 0

    cpdef add(self, Message m):
        """Append one message (its fields and value are copied; ``m.src`` is not sent)."""
        if m is None:
            raise TypeError("FrameEncoder.add() needs a Message, not None")
        cdef bytes value = m.value
        if value is None:
            raise TypeError("cannot encode a message whose value is None (use b\"\")")
        self.add_fields(m.kind, m.flags, m.inc, m.group, m.instance, m.ballot, m.mark, m.aux, m.chain,
                        <const unsigned char *>PyBytes_AS_STRING(value), <size_t>PyBytes_GET_SIZE(value))

    cpdef bytes finish(self):
        """The complete frame (header and checksum filled in); the encoder is then empty again."""
        cdef size_t body = self.buf.length - CODEC_FRAME_HEADER_SIZE
        seal_frame(self.buf.data, self.cluster_id, self.sender, self.dest, self.n, <uint32_t>body)
        cdef bytes out = PyBytes_FromStringAndSize(<char *>self.buf.data, <Py_ssize_t>self.buf.length)
        self.reset()
        return out

    cpdef reset(self):
        """Drop the messages added since the last finish()."""
        self.buf.length = CODEC_FRAME_HEADER_SIZE
        self.n = 0
        gb_shrink(&self.buf)


cpdef bytes encode_frame(uint64_t cluster_id, int sender, int dest, messages):
    """One frame holding `messages` (any iterable of Message), from `sender` to `dest`."""
    check_node(sender, "sender")
    check_node(dest, "destination")
    cdef list seq = messages if type(messages) is list else list(messages)
    cdef Py_ssize_t i, n = len(seq)
    cdef Message m
    cdef bytes value
    cdef size_t vlen, total = CODEC_FRAME_HEADER_SIZE
    # Pass 1: check everything and size the frame exactly (no Python code runs between the passes).
    for i in range(n):
        obj = seq[i]
        if not isinstance(obj, Message):
            raise TypeError("message %d is a %s, not a Message" % (i, type(obj).__name__))
        m = <Message>obj
        check_kind(m.kind)
        value = m.value
        if value is None:
            raise TypeError("message %d: cannot encode a value of None (use b\"\")" % i)
        vlen = <size_t>PyBytes_GET_SIZE(value)
        if vlen > U32_MAX:
            raise FrameTooLarge("message %d: a value of %d bytes does not fit the u32 value length" % (i, vlen))
        total += CODEC_MESSAGE_HEADER_SIZE + vlen
        if total - CODEC_FRAME_HEADER_SIZE > U32_MAX:
            raise FrameTooLarge("a frame body of more than %d bytes (at message %d) does not fit the u32 body "
                                "length" % (U32_MAX, i))
    if <uint64_t>n > U32_MAX:
        raise FrameTooLarge("a frame holds at most %d messages, not %d" % (U32_MAX, n))
    cdef bytes out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>total)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    cdef size_t off = CODEC_FRAME_HEADER_SIZE
    # Pass 2: write.
    for i in range(n):
        m = <Message>seq[i]
        value = m.value
        vlen = <size_t>PyBytes_GET_SIZE(value)
        if vlen > total - off or CODEC_MESSAGE_HEADER_SIZE > total - off - vlen:
            raise RuntimeError("the message list changed while it was being encoded")
        write_message_header(p + off, m.kind, m.flags, m.inc, m.group, m.instance, m.ballot, m.mark, m.aux, m.chain,
                             <uint32_t>vlen)
        off += CODEC_MESSAGE_HEADER_SIZE
        if vlen:
            memcpy(p + off, PyBytes_AS_STRING(value), vlen)
            off += vlen
    if off != total:
        raise RuntimeError("the message list changed while it was being encoded")
    seal_frame(p, cluster_id, <uint16_t>sender, <uint16_t>dest, <uint32_t>n,
               <uint32_t>(total - CODEC_FRAME_HEADER_SIZE))
    return out


# ---------------------------------------------------------------------------------------- frame decoding

cdef int check_frame_header(const unsigned char *p, size_t n) except -1:
    """Checks 1-3: header length, magic, version."""
    if n < CODEC_FRAME_HEADER_SIZE:
        raise FrameTruncated("frame of %d bytes is shorter than the %d-byte frame header"
                             % (n, CODEC_FRAME_HEADER_SIZE))
    if p[0] != b'P' or p[1] != b'X':
        raise MalformedFrame("bad frame magic %r at offset 0, expected b'PX'" % (p[:2],))
    if p[2] != CODEC_FRAME_VERSION:
        raise UnknownVersion("frame format version %d at offset 2, this build reads version %d"
                             % (p[2], CODEC_FRAME_VERSION))
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef tuple decode_frame_ptr(const unsigned char *data, size_t length, uint64_t expected_cluster,
                            int expected_dest, uint64_t max_frame_bytes, uint64_t max_value_bytes):
    check_frame_header(data, length)
    cdef size_t body_len = ld32(data + 20)
    if body_len > max_frame_bytes:
        raise FrameTooLarge("frame body of %d bytes (offset 20) exceeds the limit of %d bytes"
                            % (body_len, max_frame_bytes))
    cdef size_t frame_len = CODEC_FRAME_HEADER_SIZE + body_len
    if length < frame_len:
        raise FrameTruncated("frame truncated: the header declares a %d-byte body (%d bytes in all), got %d bytes"
                             % (body_len, frame_len, length))
    if length > frame_len:
        raise MalformedFrame("%d trailing bytes after the frame: the header declares %d bytes in all, got %d"
                             % (length - frame_len, frame_len, length))
    cdef const unsigned char *body = data + CODEC_FRAME_HEADER_SIZE
    cdef uint32_t stored = ld32(data + 24)
    cdef uint32_t computed = crc32c_buf(body, body_len, crc32c_buf(data, 24))
    if stored != computed:
        raise FrameChecksumError("frame checksum mismatch: stored crc32c 0x%08x, computed 0x%08x over %d bytes"
                                 % (stored, computed, frame_len - 4))
    cdef uint64_t cluster = ld64(data + 4)
    if cluster != expected_cluster:
        raise WrongCluster("frame from cluster %d, this node belongs to cluster %d" % (cluster, expected_cluster))
    cdef uint16_t sender = ld16(data + 12)
    cdef uint16_t dest = ld16(data + 14)
    if expected_dest >= 0 and dest != expected_dest:
        raise MalformedFrame("frame from node %d is addressed to node %d, this is node %d"
                             % (sender, dest, expected_dest))
    if data[3] != 0:
        raise MalformedFrame("unknown frame flags 0x%02x at offset 3" % data[3])
    cdef size_t count = ld32(data + 16)
    if count > body_len // CODEC_MESSAGE_HEADER_SIZE:
        raise MalformedFrame("frame declares %d messages but its %d-byte body holds at most %d"
                             % (count, body_len, body_len // CODEC_MESSAGE_HEADER_SIZE))

    cdef list messages = []
    cdef size_t i, off = 0, vlen
    cdef const unsigned char *q
    cdef uint8_t kind
    cdef Message m
    for i in range(count):
        if body_len - off < CODEC_MESSAGE_HEADER_SIZE:
            raise MalformedFrame("message %d at body offset %d: its %d-byte header runs past the %d-byte body"
                                 % (i, off, CODEC_MESSAGE_HEADER_SIZE, body_len))
        q = body + off
        vlen = ld32(q + 44)
        if vlen > body_len - off - CODEC_MESSAGE_HEADER_SIZE:
            raise MalformedFrame("message %d at body offset %d: its %d-byte value runs past the %d-byte body"
                                 % (i, off, vlen, body_len))
        kind = q[0]
        if kind == 0 or kind > KIND_MAX:
            raise MalformedFrame("message %d at body offset %d: unknown message kind %d (valid kinds are 1..%d)"
                                 % (i, off, kind, KIND_MAX))
        if vlen > max_value_bytes:
            raise FrameTooLarge("message %d at body offset %d: value of %d bytes exceeds the limit of %d bytes"
                                % (i, off, vlen, max_value_bytes))
        m = make_message(kind, ld32(q + 4), ld64(q + 8), ld64(q + 16), ld64(q + 24), ld64(q + 32), ld32(q + 40),
                         PyBytes_FromStringAndSize(<const char *>(q + CODEC_MESSAGE_HEADER_SIZE),
                                                   <Py_ssize_t>vlen))
        m.flags = q[1]
        m.inc = ld16(q + 2)
        m.src = sender
        messages.append(m)
        off += CODEC_MESSAGE_HEADER_SIZE + vlen
    if off != body_len:
        raise MalformedFrame("frame declares %d messages but %d body bytes are left after them (offset %d of %d)"
                             % (count, body_len - off, off, body_len))
    return (sender, messages)


cpdef tuple decode_frame(data, uint64_t expected_cluster, int expected_dest=-1,
                         uint64_t max_frame_bytes=CODEC_DEFAULT_MAX_FRAME_BYTES,
                         uint64_t max_value_bytes=CODEC_DEFAULT_MAX_VALUE_BYTES):
    """Decode one frame from any bytes-like object: ``(sender, [Message, ...])``.

    Every message gets ``src = sender``. Raises a FrameError subclass (see the module docstring) unless the
    whole frame is valid, comes from `expected_cluster` and, when `expected_dest` >= 0, is addressed to it.
    """
    if type(data) is bytes:
        return decode_frame_ptr(<const unsigned char *>PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data),
                                expected_cluster, expected_dest, max_frame_bytes, max_value_bytes)
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return decode_frame_ptr(<const unsigned char *>view.buf, <size_t>view.len, expected_cluster,
                                expected_dest, max_frame_bytes, max_value_bytes)
    finally:
        PyBuffer_Release(&view)


cdef dict peek_header_ptr(const unsigned char *p, size_t n):
    check_frame_header(p, n)
    return {
        "version": p[2],
        "flags": p[3],
        "cluster_id": ld64(p + 4),
        "sender": ld16(p + 12),
        "dest": ld16(p + 14),
        "count": ld32(p + 16),
        "body_len": ld32(p + 20),
        "crc": ld32(p + 24),
    }


cpdef dict peek_frame_header(data):
    """The header fields of a frame, for diagnostics, without reading the body.

    Checks the header length, magic and version (raising like decode_frame); the body is not checked, so
    only the first 28 bytes are needed. Keys: version, flags, cluster_id, sender, dest, count, body_len, crc.
    """
    if type(data) is bytes:
        return peek_header_ptr(<const unsigned char *>PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return peek_header_ptr(<const unsigned char *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)


# ---------------------------------------------------------------------------------------- entry lists

cpdef bytes encode_entries(entries):
    """``[(instance, ballot, value), ...]`` -> ``u32 count`` then ``u64 instance, u64 ballot, u32 len, value``."""
    cdef list seq = entries if type(entries) is list else list(entries)
    cdef Py_ssize_t i, n = len(seq)
    if <uint64_t>n > U32_MAX:
        raise FrameTooLarge("an entry list holds at most %d entries, not %d" % (U32_MAX, n))
    cdef size_t vlen, total = CODEC_ENTRIES_HEADER_SIZE
    cdef uint64_t instance, ballot
    for i in range(n):
        instance, ballot, value = seq[i]
        if not isinstance(value, bytes):
            raise TypeError("entry %d: value must be bytes, not %s" % (i, type(value).__name__))
        vlen = <size_t>PyBytes_GET_SIZE(value)
        if vlen > U32_MAX:
            raise FrameTooLarge("entry %d: a value of %d bytes does not fit the u32 length" % (i, vlen))
        total += CODEC_ENTRY_HEADER_SIZE + vlen
    cdef bytes out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>total)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    st32(p, <uint32_t>n)
    cdef size_t off = CODEC_ENTRIES_HEADER_SIZE
    for i in range(n):
        instance, ballot, value = seq[i]
        if not isinstance(value, bytes):
            raise RuntimeError("the entry list changed while it was being encoded")
        vlen = <size_t>PyBytes_GET_SIZE(value)
        if vlen > total - off or CODEC_ENTRY_HEADER_SIZE > total - off - vlen:
            raise RuntimeError("the entry list changed while it was being encoded")
        st64(p + off, instance)
        st64(p + off + 8, ballot)
        st32(p + off + 16, <uint32_t>vlen)
        off += CODEC_ENTRY_HEADER_SIZE
        if vlen:
            memcpy(p + off, PyBytes_AS_STRING(value), vlen)
            off += vlen
    if off != total:
        raise RuntimeError("the entry list changed while it was being encoded")
    return out


cdef list decode_entries_ptr(const unsigned char *data, size_t length):
    if length < CODEC_ENTRIES_HEADER_SIZE:
        raise MalformedFrame("entry list of %d bytes is shorter than its %d-byte count"
                             % (length, CODEC_ENTRIES_HEADER_SIZE))
    cdef size_t count = ld32(data)
    cdef size_t room = (length - CODEC_ENTRIES_HEADER_SIZE) // CODEC_ENTRY_HEADER_SIZE
    if count > room:
        raise MalformedFrame("entry list declares %d entries but its %d bytes hold at most %d"
                             % (count, length, room))
    cdef list out = []
    cdef size_t i, vlen, off = CODEC_ENTRIES_HEADER_SIZE
    cdef const unsigned char *q
    for i in range(count):
        if length - off < CODEC_ENTRY_HEADER_SIZE:
            raise MalformedFrame("entry %d at offset %d: its %d-byte header runs past the %d-byte entry list"
                                 % (i, off, CODEC_ENTRY_HEADER_SIZE, length))
        q = data + off
        vlen = ld32(q + 16)
        if vlen > length - off - CODEC_ENTRY_HEADER_SIZE:
            raise MalformedFrame("entry %d at offset %d: its %d-byte value runs past the %d-byte entry list"
                                 % (i, off, vlen, length))
        out.append((ld64(q), ld64(q + 8),
                    PyBytes_FromStringAndSize(<const char *>(q + CODEC_ENTRY_HEADER_SIZE), <Py_ssize_t>vlen)))
        off += CODEC_ENTRY_HEADER_SIZE + vlen
    if off != length:
        raise MalformedFrame("entry list declares %d entries but %d bytes are left after them (offset %d of %d)"
                             % (count, length - off, off, length))
    return out


cpdef list decode_entries(data):
    """The inverse of encode_entries: ``[(instance, ballot, value), ...]``; MalformedFrame if inconsistent."""
    if type(data) is bytes:
        return decode_entries_ptr(<const unsigned char *>PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return decode_entries_ptr(<const unsigned char *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)


# ---------------------------------------------------------------------------------------- proposal batches

cdef class BatchBuilder:
    """Builds a proposal batch entry by entry, without an intermediate list.

    ``finish()`` returns the encoded batch (``b""`` when nothing was added) and resets the builder.
    ``nbytes`` is the length finish() would return now, ``count`` the number of entries.
    """

    def __cinit__(self, *args, **kwargs):
        self.buf.data = NULL
        self.buf.length = 0
        self.buf.capacity = 0
        gb_reserve(&self.buf, INITIAL_CAPACITY)
        self.buf.length = CODEC_BATCH_HEADER_SIZE
        self.n = 0

    def __dealloc__(self):
        gb_free(&self.buf)

    @property
    def count(self):
        return self.n

    @property
    def nbytes(self):
        return self.buf.length if self.n else 0

    def __repr__(self):
        return "BatchBuilder(%d entries, %d bytes)" % (self.n, self.nbytes)

    cdef int add_raw(self, uint16_t origin, uint64_t seq, const unsigned char *payload, size_t length) except -1:
        if length > U32_MAX:
            raise FrameTooLarge("a payload of %d bytes does not fit the u32 length" % length)
        if self.n == U32_MAX:
            raise FrameTooLarge("a batch holds at most %d entries" % U32_MAX)
        cdef size_t size = CODEC_BATCH_ENTRY_HEADER_SIZE + length
        gb_reserve(&self.buf, size)
        cdef unsigned char *q = self.buf.data + self.buf.length
        st16(q, origin)
        st64(q + 2, seq)
        st32(q + 10, <uint32_t>length)
        if length:
            memcpy(q + CODEC_BATCH_ENTRY_HEADER_SIZE, payload, length)
        self.buf.length += size
        self.n += 1
        return 0

    cpdef add(self, int origin, uint64_t seq, payload):
        """Append one proposal; `payload` is any bytes-like object (copied)."""
        if origin < 0 or origin > 0xFFFF:
            raise ValueError("origin node id %d is outside 0..65535" % origin)
        if type(payload) is bytes:
            self.add_raw(<uint16_t>origin, seq, <const unsigned char *>PyBytes_AS_STRING(payload),
                         <size_t>PyBytes_GET_SIZE(payload))
            return
        cdef Py_buffer view
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            self.add_raw(<uint16_t>origin, seq, <const unsigned char *>view.buf, <size_t>view.len)
        finally:
            PyBuffer_Release(&view)

    cpdef bytes finish(self):
        """The encoded batch (b"" if empty); the builder is then empty again."""
        if self.n == 0:
            return b""
        self.buf.data[0] = CODEC_BATCH_VERSION
        st32(self.buf.data + 1, self.n)
        cdef bytes out = PyBytes_FromStringAndSize(<char *>self.buf.data, <Py_ssize_t>self.buf.length)
        self.buf.length = CODEC_BATCH_HEADER_SIZE
        self.n = 0
        gb_shrink(&self.buf)
        return out


cpdef bytes encode_batch(entries):
    """``[(origin, seq, payload), ...]`` -> ``u8 version=1, u32 count`` then ``u16 origin, u64 seq, u32 len,
    payload`` per entry; the empty list encodes to b"" (a no-op instance)."""
    cdef list seq = entries if type(entries) is list else list(entries)
    cdef Py_ssize_t i, n = len(seq)
    if n == 0:
        return b""
    if <uint64_t>n > U32_MAX:
        raise FrameTooLarge("a batch holds at most %d entries, not %d" % (U32_MAX, n))
    cdef size_t vlen, total = CODEC_BATCH_HEADER_SIZE
    cdef uint16_t origin
    cdef uint64_t number
    for i in range(n):
        origin, number, payload = seq[i]
        if not isinstance(payload, bytes):
            raise TypeError("batch entry %d: payload must be bytes, not %s" % (i, type(payload).__name__))
        vlen = <size_t>PyBytes_GET_SIZE(payload)
        if vlen > U32_MAX:
            raise FrameTooLarge("batch entry %d: a payload of %d bytes does not fit the u32 length" % (i, vlen))
        total += CODEC_BATCH_ENTRY_HEADER_SIZE + vlen
    cdef bytes out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>total)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    p[0] = CODEC_BATCH_VERSION
    st32(p + 1, <uint32_t>n)
    cdef size_t off = CODEC_BATCH_HEADER_SIZE
    for i in range(n):
        origin, number, payload = seq[i]
        if not isinstance(payload, bytes):
            raise RuntimeError("the batch changed while it was being encoded")
        vlen = <size_t>PyBytes_GET_SIZE(payload)
        if vlen > total - off or CODEC_BATCH_ENTRY_HEADER_SIZE > total - off - vlen:
            raise RuntimeError("the batch changed while it was being encoded")
        st16(p + off, origin)
        st64(p + off + 2, number)
        st32(p + off + 10, <uint32_t>vlen)
        off += CODEC_BATCH_ENTRY_HEADER_SIZE
        if vlen:
            memcpy(p + off, PyBytes_AS_STRING(payload), vlen)
            off += vlen
    if off != total:
        raise RuntimeError("the batch changed while it was being encoded")
    return out


cdef list decode_batch_ptr(const unsigned char *data, size_t length):
    if length == 0:
        return []
    if data[0] != CODEC_BATCH_VERSION:
        raise UnknownVersion("batch format version %d at offset 0, this build reads version %d"
                             % (data[0], CODEC_BATCH_VERSION))
    if length < CODEC_BATCH_HEADER_SIZE:
        raise MalformedFrame("batch of %d bytes is shorter than its %d-byte header"
                             % (length, CODEC_BATCH_HEADER_SIZE))
    cdef size_t count = ld32(data + 1)
    cdef size_t room = (length - CODEC_BATCH_HEADER_SIZE) // CODEC_BATCH_ENTRY_HEADER_SIZE
    if count > room:
        raise MalformedFrame("batch declares %d entries but its %d bytes hold at most %d" % (count, length, room))
    cdef list out = []
    cdef size_t i, vlen, off = CODEC_BATCH_HEADER_SIZE
    cdef const unsigned char *q
    for i in range(count):
        if length - off < CODEC_BATCH_ENTRY_HEADER_SIZE:
            raise MalformedFrame("batch entry %d at offset %d: its %d-byte header runs past the %d-byte batch"
                                 % (i, off, CODEC_BATCH_ENTRY_HEADER_SIZE, length))
        q = data + off
        vlen = ld32(q + 10)
        if vlen > length - off - CODEC_BATCH_ENTRY_HEADER_SIZE:
            raise MalformedFrame("batch entry %d at offset %d: its %d-byte payload runs past the %d-byte batch"
                                 % (i, off, vlen, length))
        out.append((ld16(q), ld64(q + 2),
                    PyBytes_FromStringAndSize(<const char *>(q + CODEC_BATCH_ENTRY_HEADER_SIZE),
                                              <Py_ssize_t>vlen)))
        off += CODEC_BATCH_ENTRY_HEADER_SIZE + vlen
    if off != length:
        raise MalformedFrame("batch declares %d entries but %d bytes are left after them (offset %d of %d)"
                             % (count, length - off, off, length))
    return out


cpdef list proposals_of(bytes value):
    """The proposals ``[(origin, seq, payload), ...]`` of a log value: a batch's entries; ``[]`` for a no-op and
    for a membership ADOPT value (it carries a configuration, no proposal)."""
    if PyBytes_GET_SIZE(value) == 0 or (<const unsigned char *>PyBytes_AS_STRING(value))[0] == 0xC0:
        return []
    return decode_batch_ptr(<const unsigned char *>PyBytes_AS_STRING(value), <size_t>PyBytes_GET_SIZE(value))


cpdef list decode_batch(data):
    """The inverse of encode_batch: ``[(origin, seq, payload), ...]`` (``[]`` for b"")."""
    if type(data) is bytes:
        return decode_batch_ptr(<const unsigned char *>PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return decode_batch_ptr(<const unsigned char *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)

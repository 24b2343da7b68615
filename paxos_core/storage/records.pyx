# cython: language_level=3
"""The storage record format: fixed-width binary keys and checksummed values.

Keys (14 bytes, big-endian so that byte order is numeric order and one group's records are contiguous):

    b"G" | group u32 | record type u8 | instance u64      group records (types 0, 1, 2, 4, 5, 6, 7)
    b"N" | 13 zero bytes                                   the node record (type 3)

Values (little-endian), every one ending in a crc32c computed over the KEY and the value bytes before it,
so a record that is damaged, torn, or found under the wrong key is detected:

    PROMISE_RECORD   ver u8=1 | type u8 | flags u8 | 0 u8 | promised u64 | crc u32
    INSTANCE_RECORD  ver u8=1 | type u8 | flags u8 | 0 u8 | promised u64 | ballot u64 | mark u64 | chain u32
                     | value length u32 | value | crc u32
    LOW_RECORD       ver u8=2 | type u8 | 0 u8 | 0 u8 | low u64 | chain at low u32 | bytes_below u64 | crc u32
                     (version 1, still read: no bytes_below; version 3: then config length u16 | config)
    NODE_RECORD      ver u8=1 | type u8 | 0 u8 | 0 u8 | node id u32 | cluster id u64 | crc u32
    CHAIN_RECORD     ver u8=2 | type u8 | 0 u8 | 0 u8 | chain u32 | bytes_below u64 | crc u32
                     (key instance: where it holds; version 1, still read: no bytes_below; version 3: then
                     config length u16 | config)
    REPAIR_RECORD    ver u8=1 | type u8 | flags u8 | 0 u8 | crc u32  (flags: REPAIR_PENDING, REPAIR_REENTRY)
    GROUP_RECORD     ver u8=1 | type u8 | flags u8 | 0 u8 | incarnation u16 | 0 u16 | crc u32
                     (flags: GROUP_REMOVED, GROUP_VACATED; the record tuple carries the incarnation in its
                     promised slot; version 2, then mark u64 before the crc, in the tuple's ballot slot: the
                     chosen mark at which this node handed the group over, which it learns up to again before
                     it votes when it holds the group again; version 3, then first length u16 | first: the
                     first configuration of a group added at run time in another one than the table's, a
                     VoterTable state in the tuple's value slot)
    CHECKPOINT_RECORD ver u8=1 | type u8 | flags u8 | 0 u8 | body length u32 | body | crc u32
                     (instance 0: an incoming snapshot's progress, or the installed checkpoint; instances > 0:
                     staged pieces of a blob snapshot. The body's layout belongs to the snapshot module.)

`bytes_below` in LOW and CHAIN records counts the value bytes learned below the record's instance (the
retention rule keeps a number of bytes, not only of instances); BYTES_UNKNOWN when the writer did not count
them, and what a version-1 record decodes to. In the record tuple it travels in the ballot slot.

Every record but LOW and CHAIN is version 1; a build before version 2 refuses a version-2 record
(UnknownVersion), so a log that was truncated by this build cannot be opened by an older one.

`config` in LOW and CHAIN records (version 3, in the record tuple's value slot) is the group's membership
configuration state at the record's instance (core/voters.pyx VoterTable.state()): the voters in force there and
the adopted ones pending. It is written only for a group that left its first configuration (empty: version 2),
so a log that never changed members is read by builds before version 3. Recovery starts from the LOW record's
configuration and replays the ADOPT values it walks; truncation takes the one of the CHAIN record it cuts at.

An INSTANCE_RECORD's `mark` and `chain` are the writer's learned mark (every instance below it was chosen and
its value is in this node's records) and the checksum chain over the values below that mark, at the time of
the write. Recovery takes the highest mark and re-computes the chain to verify it.

The in-memory record tuple the core emits is
``(type, group, instance, flags, promised, ballot, mark, chain, value)``.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from paxos_core.wire.checksum cimport crc32c_buf

from paxos_core.errors import RecordCorrupt, UnknownVersion

FORMAT_VERSION = 1
BYTES_FORMAT_VERSION = 2        # LOW and CHAIN records written by this build (they carry bytes_below)
CONFIG_FORMAT_VERSION = 3       # ... and a group's membership configuration, when it is not its first one
MARK_FORMAT_VERSION = 2         # GROUP records with a mark (a group handed over, or held again after it)
FIRST_FORMAT_VERSION = 3        # ... and with a first configuration (a group added at run time: the one it named)
BYTES_UNKNOWN = (1 << 64) - 1
KEY_SIZE = 14
NODE_KEY = b"N" + bytes(13)
MAX_INSTANCE = (1 << 64) - 1

cdef int _PROMISE_SIZE = 4 + 8 + 4
cdef int _INSTANCE_FIXED = 4 + 8 + 8 + 8 + 4 + 4 + 4
cdef int _LOW_SIZE_V1 = 4 + 8 + 4 + 4
cdef int _LOW_SIZE = 4 + 8 + 4 + 8 + 4
cdef int _NODE_SIZE = 4 + 4 + 8 + 4
cdef int _CHAIN_SIZE_V1 = 4 + 4 + 4
cdef int _CHAIN_SIZE = 4 + 4 + 8 + 4
cdef int _CHECKPOINT_FIXED = 4 + 4 + 4
cdef int _REPAIR_SIZE = 4 + 4
cdef int _GROUP_SIZE = 4 + 4 + 4
cdef int _GROUP_SIZE_MARK = 4 + 4 + 8 + 4       # version 2: with a mark (a group handed over, or held again)
CHAIN_INTERVAL = CHAIN_EVERY


cdef inline void _put_u32be(unsigned char *p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef inline void _put_u64be(unsigned char *p, uint64_t v) noexcept nogil:
    cdef int k
    for k in range(8):
        p[k] = (v >> (56 - 8 * k)) & 0xFF


cdef inline uint32_t _get_u32be(const unsigned char *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]


cdef inline uint64_t _get_u64be(const unsigned char *p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int k
    for k in range(8):
        v = (v << 8) | p[k]
    return v


cdef inline void _put_u32(unsigned char *p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)


cdef inline void _put_u64(unsigned char *p, uint64_t v) noexcept nogil:
    memcpy(p, &v, 8)


cdef inline uint32_t _get_u32(const unsigned char *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint64_t _get_u64(const unsigned char *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cpdef bytes group_key(int rtype, uint32_t group, uint64_t instance):
    """The key of a group record."""
    cdef bytes key = PyBytes_FromStringAndSize(NULL, 14)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(key)
    p[0] = 0x47  # "G"
    _put_u32be(p + 1, group)
    p[5] = <unsigned char>rtype
    _put_u64be(p + 6, instance)
    return key


def parse_key(key):
    """(type, group, instance) of a key; RecordCorrupt if it is not a paxos-core key."""
    cdef const unsigned char[::1] k = key
    if k.shape[0] != 14:
        raise RecordCorrupt("key of %d bytes, expected 14" % k.shape[0])
    if k[0] == 0x4E:  # "N"
        return NODE_RECORD, 0, 0
    if k[0] != 0x47 or k[5] == NODE_RECORD or k[5] > CHECKPOINT_RECORD:
        raise RecordCorrupt("unknown key prefix %r" % bytes(key[:6]))
    return k[5], _get_u32be(&k[1]), _get_u64be(&k[6])


def group_range(uint32_t group, int rtype=INSTANCE_RECORD, uint64_t start=0, end=None):
    """[begin, end) keys covering a group's records of one type with instance in [start, end)."""
    begin = group_key(rtype, group, start)
    if end is None:
        return begin, group_key(rtype + 1, group, 0)
    return begin, group_key(rtype, group, end)


cdef inline void _seal(bytes key, unsigned char *value, Py_ssize_t body):
    cdef uint32_t crc = crc32c_buf(<const unsigned char *>PyBytes_AS_STRING(key), 14, 0)
    crc = crc32c_buf(value, body, crc)
    _put_u32(value + body, crc)


cpdef tuple encode_record(tuple record):
    """(key, value) bytes of one record tuple (see the module docstring)."""
    cdef int rtype = record[0]
    cdef uint32_t group = record[1]
    cdef uint64_t instance = record[2]
    cdef bytes key
    cdef bytes out
    cdef bytes value
    cdef unsigned char *p
    cdef Py_ssize_t n
    if rtype == INSTANCE_RECORD:
        value = record[8]
        n = len(value)
        key = group_key(rtype, group, instance)
        out = PyBytes_FromStringAndSize(NULL, _INSTANCE_FIXED + n)
        p = <unsigned char *>PyBytes_AS_STRING(out)
        p[0] = FORMAT_VERSION
        p[1] = INSTANCE_RECORD
        p[2] = <uint8_t>record[3]
        p[3] = 0
        _put_u64(p + 4, record[4])
        _put_u64(p + 12, record[5])
        _put_u64(p + 20, record[6])
        _put_u32(p + 28, record[7])
        _put_u32(p + 32, <uint32_t>n)
        if n:
            memcpy(p + 36, PyBytes_AS_STRING(value), n)
        _seal(key, p, 36 + n)
        return key, out
    if rtype == PROMISE_RECORD:
        key = group_key(rtype, group, 0)
        out = PyBytes_FromStringAndSize(NULL, _PROMISE_SIZE)
        p = <unsigned char *>PyBytes_AS_STRING(out)
        p[0] = FORMAT_VERSION
        p[1] = PROMISE_RECORD
        p[2] = 0
        p[3] = 0
        _put_u64(p + 4, record[4])
        _seal(key, p, 12)
        return key, out
    if rtype == LOW_RECORD:
        key = group_key(rtype, group, 0)
        value = record[8]
        n = len(value)
        if n > 0xFFFF:
            raise ValueError("a configuration state of %d bytes" % n)
        out = PyBytes_FromStringAndSize(NULL, _LOW_SIZE + (2 + n if n else 0))
        p = <unsigned char *>PyBytes_AS_STRING(out)
        p[0] = CONFIG_FORMAT_VERSION if n else BYTES_FORMAT_VERSION
        p[1] = LOW_RECORD
        p[2] = 0
        p[3] = 0
        _put_u64(p + 4, record[6])
        _put_u32(p + 12, record[7])
        _put_u64(p + 16, record[5])
        _seal_with_config(key, p, 24, value)
        return key, out
    if rtype == NODE_RECORD:
        key = NODE_KEY
        out = PyBytes_FromStringAndSize(NULL, _NODE_SIZE)
        p = <unsigned char *>PyBytes_AS_STRING(out)
        p[0] = FORMAT_VERSION
        p[1] = NODE_RECORD
        p[2] = 0
        p[3] = 0
        _put_u32(p + 4, record[1])      # node id travels in the group slot of the tuple
        _put_u64(p + 8, record[2])      # cluster id travels in the instance slot
        _seal(key, p, 16)
        return key, out
    if rtype == CHAIN_RECORD:
        key = group_key(rtype, group, instance)
        value = record[8]
        n = len(value)
        if n > 0xFFFF:
            raise ValueError("a configuration state of %d bytes" % n)
        out = PyBytes_FromStringAndSize(NULL, _CHAIN_SIZE + (2 + n if n else 0))
        p = <unsigned char *>PyBytes_AS_STRING(out)
        p[0] = CONFIG_FORMAT_VERSION if n else BYTES_FORMAT_VERSION
        p[1] = CHAIN_RECORD
        p[2] = 0
        p[3] = 0
        _put_u32(p + 4, record[7])
        _put_u64(p + 8, record[5])
        _seal_with_config(key, p, 16, value)
        return key, out
    if rtype == REPAIR_RECORD:
        key = group_key(rtype, group, 0)
        out = PyBytes_FromStringAndSize(NULL, _REPAIR_SIZE)
        p = <unsigned char *>PyBytes_AS_STRING(out)
        p[0] = FORMAT_VERSION
        p[1] = REPAIR_RECORD
        p[2] = <uint8_t>record[3]
        p[3] = 0
        _seal(key, p, 4)
        return key, out
    if rtype == GROUP_RECORD:
        key = group_key(rtype, group, 0)
        mark = record[5]
        value = record[8]
        n = len(value)
        if n > 0xFFFF:
            raise ValueError("a first configuration of %d bytes" % n)
        out = PyBytes_FromStringAndSize(NULL, _GROUP_SIZE_MARK + 2 + n if n else
                                        (_GROUP_SIZE_MARK if mark else _GROUP_SIZE))
        p = <unsigned char *>PyBytes_AS_STRING(out)
        p[0] = FIRST_FORMAT_VERSION if n else (MARK_FORMAT_VERSION if mark else FORMAT_VERSION)
        p[1] = GROUP_RECORD
        p[2] = <uint8_t>record[3]
        p[3] = 0
        _put_u32(p + 4, <uint32_t>(<uint64_t>record[4] & 0xFFFF))
        if n:
            _put_u64(p + 8, <uint64_t>mark)
            _seal_with_config(key, p, 16, value)
        elif mark:
            _put_u64(p + 8, <uint64_t>mark)
            _seal(key, p, 16)
        else:
            _seal(key, p, 8)
        return key, out
    if rtype == CHECKPOINT_RECORD:
        value = record[8]
        n = len(value)
        key = group_key(rtype, group, instance)
        out = PyBytes_FromStringAndSize(NULL, _CHECKPOINT_FIXED + n)
        p = <unsigned char *>PyBytes_AS_STRING(out)
        p[0] = FORMAT_VERSION
        p[1] = CHECKPOINT_RECORD
        p[2] = <uint8_t>record[3]
        p[3] = 0
        _put_u32(p + 4, <uint32_t>n)
        if n:
            memcpy(p + 8, PyBytes_AS_STRING(value), n)
        _seal(key, p, 8 + n)
        return key, out
    raise ValueError("unknown record type %r" % rtype)


cdef void _seal_with_config(bytes key, unsigned char *p, Py_ssize_t fixed, bytes config):
    """Seal a LOW or CHAIN record of `fixed` bytes before its checksum, followed (version 3) by a non-empty
    configuration state: u16 length, the bytes."""
    cdef Py_ssize_t n = len(config)
    if n:
        p[fixed] = n & 0xFF
        p[fixed + 1] = n >> 8
        memcpy(p + fixed + 2, PyBytes_AS_STRING(config), n)
        fixed += 2 + n
    _seal(key, p, fixed)


def group_record(uint32_t group, int incarnation, bint removed=False, bint vacated=False, uint64_t mark=0,
                 bytes first=b""):
    """`mark`: vacated, the chosen mark at which this node handed the group over; held again, the mark it
    learns up to before it votes (0 once it did). `first`: the group's first configuration (Engine.first_state;
    empty: the table's), kept while the group is held or handed over, so the incarnation starts there again."""
    return (GROUP_RECORD, group, 0, (GROUP_REMOVED if removed else 0) | (GROUP_VACATED if vacated else 0),
            incarnation, mark, 0, 0, first)


def chain_record(uint32_t group, uint64_t instance, uint32_t chain, uint64_t bytes_below=BYTES_UNKNOWN,
                 bytes config=b""):
    return (CHAIN_RECORD, group, instance, 0, 0, bytes_below, 0, chain, config)


def repair_record(uint32_t group, bint pending, bint reentry=False):
    return (REPAIR_RECORD, group, 0, (REPAIR_PENDING if pending else 0) | (REPAIR_REENTRY if reentry else 0),
            0, 0, 0, 0, b"")


def promise_record(uint32_t group, uint64_t promised):
    return (PROMISE_RECORD, group, 0, 0, promised, 0, 0, 0, b"")


def low_record(uint32_t group, uint64_t low, uint32_t chain, uint64_t bytes_below=BYTES_UNKNOWN,
               bytes config=b""):
    return (LOW_RECORD, group, 0, 0, 0, bytes_below, low, chain, config)


def checkpoint_record(uint32_t group, uint64_t instance, int flags, bytes body):
    """A CHECKPOINT record: `body` is the snapshot module's (this layer only checksums it)."""
    return (CHECKPOINT_RECORD, group, instance, flags, 0, 0, 0, 0, body)


def node_record(uint32_t node_id, uint64_t cluster_id):
    return (NODE_RECORD, node_id, cluster_id, 0, 0, 0, 0, 0, b"")


def decode_record(key, value):
    """The record tuple stored under `key`.

    Raises RecordCorrupt when the checksum, the length or the key does not fit, and UnknownVersion for a
    format version this build does not know. A record that raises is never to be used.
    """
    cdef const unsigned char[::1] k = key
    cdef const unsigned char[::1] v = value
    cdef Py_ssize_t n = v.shape[0]
    cdef uint32_t crc, stored
    cdef int rtype
    if k.shape[0] != 14:
        raise RecordCorrupt("key of %d bytes, expected 14" % k.shape[0])
    if n < 8:
        raise RecordCorrupt("record of %d bytes is too short" % n)
    crc = crc32c_buf(&k[0], 14, 0)
    crc = crc32c_buf(&v[0], n - 4, crc)
    stored = _get_u32(&v[n - 4])
    if crc != stored:
        raise RecordCorrupt("checksum mismatch under key %s (stored %08x, computed %08x)"
                            % (bytes(key).hex(), stored, crc))
    rtype = v[1]
    if v[0] != FORMAT_VERSION and not ((v[0] == BYTES_FORMAT_VERSION or v[0] == CONFIG_FORMAT_VERSION)
                                       and (rtype == LOW_RECORD or rtype == CHAIN_RECORD)) \
            and not ((v[0] == MARK_FORMAT_VERSION or v[0] == FIRST_FORMAT_VERSION) and rtype == GROUP_RECORD):
        raise UnknownVersion("record format version %d under key %s (type %d); this build does not read it"
                             % (v[0], bytes(key).hex(), rtype))
    if k[0] == 0x4E:
        if rtype != NODE_RECORD or n != _NODE_SIZE:
            raise RecordCorrupt("malformed node record")
        return (NODE_RECORD, _get_u32(&v[4]), _get_u64(&v[8]), 0, 0, 0, 0, 0, b"")
    if k[0] != 0x47 or k[5] != rtype:
        raise RecordCorrupt("record type %d does not match its key %s" % (rtype, bytes(key).hex()))
    cdef uint32_t group = _get_u32be(&k[1])
    cdef uint64_t instance = _get_u64be(&k[6])
    cdef uint32_t vlen
    if rtype == INSTANCE_RECORD:
        if n < _INSTANCE_FIXED:
            raise RecordCorrupt("instance record of %d bytes is too short" % n)
        vlen = _get_u32(&v[32])
        if <Py_ssize_t>vlen != n - _INSTANCE_FIXED:
            raise RecordCorrupt("instance record value length %d does not fit its size %d" % (vlen, n))
        return (INSTANCE_RECORD, group, instance, v[2], _get_u64(&v[4]), _get_u64(&v[12]), _get_u64(&v[20]),
                _get_u32(&v[28]), bytes(v[36:36 + vlen]))
    if rtype == PROMISE_RECORD:
        if n != _PROMISE_SIZE:
            raise RecordCorrupt("promise record of %d bytes, expected %d" % (n, _PROMISE_SIZE))
        return (PROMISE_RECORD, group, 0, 0, _get_u64(&v[4]), 0, 0, 0, b"")
    if rtype == LOW_RECORD:
        if v[0] == FORMAT_VERSION:
            if n != _LOW_SIZE_V1:
                raise RecordCorrupt("low record of %d bytes, expected %d" % (n, _LOW_SIZE_V1))
            return (LOW_RECORD, group, 0, 0, 0, BYTES_UNKNOWN, _get_u64(&v[4]), _get_u32(&v[12]), b"")
        if v[0] == CONFIG_FORMAT_VERSION:
            if n < _LOW_SIZE + 2 or n != _LOW_SIZE + 2 + v[24] + (v[25] << 8):
                raise RecordCorrupt("low record of %d bytes does not fit its configuration" % n)
            return (LOW_RECORD, group, 0, 0, 0, _get_u64(&v[16]), _get_u64(&v[4]), _get_u32(&v[12]),
                    bytes(v[26:n - 4]))
        if n != _LOW_SIZE:
            raise RecordCorrupt("low record of %d bytes, expected %d" % (n, _LOW_SIZE))
        return (LOW_RECORD, group, 0, 0, 0, _get_u64(&v[16]), _get_u64(&v[4]), _get_u32(&v[12]), b"")
    if rtype == CHAIN_RECORD:
        if v[0] == FORMAT_VERSION:
            if n != _CHAIN_SIZE_V1:
                raise RecordCorrupt("chain record of %d bytes, expected %d" % (n, _CHAIN_SIZE_V1))
            return (CHAIN_RECORD, group, instance, 0, 0, BYTES_UNKNOWN, 0, _get_u32(&v[4]), b"")
        if v[0] == CONFIG_FORMAT_VERSION:
            if n < _CHAIN_SIZE + 2 or n != _CHAIN_SIZE + 2 + v[16] + (v[17] << 8):
                raise RecordCorrupt("chain record of %d bytes does not fit its configuration" % n)
            return (CHAIN_RECORD, group, instance, 0, 0, _get_u64(&v[8]), 0, _get_u32(&v[4]), bytes(v[18:n - 4]))
        if n != _CHAIN_SIZE:
            raise RecordCorrupt("chain record of %d bytes, expected %d" % (n, _CHAIN_SIZE))
        return (CHAIN_RECORD, group, instance, 0, 0, _get_u64(&v[8]), 0, _get_u32(&v[4]), b"")
    if rtype == REPAIR_RECORD:
        if n != _REPAIR_SIZE:
            raise RecordCorrupt("repair record of %d bytes, expected %d" % (n, _REPAIR_SIZE))
        return (REPAIR_RECORD, group, 0, v[2], 0, 0, 0, 0, b"")
    if rtype == GROUP_RECORD:
        if v[0] == FIRST_FORMAT_VERSION:
            if n < _GROUP_SIZE_MARK + 2 or n != _GROUP_SIZE_MARK + 2 + v[16] + (v[17] << 8):
                raise RecordCorrupt("group record of %d bytes does not fit its first configuration" % n)
            return (GROUP_RECORD, group, 0, v[2], _get_u32(&v[4]) & 0xFFFF, _get_u64(&v[8]), 0, 0,
                    bytes(v[18:n - 4]))
        if v[0] == MARK_FORMAT_VERSION:
            if n != _GROUP_SIZE_MARK:
                raise RecordCorrupt("group record of %d bytes, expected %d" % (n, _GROUP_SIZE_MARK))
            return (GROUP_RECORD, group, 0, v[2], _get_u32(&v[4]) & 0xFFFF, _get_u64(&v[8]), 0, 0, b"")
        if n != _GROUP_SIZE:
            raise RecordCorrupt("group record of %d bytes, expected %d" % (n, _GROUP_SIZE))
        return (GROUP_RECORD, group, 0, v[2], _get_u32(&v[4]) & 0xFFFF, 0, 0, 0, b"")
    if rtype == CHECKPOINT_RECORD:
        if n < _CHECKPOINT_FIXED:
            raise RecordCorrupt("checkpoint record of %d bytes is too short" % n)
        vlen = _get_u32(&v[4])
        if <Py_ssize_t>vlen != n - _CHECKPOINT_FIXED:
            raise RecordCorrupt("checkpoint record body length %d does not fit its size %d" % (vlen, n))
        return (CHECKPOINT_RECORD, group, instance, v[2], 0, 0, 0, 0, bytes(v[8:8 + vlen]))
    raise RecordCorrupt("unknown record type %d" % rtype)


def encode_records(list records):
    """[(key, value)] of many record tuples, in order."""
    return [encode_record(r) for r in records]



def read_chosen(get, uint32_t group, uint64_t first, uint64_t end):
    """[(instance, ballot, value)] of the stored values at instances first, first+1, ... < end.

    `get(key)` reads one key (None if absent). Stops at the first missing, damaged or void record, so the
    result is always a gap-free run; the caller serves only instances below its learned mark, whose records
    hold chosen values.
    """
    entries = []
    cdef uint64_t instance
    for instance in range(first, end):
        key = group_key(INSTANCE_RECORD, group, instance)
        value = get(key)
        if value is None:
            break
        try:
            rec = decode_record(key, value)
        except (RecordCorrupt, UnknownVersion):
            break
        if rec[3] & RECORD_VOID:
            break
        entries.append((instance, rec[5], rec[8]))
    return entries


def read_chain(get, uint32_t group, uint64_t instance):
    """The chain recorded at `instance` (a CHAIN record), or None if absent or damaged."""
    found = read_chain_bytes(get, group, instance)
    return None if found is None else found[0]


def read_chain_bytes(get, uint32_t group, uint64_t instance, bint with_config=False):
    """(chain, bytes_below) of the CHAIN record at `instance`, or None if absent or damaged; `with_config`:
    (chain, bytes_below, configuration state)."""
    key = group_key(CHAIN_RECORD, group, instance)
    value = get(key)
    if value is None:
        return None
    try:
        rec = decode_record(key, value)
    except (RecordCorrupt, UnknownVersion):
        return None
    return (rec[7], rec[5], rec[8]) if with_config else (rec[7], rec[5])


def read_low(get, uint32_t group, bint with_config=False):
    """(low, chain at low, bytes_below) of the group's LOW record: (0, 0, 0) if it has none, None if it is
    damaged (then nothing is known about what was truncated); `with_config`: and the configuration state."""
    key = group_key(LOW_RECORD, group, 0)
    value = get(key)
    if value is None:
        return (0, 0, 0, b"") if with_config else (0, 0, 0)
    try:
        rec = decode_record(key, value)
    except (RecordCorrupt, UnknownVersion):
        return None
    return (rec[6], rec[7], rec[5], rec[8]) if with_config else (rec[6], rec[7], rec[5])


def log_range_deletes(list deletes):
    """[(begin key, end key)] of range deletes given as (record type, group, first instance, end instance)."""
    return [(group_key(rtype, group, first), group_key(rtype, group, end)) for rtype, group, first, end in deletes]


from paxos_core._enums import export_members

export_members(globals(), RecordType, RecordFlag)

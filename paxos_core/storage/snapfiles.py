"""Snapshot files: the sender's copy of a group's checkpoint while it is shipped (replica/snapshots.py).

A file is a sequence of frames ``length u32 | crc32c u32 | payload`` (little-endian), named by its key
``(group, incarnation, applied mark A, snapshot id)``: ``<group>-<incarnation>-<A>-<id>.snap`` once complete,
``.part`` while it is built. Nothing is fsynced: every frame is checked when it is read (a damaged frame
deletes the file, and the receiver gets a new offer), and a ``.part`` found at start is deleted. A file is a
cache of state the node holds anyway; losing it costs a rebuild of the file, never data.

Two implementations of one small interface (``begin``, ``append``, ``finish``, ``read_frame``, ``size``,
``complete``, ``delete``): :class:`SnapshotFiles` in a directory, :class:`MemorySnapshotFiles` in a dict (tests
and the simulator, which decides what a crash leaves of them).
"""
import os
import struct

from ..errors import RecordCorrupt
from ..wire.checksum import crc32c

FRAME = struct.Struct("<II")
FRAME_HEADER = FRAME.size


def frame(payload):
    """One frame around `payload`."""
    return FRAME.pack(len(payload), crc32c(payload)) + payload


def _name(key, suffix):
    return "%d-%d-%d-%d%s" % (key + (suffix,))


def _parse_name(name):
    stem, dot, suffix = name.rpartition(".")
    parts = stem.split("-")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None, None
    return tuple(int(p) for p in parts), suffix


def _check_frame(data, offset):
    """(payload, next offset) of the frame at `offset` in `data`; RecordCorrupt if it does not check."""
    if offset + FRAME_HEADER > len(data):
        raise RecordCorrupt("no frame at offset %d (file of %d bytes)" % (offset, len(data)))
    length, crc = FRAME.unpack_from(data, offset)
    end = offset + FRAME_HEADER + length
    if end > len(data):
        raise RecordCorrupt("frame at offset %d runs past the end of the file" % offset)
    payload = bytes(data[offset + FRAME_HEADER:end])
    if crc32c(payload) != crc:
        raise RecordCorrupt("frame at offset %d fails its checksum" % offset)
    return payload, end


class SnapshotFiles:
    """Snapshot files in one directory (``<data_dir>/worker-<i>.snap``)."""

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._open = {}
        for name in os.listdir(self.directory):
            key, suffix = _parse_name(name)
            if suffix == "part" or key is None:
                os.unlink(os.path.join(self.directory, name))     # an interrupted build, or not ours

    def _path(self, key, suffix):
        return os.path.join(self.directory, _name(key, suffix))

    def begin(self, key):
        self._open[key] = open(self._path(key, ".part"), "wb")

    def append(self, key, payload):
        """Append one frame; returns its offset."""
        f = self._open[key]
        offset = f.tell()
        f.write(frame(payload))
        return offset

    def finish(self, key):
        self._open.pop(key).close()
        os.rename(self._path(key, ".part"), self._path(key, ".snap"))

    def abandon(self, key):
        f = self._open.pop(key, None)
        if f is not None:
            f.close()
        for suffix in (".part", ".snap"):
            try:
                os.unlink(self._path(key, suffix))
            except FileNotFoundError:
                pass

    delete = abandon

    def complete(self):
        """Keys of the complete files."""
        keys = []
        for name in os.listdir(self.directory):
            key, suffix = _parse_name(name)
            if key is not None and suffix == "snap":
                keys.append(key)
        return sorted(keys)

    def size(self, key):
        return os.path.getsize(self._path(key, ".snap"))

    def read_frame(self, key, offset):
        """(payload, next offset) of the frame at `offset`: RecordCorrupt if it does not check."""
        with open(self._path(key, ".snap"), "rb") as f:
            f.seek(offset)
            head = f.read(FRAME_HEADER)
            if len(head) < FRAME_HEADER:
                raise RecordCorrupt("no frame at offset %d" % offset)
            length = FRAME.unpack(head)[0]
            body = f.read(length)
        payload, end = _check_frame(head + body, 0)
        return payload, offset + end

    def bytes_total(self):
        total = 0
        for key in self.complete():
            try:
                total += self.size(key)
            except FileNotFoundError:
                pass
        return total

    def close(self):
        for f in self._open.values():
            f.close()
        self._open = {}


class MemorySnapshotFiles:
    """The same interface in a dict: ``files`` maps a key to ``[bytearray, complete]``."""

    def __init__(self):
        self.files = {}

    def restart(self):
        """What a process restart leaves: the complete files (the simulator may damage them first)."""
        self.files = {k: v for k, v in self.files.items() if v[1]}

    def begin(self, key):
        self.files[key] = [bytearray(), False]

    def append(self, key, payload):
        data = self.files[key][0]
        offset = len(data)
        data += frame(payload)
        return offset

    def finish(self, key):
        self.files[key][1] = True

    def abandon(self, key):
        self.files.pop(key, None)

    delete = abandon

    def complete(self):
        return sorted(k for k, v in self.files.items() if v[1])

    def size(self, key):
        return len(self.files[key][0])

    def read_frame(self, key, offset):
        return _check_frame(self.files[key][0], offset)

    def bytes_total(self):
        return sum(len(v[0]) for v in self.files.values() if v[1])

    def close(self):
        pass

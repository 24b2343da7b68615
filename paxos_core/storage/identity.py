"""The node's identity marker and the per-worker "created" flags: telling a lost log from a new one.

A worker that finds no log cannot tell from the log alone whether it starts for the first time (it may vote
at once) or its log was lost (it must not vote before its groups are rebuilt from peers: it may have promised
or voted before, and forgot). Two small files in the node's data directory tell:

* ``<data_dir>/IDENTITY``, written by ``paxos-core init`` (config.write_cluster): which node of which cluster
  this directory belongs to. Text, so an operator can read it::

      paxos-core identity 1
      node 3
      cluster 1234567890
      crc32c 1a2b3c4d

  The last line is the crc32c of every byte before it. (RocksDB also writes a file named IDENTITY, inside
  each worker's DB directory; this one is one level up.)
* ``<data_dir>/worker-<i>.created``: worker i has created its log at least once.

:func:`worker_log_state` applies the rules:

====================  ================  ================  ===========
IDENTITY              log               worker flag       state
====================  ================  ================  ===========
missing               (any)             (any)             "wiped"
present               existed           (written if not)  "existing"
present               created just now  absent            "fresh" (the flag is written)
present               created just now  present           "wiped"
====================  ================  ================  ===========

A missing marker means the whole data directory was lost (or never initialised by ``paxos-core init``).
After a "wiped" worker has durably recorded that its groups must be rebuilt, it calls
:func:`restore_marker` and :func:`write_worker_flag`, so that the next start finds "existing".

Every file is written atomically: a temporary file, fsync, rename, fsync of the directory.
"""
import contextlib
import os

from ..errors import ConfigError, RecordCorrupt, UnknownVersion
from ..wire.checksum import crc32c

MARKER_NAME = "IDENTITY"
MARKER_VERSION = 1
MAX_MARKER_BYTES = 4096
_HEADER = "paxos-core identity "

FRESH = "fresh"
EXISTING = "existing"
WIPED = "wiped"


def marker_path(data_dir):
    return os.path.join(os.fspath(data_dir), MARKER_NAME)


def worker_flag_path(data_dir, worker_index):
    return os.path.join(os.fspath(data_dir), "worker-%d.created" % worker_index)


def fsync_dir(path):
    """Make a directory's entries durable (a rename or a new file in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path, data):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    # A temporary name of this process's own: a node's workers restore the shared marker at the same time
    # after a wipe, and with one name for all, one's rename found the file gone (a start failure).
    tmp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def encode_marker(node_id, cluster_id):
    body = ("%s%d\nnode %d\ncluster %d\n" % (_HEADER, MARKER_VERSION, node_id, cluster_id)).encode("ascii")
    return body + b"crc32c %08x\n" % crc32c(body)


def decode_marker(data, where="identity marker"):
    """(node_id, cluster_id) of a marker's bytes; RecordCorrupt if damaged, UnknownVersion if newer."""
    if len(data) > MAX_MARKER_BYTES:
        raise RecordCorrupt("%s: %d bytes, more than a marker ever holds" % (where, len(data)))
    head, newline, line = data[:-1].rpartition(b"\n")
    if not data.endswith(b"\n") or not newline or not line.startswith(b"crc32c "):
        raise RecordCorrupt("%s: no checksum line (empty or cut short)" % where)
    body = head + newline
    try:
        stored = int(line[len(b"crc32c "):], 16)
    except ValueError:
        raise RecordCorrupt("%s: unreadable checksum line %r" % (where, line[:40])) from None
    if crc32c(body) != stored:
        raise RecordCorrupt("%s: checksum mismatch (stored %08x, computed %08x)" % (where, stored, crc32c(body)))
    lines = body.decode("ascii", "replace").splitlines()
    if not lines or not lines[0].startswith(_HEADER):
        raise RecordCorrupt("%s: not a paxos-core identity marker" % where)
    if lines[0] != "%s%d" % (_HEADER, MARKER_VERSION):
        raise UnknownVersion("%s: %r; this build reads version %d" % (where, lines[0], MARKER_VERSION))
    fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
    try:
        return int(fields["node"]), int(fields["cluster"])
    except (KeyError, ValueError):
        raise RecordCorrupt("%s: node or cluster line missing or unreadable" % where) from None


def write_marker(data_dir, node_id, cluster_id):
    """Write ``<data_dir>/IDENTITY`` (atomically, fsynced), replacing any marker there."""
    _write_atomically(marker_path(data_dir), encode_marker(node_id, cluster_id))


def read_marker(data_dir):
    """(node_id, cluster_id) from ``<data_dir>/IDENTITY``, or None if there is none. RecordCorrupt if damaged."""
    path = marker_path(data_dir)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MARKER_BYTES + 1)
    except FileNotFoundError:
        return None
    return decode_marker(data, path)


def check_marker(data_dir, node_id, cluster_id):
    """"ok" if the marker names this node of this cluster, "missing" if there is none.

    ConfigError if it names another node or cluster (a data directory given to the wrong node); RecordCorrupt
    if it is damaged.
    """
    found = read_marker(data_dir)
    if found is None:
        return "missing"
    if found != (node_id, cluster_id):
        raise ConfigError("%s belongs to node %d of cluster %d, not to node %d of cluster %d: is node.data_dir "
                          "pointing at another node's data?" % (marker_path(data_dir), found[0], found[1],
                                                                node_id, cluster_id))
    return "ok"


def restore_marker(data_dir, node_id, cluster_id):
    """Write the marker if it is missing (after a wiped data directory was rebuilt); keep a matching one.

    Raises like :func:`check_marker` if a marker of another node or cluster is there.
    """
    if check_marker(data_dir, node_id, cluster_id) == "missing":
        write_marker(data_dir, node_id, cluster_id)


def worker_flag_exists(data_dir, worker_index):
    return os.path.exists(worker_flag_path(data_dir, worker_index))


def write_worker_flag(data_dir, worker_index):
    """Record (atomically, fsynced) that worker ``worker_index`` has created its log."""
    _write_atomically(worker_flag_path(data_dir, worker_index), b"paxos-core worker %d created its log\n"
                      % worker_index)


def worker_log_state(data_dir, worker_index, log_was_created):
    """"fresh", "existing" or "wiped" for a worker's log (rules in the module docstring).

    ``log_was_created`` is ``RocksLog.created``. Writes the worker's flag in the "fresh" case (and in the
    "existing" case if it is absent); a "wiped" worker writes it with :func:`write_worker_flag` once it has
    durably recorded that its groups must be rebuilt. RecordCorrupt if the marker is damaged; it does not
    check whose marker it is (:func:`check_marker` does).
    """
    if read_marker(data_dir) is None:
        return WIPED
    flagged = worker_flag_exists(data_dir, worker_index)
    if not log_was_created:
        if not flagged:
            write_worker_flag(data_dir, worker_index)
        return EXISTING
    if flagged:
        return WIPED
    write_worker_flag(data_dir, worker_index)
    return FRESH


def rebuilding_flag_path(data_dir, worker_index):
    return os.path.join(os.fspath(data_dir), "worker-%d.rebuilding" % worker_index)


def mark_rebuilding(data_dir, worker_index, reason=""):
    """Worker i found its log lost or damaged (or the node found its marker gone before starting its workers):
    until its rebuild is on record in the new log, every start must find that again (written durably before
    the worker writes anything). `reason` is kept in the flag for the worker to report."""
    _write_atomically(rebuilding_flag_path(data_dir, worker_index),
                      (reason or "rebuilding").encode("utf-8", "replace")[:4096] + b"\n")


def rebuilding(data_dir, worker_index):
    return os.path.exists(rebuilding_flag_path(data_dir, worker_index))


def rebuilding_reason(data_dir, worker_index):
    """The reason kept in worker i's rebuilding flag ("" if it has none), or None without a flag."""
    try:
        with open(rebuilding_flag_path(data_dir, worker_index), "rb") as f:
            text = f.read().decode("utf-8", "replace").strip()
    except FileNotFoundError:
        return None
    return "" if text == "rebuilding" else text


def _remove_durably(path):
    """Delete a flag file and make its removal durable (nothing to do if it is absent)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_dir(os.path.dirname(path))


def clear_rebuilding(data_dir, worker_index):
    _remove_durably(rebuilding_flag_path(data_dir, worker_index))


def damage_flag_path(data_dir, worker_index):
    return os.path.join(os.fspath(data_dir), "worker-%d.damage-found" % worker_index)


def mark_damage_found(data_dir, worker_index, finding):
    """Worker i met damaged synced data while it ran (a read of the state machine's tables): its next start
    sets the DB aside and rebuilds (runtime/worker.py start_loop), instead of starting on the same damage and
    meeting it again at the next read. Written durably before the worker exits."""
    _write_atomically(damage_flag_path(data_dir, worker_index), finding.encode("utf-8", "replace")[:4096])


def damage_found(data_dir, worker_index):
    """What worker i found damaged while it ran (:func:`mark_damage_found`), or None."""
    try:
        with open(damage_flag_path(data_dir, worker_index), "rb") as f:
            return f.read().decode("utf-8", "replace") or "damaged data met while running"
    except FileNotFoundError:
        return None


def clear_damage_found(data_dir, worker_index):
    _remove_durably(damage_flag_path(data_dir, worker_index))


REMOVED_NAME = "REMOVED"


def write_removed(data_dir, node_id, epoch):
    """Record (atomically, fsynced) that the membership table removed this node at `epoch`: it never starts
    again (its id is never used again; the host comes back as a new node, with a new id and data)."""
    _write_atomically(os.path.join(os.fspath(data_dir), REMOVED_NAME),
                      b"paxos-core node %d was removed from the cluster at membership epoch %d\n" % (node_id, epoch))


def read_removed(data_dir):
    """The line :func:`write_removed` wrote, or None."""
    try:
        with open(os.path.join(os.fspath(data_dir), REMOVED_NAME), "rb") as f:
            return f.read(512).decode("ascii", "replace").strip()
    except FileNotFoundError:
        return None


FIRST_VOTERS_NAME = "FIRST_VOTERS"


def write_first_voters(data_dir, voters):
    """Record (atomically, fsynced) the groups' first configuration: the voters of a group that never adopted an
    epoch. It is the cluster's (the membership table's epoch 1), the same on every node, so it is kept here and
    never taken again from a node file's member list, which may change once nodes join."""
    voters = sorted(int(v) for v in voters)
    _write_atomically(os.path.join(os.fspath(data_dir), FIRST_VOTERS_NAME),
                      ("paxos-core first voters %s\n" % ",".join(map(str, voters))).encode("ascii"))


def read_first_voters(data_dir):
    """The voters :func:`write_first_voters` recorded (a tuple), or None. RecordCorrupt if damaged."""
    path = os.path.join(os.fspath(data_dir), FIRST_VOTERS_NAME)
    try:
        with open(path, "rb") as f:
            text = f.read(4096).decode("ascii", "replace").strip()
    except FileNotFoundError:
        return None
    prefix = "paxos-core first voters "
    try:
        if not text.startswith(prefix):
            raise ValueError
        voters = tuple(int(v) for v in text[len(prefix):].split(","))
    except ValueError:
        raise RecordCorrupt("%s: not a list of first voters: %r" % (path, text[:80])) from None
    return voters

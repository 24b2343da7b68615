"""Node configuration: one TOML file per node, its validation, and `paxos-core init` (write_cluster).

Layout of a node's file (paths are relative to the file's own directory)::

    [cluster]
    id = 1234567            # u64 cluster id, > 0
    groups = 16             # Paxos groups that exist at start: ids 0 .. groups-1
    workers = 2             # worker processes per node; the same on every node (worker i talks to worker i)
    keys_dir = "keys"       # CURVE keys; "" = no encryption/authentication
    state_machine = ""      # optional: "package.module:Factory", your own state machine (every node the
                            # same); "" = the built-in key-value store. See statemachine/loader.py
    alpha = 8               # optional: a membership change adopted at instance i governs from i + alpha on
                            # (docs/design/membership.md); the same on every node, and paxos.window <= alpha

    [[cluster.nodes]]       # every member, identical in every node's file
    id = 1
    host = "127.0.0.1"
    peer_port = 47100       # worker i listens for its peers on peer_port + i
    client_port = 47200     # worker i listens for clients (facade, CLI) on client_port + i
    metrics_port = 47300    # worker i serves Prometheus metrics on metrics_port + i; 0 = off (the default)

    [node]
    id = 1                  # which of cluster.nodes this file is for
    data_dir = "data/node1"

    [paxos]                 # all optional, defaults shown
    window = 8
    max_batch_count = 4096
    max_batch_bytes = 1048576
    max_value_bytes = 1048576
    tick_ms = 10
    lease_ticks = 300       # master lease, in ticks
    lease_margin = 0.3      # fraction of the lease the master gives up for clock-rate differences
    proposal_timeout_ticks = 500
    max_stale_lag = 1000    # a stale read is served only by a node whose group is at most this many instances
                            # behind the highest chosen mark it has heard of, and not rebuilding; otherwise it
                            # answers NotMaster (the client asks the master instead)

    [storage]               # optional
    durability = "sync"     # or "unsafe-no-sync" (tests only)
    retain_instances = 10000  # chosen values each group's log keeps below its applied mark; older ones are
                            # truncated and peers further behind get a snapshot (-1: never truncate)
    retain_bytes = 67108864 # ... but fewer when they weigh more than this many value bytes (0: no limit)
    peer_lag_instances = 100000   # a live peer at most this far behind also keeps logs from being cut past
                            # its mark, so it catches up from the log, not by snapshot (0: off) ...
    peer_lag_bytes = 268435456    # ... as long as the log then weighs at most retain_bytes + this

    [snapshot]              # optional, defaults shown: sending and receiving snapshots of groups
    chunk_bytes = 262144    # per chunk (at most limits.max_frame_bytes / 4; the default shrinks to fit)
    window_bytes = 2097152  # a receiver's credit per transfer: bytes in flight
    max_outgoing = 4        # transfers a worker sends at once ...
    max_incoming = 4        # ... and receives at once
    idle_timeout_ms = 30000 # a snapshot file nobody asked for in this long is deleted
    retry_ms = 500          # a receiver asks again for a chunk that did not come in this long

    [limits]                # optional, defaults shown
    max_pending = 20000     # proposals queued per worker before new ones fail with Overloaded
    max_frame_bytes = 67108864
    max_group_id = 1048575  # the highest group id `group add` may create (each worker keeps arrays of
                            # per-group state up to its highest group id); default: the larger of this and
                            # cluster.groups - 1
    max_request_timeout_ms = 60000  # the longest a client request may ask to wait (its timeout is capped at
                            # this; a request that gives none waits paxos.proposal_timeout_ticks)

Required: ``cluster.id``, ``cluster.groups``, ``cluster.workers``, ``cluster.keys_dir``, ``cluster.nodes``
(each with ``id``, ``host``, ``peer_port``, ``client_port``), ``node.id``, ``node.data_dir``.

Every problem raises :class:`~paxos_core.errors.ConfigError` with a message of the form
``<file>: <dotted.field>: <what is wrong>``, e.g. ``node1.toml: cluster.workers: must be an integer >= 1,
got 0``. Entries of ``cluster.nodes`` are named by their 0-based position in the file:
``cluster.nodes[2].peer_port``. Unknown keys are errors (a typo never silently falls back to a default).

Sharding: group ``g`` lives on worker ``g % workers`` on every node (:meth:`NodeConfig.worker_of`).

CURVE keys are found by convention in ``keys_dir``: node N's public key is ``node<N>.key`` and its secret key
``node<N>.key_secret`` (the files ``zmq.auth.create_certificates(keys_dir, "node<N>")`` writes). A node
needs every member's public key and its own secret key; the secret key file must not be readable by group or
others. The same keys secure the client sockets: a client with a member's key pair may add and remove groups
(see docs/architecture.md, "What is authenticated").
"""
import difflib
import errno
import ipaddress
import os
import re
import secrets
import shutil
import socket
import tomllib                  # Python 3.11+ (requires-python in pyproject.toml)
from dataclasses import dataclass
from pathlib import Path

from .core.config import SYSTEM_GROUP, CoreConfig, shard_of
from .errors import ConfigError

__all__ = [
    "NodeAddress",
    "NodeConfig",
    "load_config",
    "load_cluster",
    "write_cluster",
    "DURABILITY_MODES",
    "DEFAULTS",
]

DURABILITY_MODES = ("sync", "unsafe-no-sync")    # the same strings storage.log.RocksLog accepts

U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
MAX_NODE_ID = 0xFFFE            # ballots keep the node id in 16 bits; 0xFFFF is reserved
MAX_MEMBERS = 63                # CoreConfig's limit on voting members
MAX_WORKERS = 64
MAX_GROUPS = SYSTEM_GROUP       # group ids are u32 on the wire and on disk; the top two are reserved (the system group)

# Wire overheads used to check that one full instance fits in a frame (see wire/codec.pyx).
_FRAME_HEADER = 28
_MESSAGE_HEADER = 48
_BATCH_HEADER = 5               # u8 version, u32 count
_BATCH_ENTRY_HEADER = 14        # u16 origin, u64 seq, u32 length
_CATCHUP_ENTRY = 4 + 20         # a catch-up reply's entries header (u32 count) and entry header (instance,
                                # ballot, length): one full instance must fit a catch-up reply too

# Optional settings and their defaults, by table.
DEFAULTS = {
    "paxos": {
        "window": 8,
        "max_batch_count": 4096,
        "max_batch_bytes": 1 << 20,
        "max_value_bytes": 1 << 20,
        "tick_ms": 10,
        "lease_ticks": 300,
        "lease_margin": 0.3,
        "proposal_timeout_ticks": 500,
        "max_stale_lag": 1000,
    },
    "storage": {
        "durability": "sync",
        "retain_instances": 10000,
        "retain_bytes": 64 << 20,
        "peer_lag_instances": 100000,
        "peer_lag_bytes": 256 << 20,
    },
    "snapshot": {
        "chunk_bytes": 256 << 10,
        "window_bytes": 2 << 20,
        "max_outgoing": 4,
        "max_incoming": 4,
        "idle_timeout_ms": 30000,
        "retry_ms": 500,
    },
    "limits": {
        "max_pending": 20000,
        "max_frame_bytes": 64 << 20,
        "max_group_id": (1 << 20) - 1,
        "max_request_timeout_ms": 60000,
    },
}

def attribute_name(table, key):
    """The NodeConfig attribute of an optional setting: its key, prefixed with "snapshot_" in [snapshot]."""
    return "snapshot_" + key if table == "snapshot" else key


_TOP_KEYS = ("cluster", "node", "paxos", "storage", "snapshot", "limits")
_CLUSTER_KEYS = ("id", "groups", "workers", "keys_dir", "nodes", "state_machine", "alpha", "first_voters")
DEFAULT_ALPHA = 8               # cluster.alpha: the default window, so a default node file is within it
MAX_ALPHA = 1 << 16
_NODE_ENTRY_KEYS = ("id", "host", "peer_port", "client_port", "metrics_port")
_NODE_KEYS = ("id", "data_dir")

# write_cluster's port layout: node k (0-based) uses base + 300*k + {0: peer, 100: client, 200: metrics}.
_PORT_BLOCK = 100
_PORT_KINDS = ("peer", "client", "metrics")
# Random bases stay below Linux's ephemeral port range (32768-60999): a port there can be taken by an
# outgoing connection (a node reconnecting to a peer) between the check and the bind.
_RANDOM_BASE_RANGE = (10000, 32768)
_RANDOM_BASE_TRIES = 200

_WILDCARD_HOSTS = ("*", "0.0.0.0", "::", "[::]", "")


# ---------------------------------------------------------------------------------------------- addresses


def _endpoint_host(host):
    """Host as it goes inside tcp://HOST:PORT (IPv6 literals in brackets)."""
    if ":" in host and not host.startswith("["):
        return "[%s]" % host
    return host


def _bind_host(host):
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


@dataclass(frozen=True)
class NodeAddress:
    """Where one member's workers listen. Worker i uses each port + i."""

    id: int
    host: str
    peer_port: int
    client_port: int
    metrics_port: int = 0           # 0 = no metrics endpoint

    def peer_endpoint(self, worker):
        """ZeroMQ endpoint on which worker ``worker`` of this node listens for its peers."""
        return "tcp://%s:%d" % (_endpoint_host(self.host), self.peer_port + worker)

    def client_endpoint(self, worker):
        """ZeroMQ endpoint on which worker ``worker`` of this node listens for clients (facade, CLI)."""
        return "tcp://%s:%d" % (_endpoint_host(self.host), self.client_port + worker)

    def metrics_address(self, worker):
        """``(host, port)`` of worker ``worker``'s Prometheus endpoint, or None when metrics are off."""
        if not self.metrics_port:
            return None
        return (_bind_host(self.host), self.metrics_port + worker)


# ---------------------------------------------------------------------------------------------- validation


_TOML_TYPES = ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"), (dict, "table"),
               (list, "array"))


def _type_name(value):
    for py_type, name in _TOML_TYPES:
        if isinstance(value, py_type):
            return name
    return type(value).__name__      # dates and times


def _clip(text, limit):
    """`text` on one line and at most about `limit` characters: a message quotes what the file holds, which
    can be a key or a value of any length, with newlines in it."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else "%s... (%d characters)" % (text[:limit], len(text))


def _show(value):
    return "%s (%s)" % (_clip(repr(value), 80), _type_name(value))


class _Checker:
    """Reads one node's settings, raising ConfigError('<file>: <dotted>: <why>') on the first problem."""

    def __init__(self, label):
        self.label = label

    def fail(self, dotted, why):
        dotted, why = _clip(dotted, 120), _clip(why, 400)
        if self.label:
            raise ConfigError("%s: %s: %s" % (self.label, dotted, why))
        raise ConfigError("%s: %s" % (dotted, why))

    def table(self, parent, key, dotted, allowed, required=True):
        """The sub-table parent[key] (checked for unknown keys), or {} when optional and absent."""
        if key not in parent:
            if required:
                self.fail(dotted, "required table is missing")
            return {}
        value = parent[key]
        if not isinstance(value, dict):
            self.fail(dotted, "must be a table, got %s" % _show(value))
        self.known_keys(value, dotted, allowed)
        return value

    def known_keys(self, table, dotted, allowed):
        for key in table:
            if key not in allowed:
                where = "%s.%s" % (dotted, key) if dotted else str(key)
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                why = "unknown key"
                if hint:
                    why += " (did you mean %r?)" % hint[0]
                why += "; known keys%s: %s" % (" of [%s]" % dotted if dotted else "", ", ".join(allowed))
                self.fail(where, why)

    def get(self, table, key, dotted, default):
        if key in table:
            return table[key]
        if default is _REQUIRED:
            self.fail(dotted, "required key is missing")
        return default

    def integer(self, table, key, dotted, lo, hi=None, default=None):
        value = self.get(table, key, dotted, _REQUIRED if default is None else default)
        if not isinstance(value, int) or isinstance(value, bool):
            rng = "in %d..%d" % (lo, hi) if hi is not None else ">= %d" % lo
            self.fail(dotted, "must be an integer %s, got %s" % (rng, _show(value)))
        if value < lo:
            self.fail(dotted, "must be an integer >= %d, got %d" % (lo, value))
        if hi is not None and value > hi:
            self.fail(dotted, "must be an integer <= %d, got %d" % (hi, value))
        return value

    def port(self, table, key, dotted, workers, default=None, allow_off=False):
        """A base port: worker i uses port + i, so port + workers - 1 must still be a port."""
        value = self.get(table, key, dotted, _REQUIRED if default is None else default)
        if allow_off and isinstance(value, int) and not isinstance(value, bool) and value == 0:
            return 0
        what = "a port number in 1..65535" + (" or 0 (off)" if allow_off else "")
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
            self.fail(dotted, "must be %s, got %s" % (what, _show(value)))
        if value + workers - 1 > 65535:
            self.fail(dotted, "worker i uses port %d + i, so with cluster.workers = %d the last port %d is "
                              "above 65535" % (value, workers, value + workers - 1))
        return value

    def string(self, table, key, dotted, default=None, allow_empty=False):
        value = self.get(table, key, dotted, _REQUIRED if default is None else default)
        if not isinstance(value, str):
            self.fail(dotted, "must be a string, got %s" % _show(value))
        if not allow_empty and not value.strip():
            self.fail(dotted, "must not be empty")
        if "\x00" in value:
            self.fail(dotted, "must not contain a NUL character")
        return value


_REQUIRED = object()

_SPEC = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def state_machine_spec_problem(spec):
    """Why `spec` is not of the form "package.module:Factory" (an import path, then the factory's name), or
    None. Only the form is checked here; the import happens in each worker (statemachine/loader.py)."""
    if not isinstance(spec, str):
        return "must be a string \"package.module:Factory\", got %s" % _show(spec)
    if not _SPEC.fullmatch(spec):
        return ("must be \"package.module:Factory\" (a module's import path, a colon, then the name of a "
                "callable in it), got %s" % _show(spec))
    return None


def _resolve(base_dir, value):
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = Path(base_dir) / path
    return Path(os.path.normpath(os.path.abspath(path)))


def _host_problem(host):
    """Why ``host`` cannot be a node's address, or None."""
    if not host or host != host.strip() or any(ch.isspace() for ch in host) or "/" in host:
        return "must be a host name or IP address, got %r" % (host,)
    if host in _WILDCARD_HOSTS:
        return "must be an address the other nodes can connect to, not the wildcard %r" % host
    bare = _bind_host(host)
    if ":" in bare:
        try:
            ipaddress.IPv6Address(bare)
        except ValueError:
            return "must be a host name or IP address (ports go in the *_port keys), got %r" % host
    return None


def _same_host_key(host):
    host = _bind_host(host).lower().rstrip(".")
    return "127.0.0.1" if host == "localhost" else host


def _check_port_overlaps(c, nodes_in_file_order, workers):
    """No two listeners (peer/client/metrics ranges of any node) may share a host:port."""
    ranges = []     # (host key, first, last, dotted, description)
    for index, n in enumerate(nodes_in_file_order):
        for kind in _PORT_KINDS:
            port = getattr(n, kind + "_port")
            if not port:
                continue
            ranges.append((_same_host_key(n.host), port, port + workers - 1,
                           "cluster.nodes[%d].%s_port" % (index, kind),
                           "node %d %s ports %d..%d" % (n.id, kind, port, port + workers - 1)))
    for i, (host_a, lo_a, hi_a, dotted_a, what_a) in enumerate(ranges):
        for host_b, lo_b, hi_b, dotted_b, what_b in ranges[:i]:
            if host_a == host_b and lo_a <= hi_b and lo_b <= hi_a:
                c.fail(dotted_a, "%s on %s overlap %s (%s); every worker's peer, client and metrics port "
                                 "must be distinct on a host" % (what_a, host_a, dotted_b, what_b))


def _check_keys(c, keys_dir, members, node_id):
    import zmq.auth

    dotted = "cluster.keys_dir"
    try:
        is_dir = keys_dir.is_dir()
    except OSError as e:                       # a name too long for the file system, ...
        c.fail(dotted, "%s cannot be read: %s" % (keys_dir, e.strerror or e))
    if not is_dir:
        c.fail(dotted, "%s is not a directory (use \"\" to run without CURVE encryption)" % keys_dir)
    publics = {}
    for m in members:
        public_file = keys_dir / ("node%d.key" % m)
        if not public_file.is_file():
            c.fail(dotted, "public key of node %d is missing: %s" % (m, public_file))
        try:
            public, _ = zmq.auth.load_certificate(public_file)
        except (OSError, ValueError) as e:
            c.fail(dotted, "cannot read the public key of node %d from %s: %s" % (m, public_file, e))
        if len(public) != 40:
            c.fail(dotted, "%s does not hold a 40-character z85 CURVE public key" % public_file)
        publics[m] = public
    secret_file = keys_dir / ("node%d.key_secret" % node_id)
    if not secret_file.is_file():
        c.fail(dotted, "secret key of this node (%d) is missing: %s" % (node_id, secret_file))
    if os.name == "posix":
        mode = secret_file.stat().st_mode & 0o777
        if mode & 0o077:
            c.fail(dotted, "secret key file %s is accessible by other users (mode %04o); "
                           "run chmod 600 on it" % (secret_file, mode))
    try:
        public, secret = zmq.auth.load_certificate(secret_file)
    except (OSError, ValueError) as e:
        c.fail(dotted, "cannot read the secret key from %s: %s" % (secret_file, e))
    if secret is None or len(secret) != 40:
        c.fail(dotted, "%s does not hold a 40-character z85 CURVE secret key" % secret_file)
    if public != publics[node_id]:
        c.fail(dotted, "%s and %s hold different public keys" % (secret_file, keys_dir / ("node%d.key" % node_id)))


# ---------------------------------------------------------------------------------------------- NodeConfig


@dataclass(frozen=True)
class NodeConfig:
    """One node's configuration, every setting a flat attribute.

    Build it with :func:`load_config` or :meth:`from_dict`, which validate; the constructor trusts its input.
    """

    node_id: int
    cluster_id: int
    groups: int                     # groups that exist at start: ids 0 .. groups-1
    workers: int
    keys_dir: object                # absolute pathlib.Path, or None = no CURVE
    nodes: tuple                    # NodeAddress of every member, sorted by id
    data_dir: object                # absolute pathlib.Path
    window: int = DEFAULTS["paxos"]["window"]
    max_batch_count: int = DEFAULTS["paxos"]["max_batch_count"]
    max_batch_bytes: int = DEFAULTS["paxos"]["max_batch_bytes"]
    max_value_bytes: int = DEFAULTS["paxos"]["max_value_bytes"]
    tick_ms: int = DEFAULTS["paxos"]["tick_ms"]
    lease_ticks: int = DEFAULTS["paxos"]["lease_ticks"]
    lease_margin: float = DEFAULTS["paxos"]["lease_margin"]
    proposal_timeout_ticks: int = DEFAULTS["paxos"]["proposal_timeout_ticks"]
    max_stale_lag: int = DEFAULTS["paxos"]["max_stale_lag"]
    durability: str = DEFAULTS["storage"]["durability"]
    retain_instances: int = DEFAULTS["storage"]["retain_instances"]
    retain_bytes: int = DEFAULTS["storage"]["retain_bytes"]
    peer_lag_instances: int = DEFAULTS["storage"]["peer_lag_instances"]
    peer_lag_bytes: int = DEFAULTS["storage"]["peer_lag_bytes"]
    snapshot_chunk_bytes: int = DEFAULTS["snapshot"]["chunk_bytes"]
    snapshot_window_bytes: int = DEFAULTS["snapshot"]["window_bytes"]
    snapshot_max_outgoing: int = DEFAULTS["snapshot"]["max_outgoing"]
    snapshot_max_incoming: int = DEFAULTS["snapshot"]["max_incoming"]
    snapshot_idle_timeout_ms: int = DEFAULTS["snapshot"]["idle_timeout_ms"]
    snapshot_retry_ms: int = DEFAULTS["snapshot"]["retry_ms"]
    max_pending: int = DEFAULTS["limits"]["max_pending"]
    max_frame_bytes: int = DEFAULTS["limits"]["max_frame_bytes"]
    max_group_id: int = DEFAULTS["limits"]["max_group_id"]
    max_request_timeout_ms: int = DEFAULTS["limits"]["max_request_timeout_ms"]
    state_machine: str = ""         # "package.module:Factory" of the workers' state machine; "" = the KV store
    alpha: int = DEFAULT_ALPHA      # membership changes take effect alpha instances after they are chosen
    first_voters: tuple = ()        # cluster.first_voters: the groups' first configuration when it is not every
                                    # node of cluster.nodes (a node that joined later); () = cluster.nodes
    path: object = None             # the file it was loaded from (pathlib.Path), or None

    # ---------------------------------------------------------------- membership

    @property
    def me(self):
        """This node's NodeAddress."""
        for n in self.nodes:
            if n.id == self.node_id:
                return n
        raise ConfigError("node %d is not one of cluster.nodes" % self.node_id)

    @property
    def members(self):
        """Node ids of every member, ascending."""
        return tuple(n.id for n in self.nodes)

    @property
    def first_configuration(self):
        """The voters of a group that never adopted a membership epoch: cluster.first_voters, or every node of
        cluster.nodes (what `paxos-core init` writes). The same on every node of the cluster: a node that joined
        later has it in its node file from its join bundle, so a rebuild of its wiped disk finds it there."""
        return self.first_voters or self.members

    @property
    def peers(self):
        """NodeAddress of every other member, ascending by id."""
        return tuple(n for n in self.nodes if n.id != self.node_id)

    def address(self, node_id):
        """NodeAddress of member ``node_id``."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise ConfigError("node %r is not one of cluster.nodes %r" % (node_id, self.members))

    # ---------------------------------------------------------------- sharding

    def worker_of(self, group):
        """The worker (on every node) that hosts ``group``: ``group % workers``. THE sharding function."""
        if group < 0:
            raise ValueError("group ids are >= 0, got %r" % (group,))
        return shard_of(group, self.workers)

    def worker_groups(self, worker):
        """Ids of the groups worker ``worker`` hosts at start (ascending; empty if worker >= groups)."""
        self._check_worker(worker)
        return list(range(worker, self.groups, self.workers))

    def core_config(self, worker):
        """The CoreConfig of worker ``worker``'s engine: it hosts groups worker + k * workers."""
        self._check_worker(worker)
        n_groups = len(range(worker, self.groups, self.workers))
        return CoreConfig(
            node_id=self.node_id,
            members=self.members,
            n_groups=max(1, n_groups),
            group_offset=worker,
            group_stride=self.workers,
            system_group=worker == 0,
            window=self.window,
            max_batch_count=self.max_batch_count,
            max_batch_bytes=self.max_batch_bytes,
            max_value_bytes=self.max_value_bytes,
            proposal_timeout_ticks=self.proposal_timeout_ticks,
            # While the master leads, its acceptors refuse other leaders for as long as the master lease lasts:
            # nobody can get a value chosen behind the back of a master serving lease reads.
            sticky_ticks=self.lease_ticks,
            peer_lag_instances=self.peer_lag_instances if self.retain_instances >= 0 else 0,
        )

    def worker_data_dir(self, worker):
        """Where worker ``worker`` keeps its log: ``data_dir/worker-<i>``."""
        self._check_worker(worker)
        return Path(self.data_dir) / ("worker-%d" % worker)

    def _check_worker(self, worker):
        if isinstance(worker, bool) or not isinstance(worker, int) or not 0 <= worker < self.workers:
            raise ValueError("worker must be in 0..%d, got %r" % (self.workers - 1, worker))

    # ---------------------------------------------------------------- CURVE

    def curve_public_key(self, node_id):
        """Member ``node_id``'s CURVE public key (z85 bytes, as zmq uses it), or None without keys_dir."""
        if self.keys_dir is None:
            return None
        self.address(node_id)
        return self._load_key(Path(self.keys_dir) / ("node%d.key" % node_id), 0)

    def curve_secret_key(self):
        """This node's CURVE secret key (z85 bytes), or None without keys_dir."""
        if self.keys_dir is None:
            return None
        return self._load_key(Path(self.keys_dir) / ("node%d.key_secret" % self.node_id), 1)

    def _load_key(self, filename, which):
        import zmq.auth

        try:
            key = zmq.auth.load_certificate(filename)[which]
        except FileNotFoundError:
            hint = (" (made by `paxos-core keygen` on this host: put it into %s)" % Path(filename).parent
                    if which == 1 else "")
            raise ConfigError("%s: cannot read CURVE key: no such file%s" % (filename, hint)) from None
        except (OSError, ValueError) as e:
            raise ConfigError("%s: cannot read CURVE key: %s" % (filename, e)) from None
        if key is None:
            raise ConfigError("%s: holds no CURVE secret key" % filename)
        return key

    # ---------------------------------------------------------------- parsing

    @classmethod
    def from_dict(cls, d, base_dir, path=None):
        """Validate a parsed node file ``d``; relative paths are taken from ``base_dir``.

        ``path`` (the file, if any) is stored and names the file in error messages.
        """
        c = _Checker(os.fspath(path) if path is not None else None)
        if not isinstance(d, dict):
            c.fail("(top level)", "must be a table, got %s" % _show(d))
        c.known_keys(d, "", _TOP_KEYS)

        cluster = c.table(d, "cluster", "cluster", _CLUSTER_KEYS)
        cluster_id = c.integer(cluster, "id", "cluster.id", 1, U64_MAX)
        groups = c.integer(cluster, "groups", "cluster.groups", 1, MAX_GROUPS)
        workers = c.integer(cluster, "workers", "cluster.workers", 1, MAX_WORKERS)
        keys_value = c.string(cluster, "keys_dir", "cluster.keys_dir", allow_empty=True)
        state_machine = c.string(cluster, "state_machine", "cluster.state_machine", default="", allow_empty=True)
        problem = state_machine_spec_problem(state_machine) if state_machine else None
        if problem:
            c.fail("cluster.state_machine", problem)
        alpha = c.integer(cluster, "alpha", "cluster.alpha", 1, MAX_ALPHA, default=DEFAULT_ALPHA)
        first_voters = c.get(cluster, "first_voters", "cluster.first_voters", [])
        if (not isinstance(first_voters, list)
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_NODE_ID
                           for v in first_voters)
                or len(set(first_voters)) != len(first_voters) or len(first_voters) > MAX_MEMBERS):
            c.fail("cluster.first_voters", "must be a list of distinct node ids (1..%d, at most %d), got %s"
                   % (MAX_NODE_ID, MAX_MEMBERS, _show(first_voters)))
        if "first_voters" in cluster and not first_voters:
            c.fail("cluster.first_voters", "must not be empty (leave it out: every node of cluster.nodes)")

        raw_nodes = c.get(cluster, "nodes", "cluster.nodes", _REQUIRED)
        if not isinstance(raw_nodes, list) or not all(isinstance(n, dict) for n in raw_nodes):
            c.fail("cluster.nodes", "must be an array of tables ([[cluster.nodes]]), got %s" % _show(raw_nodes))
        if not raw_nodes:
            c.fail("cluster.nodes", "must list at least one node")
        if len(raw_nodes) > MAX_MEMBERS:
            c.fail("cluster.nodes", "at most %d members, got %d" % (MAX_MEMBERS, len(raw_nodes)))
        nodes = []
        seen = {}
        for index, entry in enumerate(raw_nodes):
            where = "cluster.nodes[%d]" % index
            c.known_keys(entry, where, _NODE_ENTRY_KEYS)
            node_id = c.integer(entry, "id", where + ".id", 1, MAX_NODE_ID)
            if node_id in seen:
                c.fail(where + ".id", "node id %d is already used by cluster.nodes[%d]" % (node_id, seen[node_id]))
            seen[node_id] = index
            host = c.string(entry, "host", where + ".host")
            if _host_problem(host):
                c.fail(where + ".host", _host_problem(host))
            nodes.append(NodeAddress(
                id=node_id,
                host=host,
                peer_port=c.port(entry, "peer_port", where + ".peer_port", workers),
                client_port=c.port(entry, "client_port", where + ".client_port", workers),
                metrics_port=c.port(entry, "metrics_port", where + ".metrics_port", workers, default=0,
                                    allow_off=True),
            ))
        _check_port_overlaps(c, nodes, workers)

        node = c.table(d, "node", "node", _NODE_KEYS)
        node_id = c.integer(node, "id", "node.id", 1, MAX_NODE_ID)
        if node_id not in seen:
            c.fail("node.id", "%d is not one of cluster.nodes (ids %s)"
                   % (node_id, ", ".join(str(n.id) for n in sorted(nodes, key=lambda n: n.id))))
        data_value = c.string(node, "data_dir", "node.data_dir")

        p = DEFAULTS["paxos"]
        paxos = c.table(d, "paxos", "paxos", tuple(p), required=False)
        window = c.integer(paxos, "window", "paxos.window", 1, default=p["window"])
        if window > alpha:
            # A leader may act up to `window` instances past its chosen mark; the voters of those instances are
            # known only up to alpha past it (docs/design/membership.md, rule R2).
            c.fail("paxos.window", "%d is more than cluster.alpha (%d): a leader must never run further ahead "
                   "than alpha instances; lower paxos.window, or set cluster.alpha (the same in every node's "
                   "file) at least as high" % (window, alpha))
        max_batch_count = c.integer(paxos, "max_batch_count", "paxos.max_batch_count", 1, U32_MAX,
                                    default=p["max_batch_count"])
        max_batch_bytes = c.integer(paxos, "max_batch_bytes", "paxos.max_batch_bytes", 1, U32_MAX,
                                    default=p["max_batch_bytes"])
        max_value_bytes = c.integer(paxos, "max_value_bytes", "paxos.max_value_bytes", 1, U32_MAX,
                                    default=p["max_value_bytes"])
        tick_ms = c.integer(paxos, "tick_ms", "paxos.tick_ms", 1, default=p["tick_ms"])
        lease_ticks = c.integer(paxos, "lease_ticks", "paxos.lease_ticks", 1, default=p["lease_ticks"])
        lease_margin = c.get(paxos, "lease_margin", "paxos.lease_margin", p["lease_margin"])
        if (not isinstance(lease_margin, (int, float)) or isinstance(lease_margin, bool)
                or not (0 < lease_margin < 1)):
            c.fail("paxos.lease_margin", "must be a number with 0 < lease_margin < 1, got %s" % _show(lease_margin))
        lease_margin = float(lease_margin)
        proposal_timeout_ticks = c.integer(paxos, "proposal_timeout_ticks", "paxos.proposal_timeout_ticks", 1,
                                           default=p["proposal_timeout_ticks"])
        max_stale_lag = c.integer(paxos, "max_stale_lag", "paxos.max_stale_lag", 0, (1 << 62),
                                  default=p["max_stale_lag"])

        storage = c.table(d, "storage", "storage", tuple(DEFAULTS["storage"]), required=False)
        durability = c.string(storage, "durability", "storage.durability",
                              default=DEFAULTS["storage"]["durability"])
        if durability not in DURABILITY_MODES:
            c.fail("storage.durability", "must be one of %s, got %r"
                   % (", ".join(repr(m) for m in DURABILITY_MODES), durability))
        retain_instances = c.integer(storage, "retain_instances", "storage.retain_instances", -1, (1 << 62),
                                     default=DEFAULTS["storage"]["retain_instances"])
        retain_bytes = c.integer(storage, "retain_bytes", "storage.retain_bytes", 0, (1 << 62),
                                 default=DEFAULTS["storage"]["retain_bytes"])
        peer_lag_instances = c.integer(storage, "peer_lag_instances", "storage.peer_lag_instances", 0, (1 << 62),
                                       default=DEFAULTS["storage"]["peer_lag_instances"])
        peer_lag_bytes = c.integer(storage, "peer_lag_bytes", "storage.peer_lag_bytes", 0, (1 << 62),
                                   default=DEFAULTS["storage"]["peer_lag_bytes"])

        lim = DEFAULTS["limits"]
        limits = c.table(d, "limits", "limits", tuple(lim), required=False)
        max_pending = c.integer(limits, "max_pending", "limits.max_pending", 1, default=lim["max_pending"])
        max_frame_bytes = c.integer(limits, "max_frame_bytes", "limits.max_frame_bytes", 1, U32_MAX,
                                    default=lim["max_frame_bytes"])
        max_group_id = c.integer(limits, "max_group_id", "limits.max_group_id", 0, MAX_GROUPS - 1,
                                 default=max(lim["max_group_id"], groups - 1))
        if max_group_id < groups - 1:
            c.fail("limits.max_group_id", "must be at least cluster.groups - 1 = %d (the groups that exist at "
                                          "start), got %d" % (groups - 1, max_group_id))
        # (A request's timeout is a u32 of milliseconds on the wire.)
        max_request_timeout_ms = c.integer(limits, "max_request_timeout_ms", "limits.max_request_timeout_ms", 1,
                                           U32_MAX, default=lim["max_request_timeout_ms"])
        # One Accept (or catch-up reply) carrying a full instance must fit in a frame: a batch holds up to
        # max_batch_count proposals and max_batch_bytes of payload (or one proposal of max_value_bytes,
        # whichever is larger).
        needed = (_FRAME_HEADER + _MESSAGE_HEADER + _CATCHUP_ENTRY + _BATCH_HEADER
                  + _BATCH_ENTRY_HEADER * max_batch_count + max(max_batch_bytes, max_value_bytes))
        if max_frame_bytes < needed:
            c.fail("limits.max_frame_bytes", "must be at least %d to carry one full instance (frame and message "
                                             "headers, paxos.max_batch_count = %d proposals, max(paxos."
                                             "max_batch_bytes, paxos.max_value_bytes) = %d payload bytes), got %d"
                   % (needed, max_batch_count, max(max_batch_bytes, max_value_bytes), max_frame_bytes))

        snap = DEFAULTS["snapshot"]
        snapshot = c.table(d, "snapshot", "snapshot", tuple(snap), required=False)
        # A chunk fits a quarter of a frame, as a catch-up reply does (the default shrinks to fit).
        chunk_limit = max(4096, max_frame_bytes // 4)
        chunk_bytes = c.integer(snapshot, "chunk_bytes", "snapshot.chunk_bytes", 4096, chunk_limit,
                                default=min(snap["chunk_bytes"], chunk_limit))
        window_bytes = c.integer(snapshot, "window_bytes", "snapshot.window_bytes", chunk_bytes, 1 << 40,
                                 default=max(snap["window_bytes"], chunk_bytes))
        max_outgoing = c.integer(snapshot, "max_outgoing", "snapshot.max_outgoing", 1, 1024,
                                 default=snap["max_outgoing"])
        max_incoming = c.integer(snapshot, "max_incoming", "snapshot.max_incoming", 1, 1024,
                                 default=snap["max_incoming"])
        idle_timeout_ms = c.integer(snapshot, "idle_timeout_ms", "snapshot.idle_timeout_ms", 100, 1 << 40,
                                    default=snap["idle_timeout_ms"])
        retry_ms = c.integer(snapshot, "retry_ms", "snapshot.retry_ms", 10, 1 << 40, default=snap["retry_ms"])

        base = Path(os.path.abspath(base_dir))
        keys_dir = _resolve(base, keys_value) if keys_value != "" else None
        members = tuple(sorted(seen))
        if keys_dir is not None:
            _check_keys(c, keys_dir, members, node_id)

        config = cls(
            node_id=node_id,
            cluster_id=cluster_id,
            groups=groups,
            workers=workers,
            keys_dir=keys_dir,
            nodes=tuple(sorted(nodes, key=lambda n: n.id)),
            data_dir=_resolve(base, data_value),
            window=window,
            max_batch_count=max_batch_count,
            max_batch_bytes=max_batch_bytes,
            max_value_bytes=max_value_bytes,
            tick_ms=tick_ms,
            lease_ticks=lease_ticks,
            lease_margin=lease_margin,
            proposal_timeout_ticks=proposal_timeout_ticks,
            max_stale_lag=max_stale_lag,
            durability=durability,
            retain_instances=retain_instances,
            retain_bytes=retain_bytes,
            peer_lag_instances=peer_lag_instances,
            peer_lag_bytes=peer_lag_bytes,
            snapshot_chunk_bytes=chunk_bytes,
            snapshot_window_bytes=window_bytes,
            snapshot_max_outgoing=max_outgoing,
            snapshot_max_incoming=max_incoming,
            snapshot_idle_timeout_ms=idle_timeout_ms,
            snapshot_retry_ms=retry_ms,
            max_pending=max_pending,
            max_frame_bytes=max_frame_bytes,
            max_group_id=max_group_id,
            max_request_timeout_ms=max_request_timeout_ms,
            state_machine=state_machine,
            alpha=alpha,
            first_voters=tuple(sorted(first_voters)),
            path=Path(os.path.abspath(path)) if path is not None else None,
        )
        # Backstop: every worker's core config must be acceptable to the core itself.
        for worker in range(workers):
            try:
                config.core_config(worker)
            except ConfigError as e:
                c.fail("(core config of worker %d)" % worker, str(e))
        return config

    def to_dict(self):
        """The settings as a node file's dict (absolute paths; load with from_dict(d, any_dir))."""
        d = {
            "cluster": {
                "id": self.cluster_id,
                "groups": self.groups,
                "workers": self.workers,
                "keys_dir": str(self.keys_dir) if self.keys_dir is not None else "",
                "nodes": [{"id": n.id, "host": n.host, "peer_port": n.peer_port, "client_port": n.client_port,
                           "metrics_port": n.metrics_port} for n in self.nodes],
            },
            "node": {"id": self.node_id, "data_dir": str(self.data_dir)},
        }
        if self.state_machine:
            d["cluster"]["state_machine"] = self.state_machine
        if self.alpha != DEFAULT_ALPHA:
            d["cluster"]["alpha"] = self.alpha
        if self.first_voters:
            d["cluster"]["first_voters"] = list(self.first_voters)
        # Only the settings that differ from their defaults: a file another build reads (a join bundle's node
        # file) names no setting it does not need, and a default stays a default.
        for table, defaults in DEFAULTS.items():
            changed = {key: getattr(self, attribute_name(table, key)) for key in defaults
                       if getattr(self, attribute_name(table, key)) != defaults[key]}
            if changed:
                d[table] = changed
        return d


def load_config(path):
    """Read and validate one node's TOML file. Raises ConfigError naming the file and the field."""
    label = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s: not valid TOML: %s" % (label, e)) from None
    except UnicodeDecodeError as e:
        raise ConfigError("%s: not valid TOML (not UTF-8): %s" % (label, e)) from None
    except OSError as e:
        raise ConfigError("%s: cannot read: %s" % (label, e.strerror or e)) from None
    return NodeConfig.from_dict(data, os.path.dirname(os.path.abspath(path)), path=path)


def load_cluster(directory):
    """Load every ``*.toml`` in ``directory``, or with one folder per host (``paxos-core init --node``) every
    ``node<id>/node<id>.toml`` (sorted by node id); they must describe one cluster."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError("%s: not a directory" % directory)
    files = sorted(directory.glob("*.toml")) or sorted(directory.glob("node*/node*.toml"))
    if not files:
        raise ConfigError("%s: holds no node files (*.toml, or node<id>/node<id>.toml per host)" % directory)
    configs = [load_config(f) for f in files]
    first = configs[0]
    by_id = {}
    for cfg, f in zip(configs, files):
        for attr, dotted in (("cluster_id", "cluster.id"), ("nodes", "cluster.nodes"),
                             ("workers", "cluster.workers"), ("groups", "cluster.groups"),
                             ("state_machine", "cluster.state_machine"), ("alpha", "cluster.alpha")):
            mine, theirs = getattr(cfg, attr), getattr(first, attr)
            if mine != theirs:
                if attr == "nodes":
                    why = "differs from %s; every node's file must list the same members and addresses" % files[0]
                else:
                    why = "%r differs from %s (%r); every node's file must agree" % (mine, files[0], theirs)
                raise ConfigError("%s: %s: %s" % (f, dotted, why))
        if cfg.node_id in by_id:
            raise ConfigError("%s: node.id: %d is also the node of %s" % (f, cfg.node_id, by_id[cfg.node_id]))
        by_id[cfg.node_id] = f
    return sorted(configs, key=lambda cfg: cfg.node_id)


# ---------------------------------------------------------------------------------------------- write_cluster


def _cluster_ports(base, nodes, workers):
    """Node k (0-based) gets peer/client/metrics bases base + 300*k + 0/100/200."""
    return [{kind: base + _PORT_BLOCK * (len(_PORT_KINDS) * k + j) for j, kind in enumerate(_PORT_KINDS)}
            for k in range(nodes)]


def _ports_free(host, ports):
    """True if every TCP port can be bound on host now (SO_REUSEADDR, as ZeroMQ binds). None if host is
    not an address of this machine (nothing can be checked)."""
    try:
        infos = socket.getaddrinfo(_bind_host(host), None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return None
    # IPv4 first: that is what ZeroMQ resolves a name to unless IPv6 is switched on.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    for port in ports:
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((sockaddr[0], port) + tuple(sockaddr[2:]))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                return None
            return False
        finally:
            s.close()
    return True


def _arg_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError("%s: must be an integer in %d..%d, got %s" % (name, lo, hi, _show(value)))
    if value < lo:
        raise ConfigError("%s: must be an integer >= %d, got %d" % (name, lo, value))
    if value > hi:
        raise ConfigError("%s: must be an integer <= %d, got %d" % (name, hi, value))
    return value


def write_cluster(directory, nodes=3, workers=2, groups=16, host="127.0.0.1", base_port=None, curve=True,
                  cluster_id=None, durability="sync", hosts=None, public_keys=None, alpha=DEFAULT_ALPHA):
    """Write a ready-to-run cluster of ``nodes`` nodes into ``directory``; returns the node files written.

    Files: ``<dir>/node<id>.toml`` (ids 1..nodes), data dirs ``<dir>/data/node<id>`` each holding the node's
    identity marker (``IDENTITY``, see storage/identity.py), and when ``curve`` is
    true ``<dir>/keys/node<id>.key`` (public) and ``node<id>.key_secret`` (secret, mode 0600; the keys
    directory is mode 0700). Ports: node k (0-based) uses peer/client/metrics bases ``base + 300*k +
    0/100/200``, worker i each base + i. ``base_port`` None picks a random base in [10000, 32768 - span) at which
    every one of those ports is free on ``host`` now (checked by binding; not checked when ``host`` is not an
    address of this machine, nor when ``base_port`` is given). ``cluster_id`` None draws a random id in
    1..2**63-1 (a u64 that every TOML parser accepts).

    ``hosts`` (a list: the address of node 1, 2, ...; it sets ``nodes``) places the nodes on many hosts. Then
    each node gets a self-contained folder ``<dir>/node<id>/`` to copy to its host: ``node<id>.toml``, its
    data directory ``data/node<id>`` with the identity marker, and ``keys/`` holding every member's public key
    and only that node's secret key. Ports follow the same layout (a host with two nodes has no clash).
    ``public_keys`` (a directory with ``node<id>.key`` for every node, from ``paxos-core keygen`` on each host;
    only with ``hosts``) uses those keys and writes no secret key at all: each host keeps its own.
    ``alpha`` is the cluster's ``cluster.alpha`` (membership changes take effect alpha instances after they are
    chosen; fixed for the cluster's life); the files' ``paxos.window`` is the smaller of 8 and alpha.

    Refuses (ConfigError) a directory that already holds ``*.toml`` files (or node folders), a data directory
    that is not empty and key files that already exist. The result is loaded back with :func:`load_cluster`
    as a check.
    """
    import tomli_w

    from .storage.identity import write_marker

    per_host = hosts is not None
    if per_host and (not isinstance(hosts, (list, tuple)) or not hosts):
        raise ConfigError("hosts: must be a non-empty list of addresses (node 1's first), got %s" % _show(hosts))
    nodes = _arg_int("nodes", len(hosts) if per_host else nodes, 1, MAX_MEMBERS)
    workers = _arg_int("workers", workers, 1, MAX_WORKERS)
    groups = _arg_int("groups", groups, 1, MAX_GROUPS)
    alpha = _arg_int("alpha", alpha, 1, MAX_ALPHA)
    if public_keys is not None and not (per_host and curve):
        raise ConfigError("public_keys: only with hosts (one folder per host) and CURVE on")
    node_hosts = list(hosts) if per_host else [host] * nodes
    for k, h in enumerate(node_hosts):
        if not isinstance(h, str) or _host_problem(h):
            raise ConfigError("%s: %s" % ("host of node %d" % (k + 1) if per_host else "host",
                                          _host_problem(h) if isinstance(h, str) else
                                          "must be a string, got %s" % _show(h)))
    if durability not in DURABILITY_MODES:
        raise ConfigError("durability: must be one of %s, got %r"
                          % (", ".join(repr(m) for m in DURABILITY_MODES), durability))
    if cluster_id is None:
        cluster_id = secrets.randbelow((1 << 63) - 1) + 1
    cluster_id = _arg_int("cluster_id", cluster_id, 1, U64_MAX)

    span = _PORT_BLOCK * (len(_PORT_KINDS) * (nodes - 1) + len(_PORT_KINDS) - 1) + workers   # ports base..base+span-1
    if base_port is not None:
        base_port = _arg_int("base_port", base_port, 1, 65536 - span)
    else:
        lo, hi = _RANDOM_BASE_RANGE
        hi = hi - span
        for _ in range(_RANDOM_BASE_TRIES):
            candidate = lo + secrets.randbelow(hi - lo)
            free = True
            for k, node in enumerate(_cluster_ports(candidate, nodes, workers)):
                ports = [p + w for p in node.values() for w in range(workers)]
                if _ports_free(node_hosts[k], ports) is False:
                    free = False
                    break
            if free:
                base_port = candidate
                break
        else:
            raise ConfigError("base_port: found no base in [%d, %d) at which all %d ports are free on %s; "
                              "pass one explicitly" % (lo, hi, nodes * workers * len(_PORT_KINDS),
                                                       ", ".join(sorted(set(node_hosts)))))
    layout = _cluster_ports(base_port, nodes, workers)

    directory = Path(directory)
    ids = range(1, nodes + 1)
    # Where each node's files go: its own folder per host, or all in one directory.
    home = {node_id: directory / ("node%d" % node_id) if per_host else directory for node_id in ids}
    # Refuse before creating anything.
    if directory.exists():
        if not directory.is_dir():
            raise ConfigError("%s: exists and is not a directory" % directory)
        existing = sorted(directory.glob("*.toml")) + sorted(directory.glob("node*/*.toml"))
        if existing:
            raise ConfigError("%s: already holds node files (%s); refusing to overwrite a cluster"
                              % (directory, ", ".join(str(p.relative_to(directory)) for p in existing)))
    given = {}
    if public_keys is not None:
        for node_id in ids:
            given[node_id] = Path(public_keys) / ("node%d.key" % node_id)
            try:
                import zmq.auth

                public, secret = zmq.auth.load_certificate(given[node_id])
            except (OSError, ValueError) as e:
                raise ConfigError("%s: cannot read node %d's public key (from `paxos-core keygen` on its host): %s"
                                  % (given[node_id], node_id, e)) from None
            if secret is not None:
                raise ConfigError("%s: holds a secret key; give public keys only (secret keys never leave "
                                  "their host)" % given[node_id])
    for node_id in ids:
        data = home[node_id] / "data" / ("node%d" % node_id)
        if data.exists() and (not data.is_dir() or any(data.iterdir())):
            raise ConfigError("%s: data directory exists and is not empty (state of another cluster?)" % data)
        if curve:
            for keys in {home[owner] / "keys" for owner in ids}:
                for suffix in (".key", ".key_secret"):
                    key_file = keys / ("node%d%s" % (node_id, suffix))
                    if key_file.exists():
                        raise ConfigError("%s: key file already exists; refusing to replace it" % key_file)

    try:
        directory.mkdir(parents=True, exist_ok=True)
        for node_id in ids:
            data = home[node_id] / "data" / ("node%d" % node_id)
            data.mkdir(parents=True, exist_ok=True)
            write_marker(data, node_id, cluster_id)
        if curve:
            import zmq.auth

            made = directory / ("keys" if not per_host else ".keys-being-written")
            made.mkdir(mode=0o700, exist_ok=True)
            os.chmod(made, 0o700)
            for node_id in ids:
                if node_id in given:
                    shutil.copyfile(given[node_id], made / ("node%d.key" % node_id))
                    os.chmod(made / ("node%d.key" % node_id), 0o644)
                    continue
                public_file, secret_file = zmq.auth.create_certificates(made, "node%d" % node_id)
                os.chmod(secret_file, 0o600)
                os.chmod(public_file, 0o644)
            if per_host:
                # Every folder gets every member's public key and its own node's secret key only.
                for owner in ids:
                    keys = home[owner] / "keys"
                    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
                    os.chmod(keys, 0o700)
                    for node_id in ids:
                        names = [".key"] + ([".key_secret"] if node_id == owner and not given else [])
                        for suffix in names:
                            name = "node%d%s" % (node_id, suffix)
                            shutil.copy2(made / name, keys / name)
                shutil.rmtree(made)

        members = [{"id": node_id, "host": node_hosts[k], "peer_port": layout[k]["peer"],
                    "client_port": layout[k]["client"], "metrics_port": layout[k]["metrics"]}
                   for k, node_id in enumerate(ids)]
        written = []
        for node_id in ids:
            header = ("# paxos-core node %d of cluster %d (%d nodes x %d workers, %d groups), written by "
                      "paxos-core init.\n# Paths are relative to this file's directory. Every node's file must "
                      "have the same [cluster] table.\n\n" % (node_id, cluster_id, nodes, workers, groups))
            cluster = {"id": cluster_id, "groups": groups, "workers": workers, "keys_dir": "keys" if curve else "",
                       "alpha": alpha}
            rest = {
                "node": {"id": node_id, "data_dir": "data/node%d" % node_id},
                "paxos": dict(DEFAULTS["paxos"], window=min(DEFAULTS["paxos"]["window"], alpha)),
                "storage": {"durability": durability},
                "limits": dict(DEFAULTS["limits"], max_group_id=max(DEFAULTS["limits"]["max_group_id"], groups - 1)),
            }
            # [[cluster.nodes]] blocks written by hand: tomli_w would pick inline tables for short entries.
            text = header + tomli_w.dumps({"cluster": cluster})
            for member in members:
                text += "\n[[cluster.nodes]]\n" + tomli_w.dumps(member)
            text += "\n" + tomli_w.dumps(rest)
            path = home[node_id] / ("node%d.toml" % node_id)
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
            written.append(path)
    except OSError as e:
        raise ConfigError("%s: cannot write the cluster: %s" % (directory, e)) from None

    if not given:
        load_cluster(directory)       # (without the secret keys, which stay on their hosts, a node cannot load)
    return written


def write_node_keys(directory, node_id):
    """``paxos-core keygen``: a CURVE key pair for node ``node_id`` in ``directory`` (``node<id>.key``, public,
    and ``node<id>.key_secret``, mode 0600; the directory is created mode 0700); ``node_id`` "new": for a node
    that will join (``new.key``, ``new.key_secret``). Refuses existing key files.
    Returns (public file, secret file)."""
    import zmq.auth

    stem = "new" if node_id == "new" else "node%d" % _arg_int("node", node_id, 1, MAX_NODE_ID)
    directory = Path(directory)
    for suffix in (".key", ".key_secret"):
        if (directory / (stem + suffix)).exists():
            raise ConfigError("%s: key file already exists; refusing to replace it" % (directory / (stem + suffix)))
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        public_file, secret_file = zmq.auth.create_certificates(directory, stem)
        os.chmod(secret_file, 0o600)
        os.chmod(public_file, 0o644)
    except OSError as e:
        raise ConfigError("%s: cannot write the keys: %s" % (directory, e)) from None
    return Path(public_file), Path(secret_file)

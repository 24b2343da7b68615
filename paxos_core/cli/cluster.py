"""`paxos-core node`, `kv`, `status` and `group`: run a node, and talk to a running cluster.

The cluster is the directory of its node files: ``--cluster DIR``, else the environment variable
``PAXOS_CORE_CLUSTER`` (the flag wins). Errors are one line on stderr (see cli/main.py for the exit codes).
"""
import argparse
import json
import os
import signal
import sys
import threading

from ..core.config import SYSTEM_GROUP
from ..errors import ConfigError
from . import kv as kv_cli
from .parsing import add_shared, int_range, positive_float

CLUSTER_ENV = "PAXOS_CORE_CLUSTER"
# u32 on the wire (wire/rpc.py) and on disk; the top two ids are reserved (0xFFFFFFFE: the system group)
GROUP_ID = int_range(0, SYSTEM_GROUP - 1, "a group id")
EXIT_REMOVED = 4        # `paxos-core node`: the membership table removed this node; it stopped for good


def cmd_node(args):
    """Run one node in the foreground until SIGTERM or SIGINT, then stop cleanly.

    Log lines go to stderr (the workers' too: they reach this process through the supervisor). While the node
    starts they are held back: a start that fails prints one line, the reason, and exits 1 (with
    --log-level debug the held lines come first); "running" is printed only once every worker is up.
    """
    import logging.handlers

    from ..errors import StartError
    from ..node import Node

    level = getattr(logging, args.log_level.upper())
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"))
    held = logging.handlers.MemoryHandler(capacity=100000, flushLevel=logging.CRITICAL + 1, target=console,
                                          flushOnClose=False)
    root = logging.getLogger()
    root.setLevel(level)
    root.addHandler(held)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    config_path = args.config
    if args.bundle is not None and (args.join or not args.rebuild or config_path is None):
        args._parser.error("--bundle goes with FILE --rebuild (a member whose data directory was lost)")
    try:
        if args.join:
            from ..join import install, read_bundle

            bundle = read_bundle(args.join)
            folder = args.dir or "node%d" % int(bundle["node_id"])
            config_path = install(bundle, folder)
            print("node %d joins cluster %d: its folder is %s" % (bundle["node_id"], bundle["cluster_id"], folder),
                  flush=True)
        elif config_path is None:
            args._parser.error("give the node's FILE, or --join BUNDLE")
        node = Node(config_path, log_level=level, rebuild=args.rebuild, bundle=args.bundle)
    except (ConfigError, StartError) as exc:
        root.removeHandler(held)
        if level <= logging.DEBUG:
            held.flush()
        held.close()
        print("paxos-core node: %s" % exc, file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    root.removeHandler(held)
    root.addHandler(console)
    held.flush()
    held.close()
    node.supervisor.on_failure = lambda reason: stop.set()
    cfg = node.config
    print("node %d of cluster %d running: %d workers, %d groups, clients on %s:%d..%d (pids %s)"
          % (cfg.node_id, cfg.cluster_id, cfg.workers, cfg.groups, cfg.me.host, cfg.me.client_port,
             cfg.me.client_port + cfg.workers - 1, node.supervisor.pids()), flush=True)
    if node.supervisor.failure is None:
        stop.wait()
    failure = node.supervisor.failure
    if failure is None:
        print("node %d stopping" % cfg.node_id, flush=True)
    node.close()
    if failure is not None:
        print("paxos-core node: %s" % failure, file=sys.stderr)
        return EXIT_REMOVED if node.supervisor.removed_epoch is not None else 1
    return 0


def connect(args):
    """(Client, the first node's config) for the cluster of `args.cluster`."""
    from ..client import Client
    from ..config import load_cluster

    try:
        configs = load_cluster(args.cluster)
    except ConfigError as exc:
        if getattr(args, "cluster_from_env", False):
            raise ConfigError("%s (the cluster named by $%s)" % (exc, CLUSTER_ENV)) from None
        raise
    cfg = configs[0]
    return Client.from_config(cfg, prefer=cfg.node_id, default_timeout=args.timeout), cfg


def resolve_cluster(parser, args):
    """--cluster, else $PAXOS_CORE_CLUSTER; neither is the parser's one-line error."""
    if not getattr(args, "cluster", None):
        args.cluster = os.environ.get(CLUSTER_ENV) or None
        args.cluster_from_env = args.cluster is not None
    if args.cluster is None:
        parser.error("no cluster given: pass --cluster DIR (the directory of its node files) or set %s"
                     % CLUSTER_ENV)


def cmd_kv(args):
    try:
        values = kv_cli.prepare(args)
    except kv_cli.UsageError as exc:
        args._parser.error(str(exc))
    client, cfg = connect(args)
    try:
        return kv_cli.run(args, client, cfg, *values)
    finally:
        client.close()


def cmd_status(args):
    client, _ = connect(args)
    try:
        rows = client.status(timeout=args.timeout)
    finally:
        client.close()
    down = sum(1 for r in rows if "error" in r)
    if args.write_out == "json":
        print(json.dumps(rows, indent=1))
        return 1 if down == len(rows) else 0
    print("%4s %6s %7s %8s %9s %9s %8s %8s %8s %9s %8s %10s" % ("node", "worker", "groups", "masters", "chosen",
                                                                "applied", "max-lag", "fsyncs", "pending",
                                                                "repairing", "log-MB", "snap in/out"))
    log_bytes = {}
    for r in rows:
        if "error" in r:
            print("%4d %6d  unreachable: %s" % (r["node"], r["worker"], r["error"]))
            continue
        chosen = sum(g["chosen"] for g in r["group_detail"])
        applied = sum(g["applied"] for g in r["group_detail"])
        nbytes = r["log"].get("log_bytes", 0)
        log_bytes[r["node"]] = log_bytes.get(r["node"], 0) + nbytes
        snaps = r.get("snapshots", {})
        print("%4d %6d %7d %8d %9d %9d %8d %8d %8d %9d %8.1f %10s" % (
            r["node"], r["worker"], r["groups"], r["masters"], chosen, applied, r["max_lag"], r["log"]["syncs"],
            r["pending"], r.get("repairing", 0), nbytes / 1e6,
            "%d/%d" % (len(snaps.get("incoming", [])), len(snaps.get("outgoing", [])))))
    for node, nbytes in sorted(log_bytes.items()):
        print("node %d: %.1f MB of log and state machine on disk and in memtables" % (node, nbytes / 1e6))
    unwell = [(r["node"], g) for r in rows for g in r.get("group_detail", []) if g.get("status", "ok") != "ok"]
    for node, g in unwell:
        repair = g.get("repair") or {}
        print("node %d group %d is %s: %s%s" % (
            node, g["group"], g["status"], g.get("reason") or "",
            " (rebuild phase %s, learning up to %d; it finishes by itself)" % (repair["phase"], repair["target"])
            if repair else ""))
    if args.groups:
        print()
        print("%4s %6s %6s %7s %6s %9s %9s %6s %10s %9s" % ("node", "worker", "group", "master", "epoch", "chosen",
                                                            "applied", "lag", "role", "low"))
        for r in rows:
            for g in r.get("group_detail", []):
                print("%4d %6d %6d %7d %6d %9d %9d %6d %10s %9d" % (r["node"], r["worker"], g["group"], g["master"],
                                                                     g["epoch"], g["chosen"], g["applied"], g["lag"],
                                                                     g["role"], g.get("low", 0)))
    return 1 if down == len(rows) else 0


def _group_infos(client, group, timeout):
    """{node: group_info} from every member (Client.admin_nodes); a node that cannot be asked fails the command
    (nothing changed)."""
    from ..errors import PaxosError

    infos = {}
    for n in client.admin_nodes(timeout):
        try:
            infos[n] = client.group_info(group, n, timeout=timeout)
        except PaxosError as exc:
            raise PaxosError("group %d: node %d cannot be asked (%s: %s); nothing was changed"
                             % (group, n, type(exc).__name__, exc)) from None
    return infos


def _node_list(text):
    try:
        nodes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        nodes = []
    if not nodes:
        raise argparse.ArgumentTypeError("expected node ids separated by commas, like 3,4,5; got %r" % text)
    return nodes


def cmd_group(args):
    client, cfg = connect(args)
    try:
        if args.action == "move":
            change = client.membership.place(args.group, args.to, timeout=args.timeout)
            if args.wait is not None:
                change.wait(timeout=args.wait)
            print("group %d votes on nodes %s from epoch %d%s" % (
                args.group, ",".join(map(str, args.to)), change.epoch,
                "" if change.changed else " (already so: nothing changed)"))
            return 0
        infos = _group_infos(client, args.group, args.timeout)
        hosts = sorted(n for n, i in infos.items() if i["hosted"])
        if args.action == "add":
            incarnations = {infos[n]["incarnation"] for n in hosts}
            if len(hosts) == len(infos) and len(incarnations) == 1:
                print("group %d already exists on every node (incarnation %d); nothing changed"
                      % (args.group, incarnations.pop()))
                return 0
            incarnation = client.add_group(args.group, timeout=args.timeout)
            print("group %d added on every node (incarnation %d)" % (args.group, incarnation))
            if args.replicas:
                # Its voters: the least loaded nodes (by the groups each votes in), lowest ids first on a tie.
                load = client.membership.groups_per_node(max(cfg.groups, args.group + 1), args.timeout)
                chosen = sorted(sorted(load, key=lambda n: (load[n], n))[:args.replicas])
                change = client.membership.place(args.group, chosen, timeout=args.timeout)
                print("group %d votes on nodes %s from epoch %d" % (args.group, ",".join(map(str, chosen)),
                                                                      change.epoch))
            return 0
        if not hosts:
            print("paxos-core group remove: group %d does not exist on any node; nothing was removed"
                  % args.group, file=sys.stderr)
            return kv_cli.EXIT_NO
        if not args.yes:
            print("paxos-core group remove: removing group %d deletes its data on every node (%s), for good; "
                  "run again with --yes to remove it" % (args.group, ", ".join("node %d" % n for n in hosts)),
                  file=sys.stderr)
            return 2
        client.remove_group(args.group, timeout=args.timeout)
        print("group %d removed on every node; its data is deleted (the id can be added again, empty)"
              % args.group)
        return 0
    finally:
        client.close()


def cluster_opts(p, shared=False, write_out=False):
    """--cluster, --timeout (and --write-out) on a command that talks to a cluster. `shared`: its parent
    command takes them too (``kv --cluster D put`` and ``kv put --cluster D`` both work)."""
    add_shared(p, ("--cluster",), shared, metavar="DIR", default=None,
               help="directory of the cluster's node files (default: $%s)" % CLUSTER_ENV)
    add_shared(p, ("--timeout",), shared, type=positive_float, default=5.0, metavar="SECONDS",
               help="seconds per request")
    if write_out:
        add_shared(p, ("-w", "--write-out"), shared, choices=("text", "json"), default="text",
                   help="text, or json: one JSON object per line (UTF-8 text or base64, named by its "
                        "encoding field)")
    p.set_defaults(_parser=p)


def register(sub):
    from ..config import DEFAULTS, MAX_NODE_ID
    from . import member

    member.register(sub, cluster_opts, int_range(1, MAX_NODE_ID, "a node id"), int_range(1, 65535, "a port"))
    p = sub.add_parser("node", help="run a node in the foreground until SIGTERM/SIGINT",
                       description="Run the node of FILE (its supervisor and worker processes) in the "
                                   "foreground until SIGTERM or SIGINT, then stop cleanly (exit code 0). Exit codes "
                                   "otherwise: 1 it failed to start or stopped on a failure (the reason on stderr), "
                                   "2 a bad node file or join bundle, 4 the cluster removed this node.")
    p.add_argument("config", metavar="FILE", nargs="?", default=None,
                   help="the node's TOML file (from paxos-core init, or written by --join)")
    p.add_argument("--join", metavar="BUNDLE", default=None,
                   help="join a running cluster: write this node's folder from the bundle of `paxos-core member add "
                        "--out` (with this host's key pair from `paxos-core keygen DIR/keys`), then run it")
    p.add_argument("--dir", metavar="DIR", default=None,
                   help="with --join: the node's folder (default: ./node<ID>)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="logging level")
    p.add_argument("--rebuild", action="store_true",
                   help="the node's data directory was lost (a replaced disk): rebuild every group from the peers "
                        "before voting again. Without it, a data directory lacking its identity marker is refused")
    p.add_argument("--bundle", metavar="BUNDLE", default=None,
                   help="with FILE --rebuild: first bring FILE's nodes and the keys up to the cluster's table, from "
                        "the bundle of `paxos-core member bundle ID --out BUNDLE` (when the nodes FILE lists were "
                        "replaced since)")
    p.set_defaults(func=cmd_node, _parser=p)

    kv_cli.register(sub, cluster_opts).set_defaults(func=cmd_kv, needs_cluster=True)

    p = sub.add_parser("status", help="per node and worker: groups, masters, chosen/applied, lag",
                       description="Per node and worker: groups, masters, chosen and applied instances, lag, "
                                   "fsyncs, pending requests, rebuilding groups. Exits 1 if no worker answers.")
    cluster_opts(p)
    p.add_argument("--groups", action="store_true", help="also one line per group (first 64 per worker)")
    p.add_argument("-w", "--write-out", choices=("text", "json"), default="text",
                   help="text, or json: one JSON document (a list, one object per node and worker)")
    p.add_argument("--json", dest="write_out", action="store_const", const="json", default=argparse.SUPPRESS,
                   help="the same as --write-out json")
    p.set_defaults(func=cmd_status, needs_cluster=True)

    p = sub.add_parser("group", help="add or remove a group on every node while the cluster runs",
                       description="Add a group to every node, or remove one (and its data) from every node, "
                                   "while the cluster runs.")
    cluster_opts(p)
    actions = p.add_subparsers(dest="action", required=True, metavar="{add,remove,move}")
    def action(name, help, description):
        q = actions.add_parser(name, help=help, description=description)
        q.add_argument("group", metavar="G", type=GROUP_ID,
                       help="group id, 0..limits.max_group_id of the node files (%d by default, or cluster.groups - 1 "
                            "if that is larger); the nodes refuse a higher one" % DEFAULTS["limits"]["max_group_id"])
        return q

    q = action("add", "create group G on every node (a new, empty incarnation)",
               "Create group G on every node, in an incarnation newer than any a node removed. Refused while some "
               "node still holds an incarnation another node removed (finish the removal first). Idempotent.")
    q.add_argument("--replicas", type=int_range(1, 7, "a number of voters"), default=None,
                   help="its voters: this many of the least loaded nodes (default: the cluster's voters)")
    cluster_opts(q, shared=True)
    q = action("move", "group G votes on other nodes (a membership change of that group only)",
               "Group G votes on the nodes --to from now on (every node still holds it; the new voters have "
               "learned every value as learners). Compare-and-set and idempotent like every membership change.")
    q.add_argument("--to", type=_node_list, required=True, metavar="IDS", help="its voters, like 3,4,5")
    q.add_argument("--wait", type=float, nargs="?", const=120.0, default=None, metavar="SECONDS",
                   help="wait until every node's copy of the group votes on them (default 120 s)")
    cluster_opts(q, shared=True)
    q = action("remove", "delete group G and its data on every node (needs --yes)",
               "Delete group G and ALL its data on every node. Refused without --yes, and for a group that no node "
               "holds. Requests in flight for the group fail; a write acknowledged before the removal is deleted "
               "with it.")
    q.add_argument("--yes", action="store_true", help="yes, delete the group's data on every node")
    cluster_opts(q, shared=True)
    p.set_defaults(func=cmd_group, needs_cluster=True)

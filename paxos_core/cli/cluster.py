"""`paxos-core node`, `kv`, `status` and `group`: run a node, and talk to a running cluster."""
import logging
import signal
import sys
import threading

from ..errors import ConfigError, PaxosError


def cmd_node(args):
    """Run one node in the foreground until SIGTERM or SIGINT, then stop cleanly."""
    from ..node import Node

    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        node = Node(args.config, log_level=getattr(logging, args.log_level.upper()))
    except ConfigError as exc:
        print("paxos-core node: %s" % exc, file=sys.stderr)
        return 2
    cfg = node.config
    print("node %d of cluster %d running: %d workers, %d groups, clients on %s:%d..%d (pids %s)"
          % (cfg.node_id, cfg.cluster_id, cfg.workers, cfg.groups, cfg.me.host, cfg.me.client_port,
             cfg.me.client_port + cfg.workers - 1, node.supervisor.pids()), flush=True)
    stop.wait()
    print("node %d stopping" % cfg.node_id, flush=True)
    node.close()
    return 0


def _client(args):
    from ..client import Client

    return Client.from_cluster_dir(args.cluster, default_timeout=args.timeout)


def cmd_kv(args):
    from ..kv import KV
    from ..statemachine import kv as ops

    try:
        client = _client(args)
    except ConfigError as exc:
        print("paxos-core kv: %s" % exc, file=sys.stderr)
        return 2
    try:
        kv = KV(client, client.groups)
        key = args.key.encode()
        if args.op == "get":
            value = kv.get(key, mode=args.mode)
            if value is None:
                print("(not found)", file=sys.stderr)
                return 1
            sys.stdout.buffer.write(value + b"\n")
            return 0
        if args.op == "put":
            status, _ = kv.put(key, args.values[0].encode())
        elif args.op == "delete":
            status, _ = kv.delete(key)
        else:
            if len(args.values) != 2:
                print("paxos-core kv cas: expects KEY OLD NEW", file=sys.stderr)
                return 2
            old = None if args.values[0] == "-" else args.values[0].encode()
            if not kv.cas(key, old, args.values[1].encode()):
                current = kv.get(key, mode="linearizable")
                print("cas failed: current value is %s" % ("absent" if current is None else current.decode(
                    errors="replace")), file=sys.stderr)
                return 1
            status = ops.OK
        if status == ops.NOT_FOUND:
            print("(not found)", file=sys.stderr)
            return 1
        print(ops.STATUS_NAMES.get(status, status))
        return 0 if status == ops.OK else 1
    except PaxosError as exc:
        print("paxos-core kv: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
        return 3
    finally:
        client.close()


def cmd_status(args):
    try:
        client = _client(args)
    except ConfigError as exc:
        print("paxos-core status: %s" % exc, file=sys.stderr)
        return 2
    try:
        rows = client.status(timeout=args.timeout)
    finally:
        client.close()
    if args.json:
        import json

        print(json.dumps(rows, indent=1))
        return 0
    print("%4s %6s %7s %8s %9s %9s %8s %8s %8s %9s" % ("node", "worker", "groups", "masters", "chosen",
                                                       "applied", "max-lag", "fsyncs", "pending", "repairing"))
    down = 0
    for r in rows:
        if "error" in r:
            down += 1
            print("%4d %6d  unreachable: %s" % (r["node"], r["worker"], r["error"]))
            continue
        chosen = sum(g["chosen"] for g in r["group_detail"])
        applied = sum(g["applied"] for g in r["group_detail"])
        print("%4d %6d %7d %8d %9d %9d %8d %8d %8d %9d" % (r["node"], r["worker"], r["groups"], r["masters"],
                                                           chosen, applied, r["max_lag"], r["log"]["syncs"],
                                                           r["pending"], r.get("repairing", 0)))
    unwell = [(r["node"], g) for r in rows for g in r.get("group_detail", []) if g.get("status", "ok") != "ok"]
    for node, g in unwell:
        repair = g.get("repair") or {}
        print("node %d group %d is %s: %s%s" % (
            node, g["group"], g["status"], g.get("reason") or "",
            " (rebuild phase %s, learning up to %d; it finishes by itself)" % (repair["phase"], repair["target"])
            if repair else ""))
    if args.groups:
        print()
        print("%4s %6s %6s %7s %6s %9s %9s %6s %10s" % ("node", "worker", "group", "master", "epoch", "chosen",
                                                        "applied", "lag", "role"))
        for r in rows:
            for g in r.get("group_detail", []):
                print("%4d %6d %6d %7d %6d %9d %9d %6d %10s" % (r["node"], r["worker"], g["group"], g["master"],
                                                                 g["epoch"], g["chosen"], g["applied"], g["lag"],
                                                                 g["role"]))
    return 1 if down == len(rows) else 0


def cmd_group(args):
    try:
        client = _client(args)
    except ConfigError as exc:
        print("paxos-core group: %s" % exc, file=sys.stderr)
        return 2
    try:
        if args.action == "add":
            client.add_group(args.group)
        else:
            client.remove_group(args.group)
        print("group %d %s on every node" % (args.group, "added" if args.action == "add" else "removed"))
        return 0
    except PaxosError as exc:
        print("paxos-core group: %s" % exc, file=sys.stderr)
        return 3
    finally:
        client.close()


def register(sub):
    p = sub.add_parser("node", help="run a node in the foreground until SIGTERM/SIGINT")
    p.add_argument("config", help="the node's TOML file (from paxos-core init)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_node)

    def cluster_opts(p):
        p.add_argument("--cluster", required=True, help="directory of the cluster's node files")
        p.add_argument("--timeout", type=float, default=5.0, help="seconds per request")

    p = sub.add_parser("kv", help="use the replicated key-value store",
                       description="put KEY VALUE | get KEY | delete KEY | cas KEY OLD NEW (OLD '-' = absent). "
                                   "get prints the value; a missing key exits 1.")
    cluster_opts(p)
    p.add_argument("--mode", default="lease", choices=["lease", "linearizable", "stale"], help="read mode of get")
    p.add_argument("op", choices=["put", "get", "delete", "cas"])
    p.add_argument("key")
    p.add_argument("values", nargs="*")
    p.set_defaults(func=cmd_kv)

    p = sub.add_parser("status", help="per node and worker: groups, masters, chosen/applied, lag")
    cluster_opts(p)
    p.add_argument("--groups", action="store_true", help="also one line per group (first 64 per worker)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("group", help="add or remove a group on every node while the cluster runs")
    cluster_opts(p)
    p.add_argument("action", choices=["add", "remove"])
    p.add_argument("group", type=int)
    p.set_defaults(func=cmd_group)

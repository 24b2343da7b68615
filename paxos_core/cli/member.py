"""`paxos-core member list|status|bundle|add|promote|remove|replace|update`: the cluster's members, through the
system group (paxos_core/membership.py). Every change is compare-and-set on the epoch (--expect, default: the one just
read), idempotent (run it again after a failure: a change already made prints "unchanged"), and checked first
(--force skips the checks: learner caught up, live quorum after the change)."""
from __future__ import annotations

import json


def _print_change(args, change, what):
    out = {"op": change.op, "epoch": change.epoch, "changed": change.changed, "node": change.node}
    if args.wait is not None:
        out["progress"] = change.wait(timeout=args.wait)
    if args.json:
        print(json.dumps(out))
        return 0
    print("epoch %d: %s%s" % (change.epoch, what, "" if change.changed else " (already so: nothing changed)"))
    if args.wait is not None:
        print("every group of every node that answers adopted epoch %d's voters %s"
              % (change.epoch, ",".join(map(str, out["progress"]["voters"]))))
    return 0


def _table_lines(table):
    lines = ["epoch %d, alpha %d; voters %s; learners %s" % (
        table["epoch"], table["alpha"], ",".join(map(str, table["voters"])) or "-",
        ",".join(map(str, table["learners"])) or "-")]
    lines.append("%5s %8s %-24s %9s %11s %s" % ("id", "role", "host", "peer-port", "client-port", "replaces"))
    for n in table["nodes"]:
        lines.append("%5d %8s %-24s %9d %11d %s" % (n["id"], n["role"], n["host"], n["peer_port"], n["client_port"],
                                                   n.get("replaces") or "-"))
    return lines


def cmd_member(args):
    from .cluster import connect

    client, cfg = connect(args)
    try:
        m = client.membership
        m.max_lag = args.max_lag
        if args.action == "list":
            table = m.table(args.timeout)
            print(json.dumps(table) if args.json else "\n".join(_table_lines(table)))
            return 0
        if args.action == "bundle":
            from ..errors import ConfigError
            from ..join import make_bundle, write_bundle

            table = m.table(args.timeout)
            if not any(n["id"] == args.id and n["role"] != "removed" for n in table["nodes"]):
                raise ConfigError("node %d is not a member (epoch %d of the table)" % (args.id, table["epoch"]))
            history = m.history(args.timeout)
            write_bundle(args.out, make_bundle(cfg, table, args.id, history[0]["voters"]))
            print("epoch %d: node %d's bundle is %s (nodes %s; on its host, after its data directory was lost: "
                  "`paxos-core node FILE --rebuild --bundle %s`)" % (
                      table["epoch"], args.id, args.out,
                      ",".join(str(n["id"]) for n in table["nodes"] if n["role"] != "removed"), args.out))
            return 0
        if args.action == "status":
            status = m.status(args.timeout)
            status["progress"] = m.progress(status["epoch"], args.timeout)
            if args.json:
                print(json.dumps(status))
                return 0
            print("epoch %d; voters %s; learners %s" % (status["epoch"], ",".join(map(str, status["voters"])),
                                                        ",".join(map(str, status["learners"])) or "-"))
            print("%5s %8s %8s %6s %8s %9s %7s" % ("id", "role", "answers", "ready", "epoch", "max-lag", "groups"))
            for n in status["nodes"]:
                print("%5d %8s %8s %6s %8d %9s %7d" % (n["id"], n["role"], "yes" if n["answers"] else "no",
                                                       "yes" if n["ready"] else "no", n["epoch_known"],
                                                       "-" if n["max_lag"] is None else n["max_lag"],
                                                       n.get("groups_voting", 0)))
            progress = status["progress"]
            if progress["done"]:
                print("every group of every node that answers votes on epoch %d's voters" % status["epoch"])
            else:
                for w in progress["waiting"]:
                    print("node %d worker %d: knows epoch %d, %d groups still adopting" % (
                        w["node"], w["worker"], w["epoch"], w["groups_to_check"] + w["groups_adopting"]))
            for n in status["nodes"]:
                if n["groups_missing"]:
                    print("node %d lacks group(s) %s, which other members hold: `paxos-core group add G` puts each "
                          "there (`member promote` does so for a learner)"
                          % (n["id"], ",".join(map(str, n["groups_missing"]))))
            if status["mismatch"]:
                print("the node files list nodes %s; the table (the truth since epoch 1) has %s" % (
                    ",".join(map(str, status["mismatch"]["node_files"])),
                    ",".join(map(str, status["mismatch"]["table"]))))
            return 0
        expect = args.expect
        if args.action == "add":
            key = args.public_key
            if args.key_file:
                import zmq.auth

                try:
                    key = zmq.auth.load_certificate(args.key_file)[0].decode()
                except (OSError, ValueError) as exc:
                    from ..errors import ConfigError

                    raise ConfigError("%s: not a public key file of `paxos-core keygen`: %s" % (args.key_file, exc))
            change = m.add(args.host, args.peer_port, args.client_port, key or "-", args.replaces, expect,
                           args.timeout)
            if args.out:
                from ..join import make_bundle, write_bundle

                history = m.history(args.timeout)
                write_bundle(args.out, make_bundle(cfg, m.table(args.timeout), change.node, history[0]["voters"]))
            return _print_change(args, change, "node %d added as a learner%s" % (
                change.node, "; its join bundle is %s (start it with `paxos-core node --join %s`)"
                % (args.out, args.out) if args.out else ""))
        if args.action == "promote":
            change = m.promote(args.id, expect, args.force, args.timeout)
            return _print_change(args, change, "node %d promoted to voter" % args.id)
        if args.action == "remove":
            change = m.remove(args.id, expect, args.force, args.timeout)
            return _print_change(args, change, "node %d removed" % args.id)
        if args.action == "replace":
            change = m.replace(args.old, args.new, expect, args.force, args.timeout)
            return _print_change(args, change, "node %d replaced by node %d" % (args.old, args.new))
        change = m.update(args.id, args.host, args.peer_port, args.client_port, expect, args.timeout)
        return _print_change(args, change, "node %d now at %s (peer port %d, client port %d)"
                             % (args.id, args.host, args.peer_port, args.client_port))
    finally:
        client.close()


def register(sub, cluster_opts, node_id, port):
    p = sub.add_parser("member", help="the cluster's members: list, status, bundle, add, promote, remove, replace, "
                                      "update",
                       description="The cluster's members, kept by the system group (its table is the truth once "
                                   "the node files seeded it). Changes need the cluster's credentials, are "
                                   "compare-and-set on the epoch and idempotent.")
    cluster_opts(p)
    actions = p.add_subparsers(dest="action", required=True,
                               metavar="{list,status,bundle,add,promote,remove,replace,update}")

    def common(q, change=True):
        cluster_opts(q, shared=True)
        q.add_argument("--json", action="store_true", help="one JSON object")
        q.add_argument("--max-lag", type=int, default=1000, metavar="N",
                       help="instances a node may lag and still count as caught up (default 1000)")
        if change:
            q.add_argument("--expect", type=int, default=None, metavar="EPOCH",
                           help="the epoch the change is made against (default: the one read just before)")
            q.add_argument("--wait", type=float, nargs="?", const=120.0, default=None, metavar="SECONDS",
                           help="wait until every group adopted the change (default 120 s)")
        q.set_defaults(func=cmd_member, needs_cluster=True)

    common(actions.add_parser("list", help="the membership table"), change=False)
    common(actions.add_parser("status", help="the table and how each node stands"), change=False)
    q = actions.add_parser("bundle", help="member ID's bundle of the table's nodes and keys, for its rebuild")
    q.add_argument("id", type=node_id, metavar="ID")
    q.add_argument("--out", metavar="FILE", required=True,
                   help="write it here (no secrets in it): `paxos-core node FILE --rebuild --bundle BUNDLE` on "
                        "its host, when its data directory was lost and the nodes its file lists were replaced")
    common(q, change=False)
    q = actions.add_parser("add", help="a new node, as a learner (it gets a new id)")
    q.add_argument("--host", required=True)
    q.add_argument("--peer-port", type=port, required=True)
    q.add_argument("--client-port", type=port, required=True)
    q.add_argument("--public-key", default=None, help="its CURVE public key (z85, from `paxos-core keygen`)")
    q.add_argument("--key-file", default=None, help="... or the file that holds it")
    q.add_argument("--replaces", type=node_id, default=None, help="a dead voter whose address it takes")
    q.add_argument("--out", metavar="FILE", default=None,
                   help="write the new node's join bundle here (no secrets in it): `paxos-core node --join FILE` on "
                        "its host")
    common(q)
    for name, text in (("promote", "learner ID becomes a voter"), ("remove", "node ID leaves the cluster")):
        q = actions.add_parser(name, help=text)
        q.add_argument("id", type=node_id, metavar="ID")
        q.add_argument("--force", action="store_true", help="skip the checks (caught up, live quorum)")
        common(q)
    q = actions.add_parser("replace", help="voter OLD is removed and learner NEW becomes a voter, in one epoch")
    q.add_argument("old", type=node_id, metavar="OLD")
    q.add_argument("new", type=node_id, metavar="NEW")
    q.add_argument("--force", action="store_true", help="skip the checks (caught up, live quorum)")
    common(q)
    q = actions.add_parser("update", help="node ID moved to another address")
    q.add_argument("id", type=node_id, metavar="ID")
    q.add_argument("--host", required=True)
    q.add_argument("--peer-port", type=port, required=True)
    q.add_argument("--client-port", type=port, required=True)
    common(q)
    return p

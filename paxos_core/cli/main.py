"""The `paxos-core` command line."""
import argparse
import sys

from .._version import __version__


def cmd_info(args):
    import platform

    from .. import native
    from ..wire import checksum

    print("paxos-core %s (Python %s)" % (__version__, platform.python_version()))
    for name, compiled, path in native.all_status():
        print("  %-32s %s  %s" % (name, "compiled" if compiled else "NOT COMPILED", path))
    print("  crc32c: %s" % ("SSE4.2 instruction" if checksum.hardware_accelerated() else "portable tables"))
    return 0


def _int_list(text):
    try:
        return tuple(int(x) for x in text.split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a comma-separated list of integers, got %r" % text)


def cmd_sim(args):
    from ..core.config import PLANTS
    from ..sim.runner import plan, run_many, summary_line
    from ..sim.simulation import FAULT_KINDS

    if args.faults in ("all", ""):
        faults = FAULT_KINDS
    elif args.faults == "none":
        faults = ()
    else:
        faults = tuple(f for f in args.faults.split(",") if f)
        unknown = [f for f in faults if f not in FAULT_KINDS]
        if unknown:
            print("paxos-core sim: unknown fault kind(s) %s; known: %s" % (", ".join(unknown), ", ".join(FAULT_KINDS)),
                  file=sys.stderr)
            return 2
    if args.plant and args.plant not in PLANTS:
        print("paxos-core sim: unknown plant %r; known: %s" % (args.plant, ", ".join(PLANTS)), file=sys.stderr)
        return 2
    for n in args.nodes:
        if n < 1 or n > 9:
            print("paxos-core sim: --nodes must be between 1 and 9, got %d" % n, file=sys.stderr)
            return 2
    configs = plan(args.seeds, args.seed_base, args.nodes, args.groups, faults, args.plant, args.ops, args.window)
    results, trace = run_many(configs, jobs=args.jobs, fail_fast=args.fail_fast, progress=args.progress)
    if args.verbose:
        for r in results:
            print("seed=%d %s events=%d chosen=%d acked=%d/%d crashes=%d trace=%s"
                  % (r.seed, "ok" if r.ok else "FAILED", r.events, r.chosen, r.acked, r.proposed, r.crashes, r.trace))
    print(summary_line(results, trace))
    return 0 if all(r.ok for r in results) and len(results) == len(configs) else 1


def cmd_bench(args):
    if args.what == "storage":
        from ..bench import storage

        groups = args.groups or storage.QUICK_GROUPS
        seconds = args.seconds if args.seconds is not None else (0.3 if args.quick else 1.0)
        repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
        storage.run(groups, seconds, repeat, args.value_size, args.dir)
        return 0
    print("paxos-core bench: %r is not available yet" % args.what, file=sys.stderr)
    return 2


def cmd_init(args):
    """`paxos-core init`: write a ready-to-run cluster's node files, data dirs and CURVE keys."""
    from ..config import write_cluster
    from ..errors import ConfigError

    try:
        files = write_cluster(args.dir, nodes=args.nodes, workers=args.workers, groups=args.groups,
                              host=args.host, base_port=args.base_port, curve=not args.no_curve,
                              cluster_id=args.cluster_id)
    except ConfigError as e:
        print("paxos-core init: %s" % e, file=sys.stderr)
        return 2
    from ..config import load_config

    first = load_config(files[0])
    print("wrote cluster %d: %d nodes x %d workers, %d groups, CURVE %s"
          % (first.cluster_id, len(files), first.workers, first.groups,
             "keys in %s" % first.keys_dir if first.keys_dir else "off (no encryption)"))
    for path in files:
        cfg = load_config(path)
        me = cfg.me
        print("  %s  node %d  peer %s:%d  client %s:%d  metrics %s:%d  data %s"
              % (path, me.id, me.host, me.peer_port, me.host, me.client_port, me.host, me.metrics_port,
                 cfg.data_dir))
    if cfg.workers > 1:
        print("  (worker i of a node listens on each port + i)")
    print("next steps: start every node, each in its own terminal:")
    for path in files:
        print("  paxos-core node %s" % path)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="paxos-core", description="Multi-Paxos for Python.")
    parser.add_argument("--version", action="version", version="paxos-core " + __version__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print the version and which native modules are compiled")
    p.set_defaults(func=cmd_info)

    from . import cluster

    cluster.register(sub)

    p = sub.add_parser("sim", help="run the deterministic cluster simulator over many seeds",
                       description="Run seeds S..S+N-1 of the deterministic simulator. Exits 0 only if no "
                                   "invariant broke; the last line is the summary with a hash of every trace.")
    p.add_argument("--seeds", type=int, default=100, help="how many seeds (default 100)")
    p.add_argument("--seed-base", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--nodes", type=_int_list, default=(3,), help="node counts, e.g. 3 or 3,5 (seeds cycle)")
    p.add_argument("--groups", type=_int_list, default=(1,), help="group counts, e.g. 1,64 (seeds cycle)")
    p.add_argument("--faults", default="all", help="'all', 'none' or a comma list of fault kinds")
    p.add_argument("--plant", default="", help="switch on a planted bug (the run must then fail)")
    p.add_argument("--ops", type=int, default=None, help="client proposals per seed")
    p.add_argument("--window", type=int, default=None, help="instances in flight per group")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing seed")
    p.add_argument("--progress", action="store_true", help="print progress every 50 seeds")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per seed")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("bench", help="benchmarks", description="Benchmarks. `storage`: group commit against "
                       "one synced write per record; the last line is a JSON summary.")
    p.add_argument("what", nargs="?", default="storage", choices=["storage"], help="which benchmark")
    p.add_argument("--quick", action="store_true", help="short measurements (well under a minute)")
    p.add_argument("--groups", type=_int_list, default=None, help="groups per worker, e.g. 1,16,256,4096")
    p.add_argument("--seconds", type=float, default=None, help="seconds per measurement")
    p.add_argument("--repeat", type=int, default=None, help="measurements per figure (the median is shown)")
    p.add_argument("--value-size", type=int, default=100, help="bytes per value (default 100)")
    p.add_argument("--dir", default=None, help="where the temporary databases go (default: the temp dir)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("init", help="write the node files, data dirs and CURVE keys of a new cluster",
                       description="Write DIR/node<id>.toml for ids 1..N, data directories DIR/data/node<id> "
                                   "and (unless --no-curve) CURVE keys in DIR/keys. Refuses a DIR that already "
                                   "holds *.toml files.")
    p.add_argument("dir", metavar="DIR", help="directory to write the cluster into (created if missing)")
    p.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--workers", type=int, default=2, help="worker processes per node (default 2)")
    p.add_argument("--groups", type=int, default=16, help="Paxos groups at start (default 16)")
    p.add_argument("--host", default="127.0.0.1", help="address of every node (default 127.0.0.1)")
    p.add_argument("--base-port", type=int, default=None,
                   help="first port; node k uses base+300k (peer), +100 (client), +200 (metrics), worker i "
                        "each + i (default: a random base at which every port is free)")
    p.add_argument("--no-curve", action="store_true", help="no CURVE keys: traffic unencrypted, unauthenticated")
    p.add_argument("--cluster-id", type=int, default=None, help="cluster id (default: random)")
    p.set_defaults(func=cmd_init)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

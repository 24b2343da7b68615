"""The `paxos-core` command line.

Every mistake and every expected failure is ONE line on stderr, never a traceback (``--debug`` or
``PAXOS_CORE_DEBUG=1`` shows the traceback of an expected failure too). Exit codes:

    0  done
    1  the answer is no: key not found, compare-and-set failed, no such group, no worker answered `status`
    2  usage or configuration error: a bad argument (``paxos-core CMD: error: ...``), a bad or missing node
       file or cluster directory
    3  the operation failed: a paxos-core error (Timeout, ValueTooLarge, GroupStopped, ...), an I/O error
    4  `kv put | delete | cas`: the write's outcome is unknown (a Timeout: it may be applied, now or later);
       the line names its request id, and the same command with `--request-id CLIENT:SEQ` asks again
  130  interrupted (Ctrl-C)

`paxos-core node` (cli/cluster.py): 0 once stopped by SIGTERM or SIGINT, 1 it failed to start or stopped on a
failure, 2 a bad node file or join bundle, 4 the membership table removed this node.
"""
import argparse
import json
import os
import sys

from .._version import __version__
from .parsing import (Parser, int_list, int_range, node_host, non_negative_float, one_line, positive_float,
                      word_list)

DEBUG_ENV = "PAXOS_CORE_DEBUG"
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130


def cmd_info(args):
    import platform

    from .. import native
    from ..wire import checksum

    print("paxos-core %s (Python %s)" % (__version__, platform.python_version()))
    for name, compiled, path in native.all_status():
        print("  %-32s %s  %s" % (name, "compiled" if compiled else "NOT COMPILED", path))
    print("  crc32c: %s" % ("SSE4.2 instruction" if checksum.hardware_accelerated() else "portable tables"))
    return 0


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
    if args.state_machine:
        from ..errors import ConfigError
        from ..statemachine.loader import factory_for
        from ..statemachine.store import MemoryStore

        # A module in the current directory is found too (the seeds' processes inherit this sys.path).
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
        try:
            factory_for(args.state_machine)(MemoryStore())
        except ConfigError as exc:
            print("paxos-core sim: %s" % exc, file=sys.stderr)
            return 2
    configs = plan(args.seeds, args.seed_base, args.nodes, args.groups, faults, args.plant, args.clients, args.window,
                   args.state_machine)
    progress = None
    if args.progress:
        from .progress import Progress

        progress = Progress(len(configs), "seeds", every=50)
    try:
        results, trace = run_many(configs, jobs=args.jobs, fail_fast=args.fail_fast, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    if args.verbose:
        for r in results:
            print("seed=%d %s events=%d chosen=%d acked=%d/%d ops crashes=%d trace=%s"
                  % (r.seed, "ok" if r.ok else "FAILED", r.events, r.chosen, r.acked, r.proposed, r.crashes, r.trace))
    print(summary_line(results, trace))
    return 0 if all(r.ok for r in results) and len(results) == len(configs) else 1


def cmd_nemesis(args):
    from ..core.config import PLANTS
    from ..nemesis.faults import FAULT_KINDS
    from ..nemesis.run import Interrupted, Options, run

    faults = FAULT_KINDS if args.faults == "all" else tuple(f for f in args.faults.split(",") if f)
    unknown = [f for f in faults if f not in FAULT_KINDS]
    if unknown or not faults:
        print("paxos-core nemesis: unknown fault kind(s) %s; known: %s, or all"
              % (", ".join(unknown) or "(none given)", ", ".join(FAULT_KINDS)), file=sys.stderr)
        return EXIT_USAGE
    if args.plant and args.plant not in PLANTS:
        print("paxos-core nemesis: unknown plant %r; known: %s" % (args.plant, ", ".join(PLANTS)), file=sys.stderr)
        return EXIT_USAGE
    opts = Options()
    opts.nodes, opts.duration, opts.faults, opts.seed = args.nodes, args.duration, faults, args.seed
    opts.clients, opts.keys, opts.read_modes, opts.dir = args.clients, args.keys, args.read_modes, args.dir
    opts.groups, opts.plant, opts.netns = args.groups, args.plant, not args.loopback
    opts.writes = args.writes

    def say(line):
        print(line, flush=True)

    try:
        code, summary = run(opts, say)
    except Interrupted as exc:
        print("paxos-core nemesis: %s; every node stopped, disks unmounted, namespaces deleted; files in %s"
              % (exc, exc.directory), file=sys.stderr, flush=True)
        return 128 + exc.signum
    print(json.dumps(summary, sort_keys=True), flush=True)
    return code


def cmd_bench(args):
    if args.what == "storage":
        from ..bench import storage

        groups = args.groups or storage.QUICK_GROUPS
        seconds = args.seconds if args.seconds is not None else (0.3 if args.quick else 1.0)
        repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
        storage.run(groups, seconds, repeat, args.value_size[0], args.dir)
        return 0
    if args.what == "fsync":
        from ..bench import fsync

        seconds = args.seconds if args.seconds is not None else (5.0 if args.quick else 20.0)
        fsync.run(seconds, args.parallel, args.dir, json_path=args.json)
        return 0
    if args.what == "rejoin":
        from ..bench import rejoin

        rejoin.run(groups=(args.groups or (64,))[0], keys=args.keys or 100000, value_size=args.value_size[0],
                   workers=args.workers[0], retain=args.retain if args.retain is not None else 128,
                   concurrency=min(args.concurrency, 256), base_dir=args.dir, json_path=args.json,
                   say=lambda line: print(line, file=sys.stderr, flush=True))
        return 0
    if args.what == "member":
        from ..bench import member

        member.run(groups=(args.groups or (100,))[0], workers=args.workers[0], value_size=args.value_size[0],
                   concurrency=min(args.concurrency, 256), base_dir=args.dir, json_path=args.json,
                   say=lambda line: print(line, file=sys.stderr, flush=True))
        return 0
    if args.what == "soak":
        from ..bench import soak

        soak.run(duration=args.duration if args.duration is not None else 120.0, groups=(args.groups or (4,))[0],
                 workers=args.workers[0], value_size=args.value_size[0], retain=args.retain,
                 concurrency=min(args.concurrency, 256), keys=args.keys or 1000, every=args.seconds or 10.0,
                 base_dir=args.dir, json_path=args.json, say=lambda line: print(line, flush=True))
        return 0
    if args.what == "idle":
        from ..bench import idle

        idle.run(args.groups or (10000, 100000), args.seconds or 10.0, args.dir, json_path=args.json)
        return 0
    if args.trace_one:
        from ..bench import traceone

        traceone.run(seconds=args.duration or 5.0, warmup=min(args.warmup, 1.0), value_size=args.value_size[0],
                     repeat=args.repeat or 1, env=dict(kv.split("=", 1) for kv in (args.env or ())),
                     compare=dict(kv.split("=", 1) for kv in args.compare) if args.compare else None,
                     base_dir=args.dir, json_path=args.json, say=lambda line: print(line, file=sys.stderr, flush=True))
        return 0
    from ..bench import cluster

    if "lean" in args.loadgen and args.mode != "closed":
        print("paxos-core bench: --loadgen lean runs closed loop only", file=sys.stderr)
        return 2
    if args.batch > 1 and "client" not in args.batching:
        print("paxos-core bench: --batch %d needs --batching client (server and off send one operation per "
              "request)" % args.batch, file=sys.stderr)
        return 2
    if args.duration is None:
        args.duration = 8.0
    if args.full:
        points = cluster.full_sweep(args.duration)
    else:
        if args.quick:
            args.duration = min(args.duration, 4.0)
            args.warmup = min(args.warmup, 1.0)
        args.groups = args.groups or (64,)
        points = cluster.points_from(args)
    from .progress import Progress

    results = []
    progress = Progress(len(points), "points")
    try:
        for point in points:
            label = "groups=%d workers=%d value=%d mode=%s clients=%d" % (
                point.groups, point.workers, point.value_size, point.batching, point.clients)

            def stage(what, label=label):
                progress.stage("%s: %s" % (label, what))

            stage("starting cluster")
            results.append(cluster.run_point(point, args.dir, stage))
            progress.update(1)
    finally:
        progress.close()
    rows = cluster.medians(results)
    print(cluster.table(rows))
    if args.compare:
        base = {k: r for r in rows if r["variant"] == "default"
                for k in [(r["groups"], r["workers"], r["value_size"], r["mode"], r["loadgen"], r["clients"])]}
        for r in rows:
            key = (r["groups"], r["workers"], r["value_size"], r["mode"], r["loadgen"], r["clients"])
            if r["variant"] != "default" and key in base and r["ops_per_sec"]:
                print("same run: default %.0f ops/s vs %s %.0f ops/s: x%.2f" % (
                    base[key]["ops_per_sec"], r["variant"], r["ops_per_sec"],
                    base[key]["ops_per_sec"] / r["ops_per_sec"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print("all figures written to %s" % args.json)
    if args.plot:
        for path in cluster.plot(rows, args.plot):
            print("chart written to %s" % path)
    print(cluster.summary_json(rows))
    return 0


def cmd_init(args):
    """`paxos-core init`: write a ready-to-run cluster's node files, data dirs and CURVE keys."""
    from ..config import load_config, write_cluster
    from ..errors import ConfigError

    hosts = None
    if args.node:
        placed = dict(args.node)
        if sorted(placed) != list(range(1, len(placed) + 1)) or len(placed) != len(args.node):
            raise ConfigError("--node: give each of the ids 1..N once (got %s)"
                              % ", ".join(str(i) for i, _ in args.node))
        hosts = [placed[i] for i in range(1, len(placed) + 1)]
    if args.public_keys and not hosts:
        raise ConfigError("--public-keys: only with --node ID=HOST (one folder per host)")
    files = write_cluster(args.dir, nodes=args.nodes, workers=args.workers, groups=args.groups, host=args.host,
                          base_port=args.base_port, curve=not args.no_curve, cluster_id=args.cluster_id,
                          hosts=hosts, public_keys=args.public_keys, alpha=args.alpha)
    if args.public_keys:
        print("wrote %d node folders in %s with the public keys of %s; no secret key was written" % (
            len(files), args.dir, args.public_keys))
        print("next steps: copy each node's folder to its host, put the node<ID>.key_secret that keygen made "
              "there into the folder's keys/, and there:")
        for k, path in enumerate(files):
            print("  paxos-core node %s/%s   (on %s)" % (path.parent.name, path.name, hosts[k]))
        return 0

    first = load_config(files[0])
    print("wrote cluster %d: %d nodes x %d workers, %d groups, CURVE %s"
          % (first.cluster_id, len(files), first.workers, first.groups,
             ("keys in each node's keys/ folder" if hosts else "keys in %s" % first.keys_dir) if first.keys_dir
             else "off (no encryption)"))
    for path in files:
        cfg = load_config(path)
        me = cfg.me
        print("  %s  node %d  peer %s:%d  client %s:%d  metrics %s:%d  data %s"
              % (path, me.id, me.host, me.peer_port, me.host, me.client_port, me.host, me.metrics_port,
                 cfg.data_dir))
    if cfg.workers > 1:
        print("  (worker i of a node listens on each port + i)")
    if hosts:
        print("next steps: copy each node's folder to its host (it holds that node's secret key only), and there:")
        for path in files:
            print("  paxos-core node %s/%s   (on %s)" % (path.parent.name, path.name, load_config(path).me.host))
        return 0
    print("next steps: start every node, each in its own terminal:")
    for path in files:
        print("  paxos-core node %s" % path)
    return 0


def cmd_keygen(args):
    """`paxos-core keygen`: a node's CURVE key pair, made on the host that will run it."""
    from ..config import write_node_keys

    public, secret = write_node_keys(args.dir, args.node if args.node is not None else "new")
    if args.node is not None:
        print("wrote %s (public: copy it to where `paxos-core init --node ... --public-keys` runs)" % public)
        print("wrote %s (secret, mode 0600: it stays on this host, in the node folder's keys/)" % secret)
    else:
        print("wrote %s (public: copy it to the member where `paxos-core member add --key-file` runs)" % public)
        print("wrote %s (secret, mode 0600: it stays on this host, in FOLDER/keys/ of `paxos-core node --join "
              "BUNDLE --dir FOLDER`)" % secret)
    return 0


def build_parser():
    from ..config import DEFAULT_ALPHA, MAX_ALPHA, MAX_GROUPS, MAX_MEMBERS, MAX_NODE_ID, MAX_WORKERS, U64_MAX

    parser = Parser(prog="paxos-core", description="Multi-Paxos for Python. Errors are one line on stderr; exit "
                    "codes: 0 done, 1 the answer is no, 2 usage or configuration error, 3 the operation failed "
                    "(`node`: 1 it failed to start or stopped on a failure, 4 it was removed from the cluster).")
    parser.add_argument("--version", action="version", version="paxos-core " + __version__)
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error too (or set %s=1)" % DEBUG_ENV)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("info", help="print the version and which native modules are compiled",
                       description="Print the version and which native modules are compiled.")
    p.set_defaults(func=cmd_info)

    from . import cluster

    cluster.register(sub)

    count = int_range(1, None, "a count")
    p = sub.add_parser("sim", help="run the deterministic cluster simulator over many seeds",
                       description="Run seeds S..S+N-1 of the deterministic simulator. Exits 0 only if no "
                                   "invariant broke; the last line is the summary with a hash of every trace.")
    p.add_argument("--seeds", type=int_range(0, None, "a number of seeds"), default=100, help="how many seeds")
    p.add_argument("--seed-base", type=int_range(0, U64_MAX, "a seed"), default=0, help="first seed")
    p.add_argument("--nodes", type=int_list(1, 9), default=(3,), help="node counts, e.g. 3 or 3,5 (seeds cycle)")
    p.add_argument("--groups", type=int_list(1, 1 << 20), default=(1,),
                   help="group counts, e.g. 1,64 (seeds cycle)")
    p.add_argument("--faults", default="all", help="'all', 'none' or a comma list of fault kinds")
    p.add_argument("--plant", default="", help="switch on a planted bug (the run must then fail)")
    p.add_argument("--state-machine", default="", metavar="MODULE:FACTORY",
                   help="run your own state machine (an import path; its module on PYTHONPATH or in the current "
                        "directory) instead of the key-value store, and check every replica reaches the state "
                        "the chosen log gives")
    p.add_argument("--clients", type=int_range(0, 10000, "a number of clients"), default=None,
                   help="clients issuing operations during the faults (default: 6)")
    p.add_argument("--window", type=int_range(1, 1 << 16, "a window"), default=None,
                   help="instances in flight per group (default: the simulator's)")
    p.add_argument("--jobs", type=int_range(1, 4096, "a number of processes"), default=None,
                   help="worker processes (default: CPU count)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing seed")
    p.add_argument("--progress", action="store_true",
                   help="show progress on stderr: a bar on a terminal, else a line every 50 seeds")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per seed")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("nemesis", help="fault-inject a real cluster and check every client operation",
                       description="Start a real cluster (each node its own processes, fsync on, in its own "
                       "network namespace as root, else on loopback addresses), run client tasks that record every "
                       "operation, inject faults on a seeded schedule, heal, settle, read every key "
                       "linearizably, then check linearizability per key, lost acknowledged writes, replica "
                       "convergence, recovery after each fault and node logs. Exits 0 only if all is well; "
                       "the last line is JSON (ops, ok, fail, unknown, anomalies, lost_acked_writes, faults, "
                       "max_unavailable_s, ...). Anomalies: minimal failing sub-histories and an HTML "
                       "timeline in --dir.")
    p.add_argument("--nodes", type=int_range(3, 9, "a number of nodes"), default=3, help="nodes (3 or 5)")
    p.add_argument("--duration", type=positive_float, default=30.0, help="seconds of faults and load")
    p.add_argument("--faults", default="kill,pause,partition",
                   help="comma list of kill, pause, stall, partition, powercut, corrupt, clock, slowdisk, wipe, "
                        "member, regroup; or all")
    p.add_argument("--seed", type=int_range(0, U64_MAX, "a seed"), default=0, help="seed of the fault schedule")
    p.add_argument("--clients", type=int_range(1, 64, "a number of clients"), default=5, help="client tasks")
    p.add_argument("--keys", type=int_range(1, 1000, "a number of keys"), default=4, help="keys")
    p.add_argument("--groups", type=int_range(1, 64, "a number of groups"), default=4, help="Paxos groups")
    p.add_argument("--read-modes", type=word_list(("lease", "linearizable", "stale")),
                   default=("lease", "linearizable"), help="read modes the clients use, e.g. lease,linearizable,stale")
    p.add_argument("--writes", type=fraction, default=0.55,
                   help="fraction of operations that write (2/3 put, 1/3 cas); the rest read")
    p.add_argument("--dir", default=None, help="where the cluster, node logs, history and anomalies go "
                   "(default: a temporary directory, deleted if the run passes)")
    p.add_argument("--loopback", action="store_true", help="no namespaces: every node on 127.0.0.x")
    p.add_argument("--plant", default="", help="TESTS ONLY: run the nodes with this planted bug (the run must fail)")
    p.set_defaults(func=cmd_nemesis)

    p = sub.add_parser("bench", help="benchmarks (the main job: a local 3-replica cluster under load)",
                       description="cluster (default): start a local cluster of 3 replicas (real processes, fsync "
                       "on, temporary storage) and drive it with client processes; comma lists sweep. storage: "
                       "group commit against one synced write per record. idle: memory and CPU of idle groups. "
                       "fsync: this disk's synced-append latency and stalls. rejoin: wipe one node of a loaded "
                       "cluster and time its rebuild through snapshots. soak: write for --duration seconds and "
                       "report disk use per node every --seconds. member: remove a node of a loaded 4-node cluster and time how long every "
                       "group takes to adopt the new voters, and the throughput dip. The last line of output is a JSON summary "
                       "(cluster: ops/s, latency, fsyncs, operations in flight, CPU per op and in cores by role, "
                       "memory per replica); progress goes to stderr (a bar on a terminal, else one line per stage).")
    p.add_argument("what", nargs="?", default="cluster", choices=["cluster", "storage", "idle", "fsync", "rejoin", "soak",
                                                                  "member"],
                   help="which benchmark")
    p.add_argument("--quick", action="store_true", help="short run (well under a minute)")
    p.add_argument("--full", action="store_true", help="the full sweep reported in docs/BENCHMARKS.md")
    p.add_argument("--trace-one", action="store_true",
                   help="cluster: one client, one operation in flight, 1 group; prints where the round trip goes "
                        "(phases from the client's and the workers' own timestamps; --duration, --repeat, --env, "
                        "--compare, --value-size apply)")
    p.add_argument("--groups", type=int_list(1, MAX_GROUPS - 1), default=None,
                   help="groups, e.g. 1,64,10000 (default: 64; idle: 10000,100000; storage: 1,16,256,4096)")
    p.add_argument("--workers", type=int_list(1, MAX_WORKERS), default=(2,),
                   help="worker processes per node, e.g. 1,2")
    p.add_argument("--value-size", type=int_list(0, 1 << 30), default=(100,), help="bytes per value, e.g. 16,100,1024")
    p.add_argument("--batching", type=word_list(("server", "client", "off")), default=("server",),
                   help="server (default): one operation per request, the master packs concurrent requests "
                        "into instances (what KV.put callers get); client: Client.propose_batch of --batch "
                        "operations per request; off: one operation per Paxos instance; server,client sweeps")
    p.add_argument("--clients", type=int_list(1, 1024), default=(2,), help="client processes")
    p.add_argument("--concurrency", type=count, default=128,
                   help="closed loop: requests in flight per client process; in client mode each carries --batch "
                        "operations, so operations in flight = clients x concurrency x batch (2 x 128 x 32 = 8192)")
    p.add_argument("--batch", type=int_range(0, 1 << 20, "a batch size"), default=0,
                   help="operations per request in --batching client (Client.propose_batch; 0: 32)")
    p.add_argument("--mode", choices=("closed", "open"), default="closed", help="closed or open loop")
    p.add_argument("--loadgen", type=word_list(("client", "lean")), default=("client",),
                   help="client (default): the real Client, what users run; lean: a load generator that speaks "
                        "the client protocol directly (closed loop), to see the replicas' ceiling; client,lean "
                        "runs both")
    p.add_argument("--rate", type=non_negative_float, default=0.0, help="open loop: offered ops/s in total")
    p.add_argument("--duration", type=positive_float, default=None,
                   help="measured seconds per point (default 8); soak: seconds of writing (default 120)")
    p.add_argument("--warmup", type=non_negative_float, default=2.0,
                   help="unmeasured seconds before each measurement")
    p.add_argument("--curve", action="store_true", help="encrypt node-to-node traffic (CURVE)")
    p.add_argument("--env", action="append", type=key_value, default=None, metavar="KEY=VALUE",
                   help="environment of the node processes (e.g. PAXOS_CORE_GC_TUNING=0)")
    p.add_argument("--compare", action="append", type=key_value, default=None, metavar="KEY=VALUE",
                   help="also run every point with this environment, alternating in the same run")
    p.add_argument("--json", default=None, metavar="FILE", help="write every figure to this file")
    p.add_argument("--plot", default=None, metavar="DIR", help="write PNG charts into this directory")
    p.add_argument("--seconds", type=positive_float, default=None,
                   help="storage/idle/fsync: seconds per measurement (default: per benchmark)")
    p.add_argument("--repeat", type=count, default=None, help="runs per point (the median is shown); storage: "
                   "measurements per figure (default: 1; storage: 5, or 3 with --quick)")
    p.add_argument("--parallel", type=count, default=1, help="fsync: probe processes at once")
    p.add_argument("--keys", type=count, default=None,
                   help="rejoin: keys written before the wipe (default 100000); soak: keys the writes cycle over "
                        "(default: 1000)")
    p.add_argument("--retain", type=int_range(-1, 1 << 40, "a retention"), default=None,
                   help="rejoin, soak: storage.retain_instances of the nodes, -1 off (rejoin default 128; soak: the "
                        "node files' default)")
    p.add_argument("--dir", default=None, help="where temporary clusters/databases go (default: temp dir)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("init", help="write the node files, data dirs and CURVE keys of a new cluster",
                       description="Write DIR/node<id>.toml for ids 1..N, data directories DIR/data/node<id> "
                                   "and (unless --no-curve) CURVE keys in DIR/keys; with --node ID=HOST, one "
                                   "folder per node, DIR/node<id>/, holding the same for that node alone (every "
                                   "public key, its own secret key). Refuses a DIR that already holds node "
                                   "files.")
    p.add_argument("dir", metavar="DIR", help="directory to write the cluster into (created if missing)")
    p.add_argument("--nodes", type=int_range(1, MAX_MEMBERS, "a number of nodes"), default=3,
                   help="number of nodes")
    p.add_argument("--workers", type=int_range(1, MAX_WORKERS, "a number of workers"), default=2,
                   help="worker processes per node")
    p.add_argument("--groups", type=int_range(1, MAX_GROUPS, "a number of groups"), default=16,
                   help="Paxos groups at start")
    p.add_argument("--host", default="127.0.0.1", help="address of every node")
    p.add_argument("--node", action="append", type=node_host, metavar="ID=HOST", default=None,
                   help="place node ID on HOST (repeat for ids 1..N; sets --nodes): each node then gets its own "
                        "folder DIR/node<ID>/ to copy to its host, with only its own secret key")
    p.add_argument("--base-port", type=int_range(1, 65535, "a port"), default=None,
                   help="first port; node k uses base+300k (peer), +100 (client), +200 (metrics), worker i "
                        "each + i (default: a random base at which every port is free)")
    p.add_argument("--no-curve", action="store_true", help="no CURVE keys: traffic unencrypted, unauthenticated")
    p.add_argument("--cluster-id", type=int_range(1, U64_MAX, "a cluster id"), default=None,
                   help="cluster id (default: random)")
    p.add_argument("--public-keys", metavar="KEYDIR", default=None,
                   help="with --node: use the public keys KEYDIR/node<ID>.key made by `paxos-core keygen` on each "
                        "host, and write no secret key (each stays on its host) (default: new key pairs)")
    p.add_argument("--alpha", type=int_range(1, MAX_ALPHA, "an alpha"), default=DEFAULT_ALPHA,
                   help="instances between a membership change being chosen in a group and taking effect there; "
                        "fixed for the cluster's life, and every node's paxos.window must be at most it "
                        "(default: %(default)s)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("keygen", help="make a node's CURVE key pair on its own host",
                       description="Write DIR/node<ID>.key (public: copy it to where `paxos-core init --node ... "
                                   "--public-keys` runs) and DIR/node<ID>.key_secret (mode 0600: it never leaves "
                                   "this host; put it into the node folder's keys/ that init writes). Without "
                                   "--node, for a node that joins a running cluster (its id comes with the join "
                                   "bundle): DIR/new.key, to give to `paxos-core member add --key-file`, and "
                                   "DIR/new.key_secret. Refuses existing key files.")
    p.add_argument("dir", metavar="DIR", help="directory for the two key files (created if missing)")
    p.add_argument("--node", type=int_range(1, MAX_NODE_ID, "a node id"), default=None,
                   help="the node id these keys are for (default: a node that will join: new.key)")
    p.set_defaults(func=cmd_keygen)
    return parser


def fraction(text):
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("expected a fraction between 0 and 1, got %r" % text)
    return value


def key_value(text):
    """An argparse type: KEY=VALUE (an environment setting)."""
    key, sep, _ = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, got %r" % text)
    return text


def describe(exc):
    """The one line an expected error prints (after ``paxos-core: ``)."""
    from ..errors import ConfigError, PaxosError

    if isinstance(exc, ConfigError) or type(exc) is PaxosError:
        return one_line(exc)
    if isinstance(exc, PaxosError):
        return "%s: %s" % (type(exc).__name__, one_line(exc))
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else None
        return one_line("%s: %s" % (where, exc.strerror) if where is not None else exc.strerror)
    return "%s: %s" % (type(exc).__name__, one_line(exc))


def _exit_code(exc):
    from ..errors import ConfigError

    # A path given on the command line (a node file, a cluster directory, @FILE, -o FILE) that cannot be used.
    if isinstance(exc, (ConfigError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        return EXIT_USAGE
    return EXIT_FAILED


def _expected_errors():
    """What a command may fail with that is not a bug: paxos-core's errors, the system's (files, sockets), ZeroMQ's."""
    from ..errors import PaxosError

    kinds = [PaxosError, OSError]
    try:
        import zmq

        kinds.append(zmq.ZMQError)
    except ImportError:                  # pragma: no cover - pyzmq is a dependency
        pass
    return tuple(kinds)


def main(argv=None):
    """Run one command; returns its exit code. Expected errors are one line on stderr (see the module doc)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    leaf = getattr(args, "_parser", parser)
    if getattr(args, "needs_cluster", False):
        from .cluster import resolve_cluster

        resolve_cluster(leaf, args)
    check = getattr(args, "check", None)
    if check is not None:
        check(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("paxos-core: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (`| head`): nothing more can be said to it, and nothing is wrong.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except _expected_errors() as exc:
        if debug:
            raise
        print("paxos-core: %s" % describe(exc), file=sys.stderr)
        return _exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())

"""The fault kinds and their seeded schedule.

The schedule (one ``random.Random(seed)``): after a warm-up, faults follow each other, never two at once: a
fault is injected, held for 2 to 5 s (a pause: longer than the lease), healed, and the cluster gets 1.5 to 3 s
before the next. Kinds take turns in an order the seed shuffles, so every kind asked for is injected; the
variant and the target are drawn from the seed too. What the cluster does in between is not deterministic
(real processes), so the same seed gives the same faults, not the same history.

Kinds (``FAULT_KINDS``):

kill       kill -9 of a whole node (supervisor and workers; restarted at heal), of the supervisor alone (its
           workers follow it: channel end of file, parent-death signal), of one worker (the supervisor
           restarts it), or of the worker hosting a group on the node that is that group's master (found
           through ``status``).
pause      SIGSTOP of every process of a node (a random one, or a group's master) for 1.5 x the lease, then
           SIGCONT. Variant isolated-master (namespaces only): the master is also cut off from its peers (not
           from the clients) during the pause and for 1 s after it continues, so its first turns see queued
           client requests and no news of the master that replaced it.
partition  blackhole routes between node namespaces (topology.py): one node isolated, the master of a group
           isolated, a random majority/minority split, a bridge (two halves that both see one middle node),
           one-way (one node sends nothing to the others). Needs namespaces; skipped on loopback.
powercut   kill -9 of a node, ``xfs_io -x -c shutdown`` of its XFS data filesystem (unsynced writes are
           lost), umount, mount, restart. Needs root and xfsprogs.
corrupt    a node is stopped (kill -9), one bit is flipped in one of its WAL (*.log) or table (*.sst) files,
           and it is restarted: the damage must be detected (its log says so) and the node rebuilds from its
           peers; nothing of it may be applied (the end-of-run checks). Strikes only when no node is
           rebuilding and no voter the member fault wiped awaits its replacement (two nodes of three that
           lost their memory cannot rebuild each other: documented).
clock      the node is restarted under libfaketime (``LD_PRELOAD``, ``FAKETIME="+0 xR"``) with a clock rate R
           in 0.9..1.1, inside the documented drift bound (17.6% for the default lease margin); restarted with
           the real clock at heal. A start-up check measures that ``time.monotonic`` and CLOCK_BOOTTIME follow
           the rate in a child; the kind is skipped if they do not.
stall      the loop thread of the worker that hosts a group's master stands still (ptrace: PTRACE_INTERRUPT of
           that one thread) while its ZeroMQ I/O threads keep taking in requests, as in a long GC pause or
           a loop stuck on one slow call. Aimed at stale lease reads: the master is first cut off from its peers
           (not from the clients); the nemesis writes a value A to a probe key of that group (not one of the
           clients' keys), stalls the loop, writes B through the other nodes (acknowledged once they have
           elected a new master, i.e. after the stalled master's lease ran out), then sends lease reads of
           the probe key to the stalled master from clients that connected to it (and read A) before the
           stall and know of no newer master, lets the loop go and keeps the cut for the fault's duration. The reads are recorded like every client operation: one answered A is a stale
           lease read, found by the linearizability check. Without namespaces, no cut (the stalled master's
           own peers then tell it about the new master at once).
wipe       a node is stopped (kill -9), everything in its data directory is deleted (a replaced disk), and it is
           started again: it must rebuild every group from its peers (by snapshots where their logs are
           truncated: runs with this kind turn truncation on, `storage.retain_instances` = 16) and serve
           again, with nothing lost. Strikes only when no node is rebuilding, as `corrupt`.
member     membership changes all through the run, under the other kinds: 3 voters grow to 5 and shrink back
           (add by join bundle and promote, remove, replace a killed and wiped voter, a removal whose driver
           is killed): member.py. Not a turn of the schedule: it runs beside it. Its first change adds a group
           beyond the node files' (id = --groups, no client key on it): a node that joins holds its node file's
           groups only, so each promotion and replacement must put that one there first (checked at each).
regroup    a group no client key maps to is removed from the cluster (``Client.remove_group``: every node
           asked first, then each deletes it) and added back (``Client.add_group``: a newer incarnation on every
           node, on the voters the membership table places it on), under the clients' load on the other groups.
           Checked at once (a failed check fails the run): every node holds the new incarnation, which starts
           empty (a value written to the old one just before the removal reads as absent, linearizably) and
           takes a write that reads back. The end-of-run convergence covers the group like every other. Needs
           a group without client keys (more groups than the keys use); retried while a node cannot be asked
           (a removal needs them all), and an add left undone is finished at heal.
slowdisk   fsync stalls: the node's XFS filesystem is frozen (``fsfreeze -f``: every synced write blocks) for
           50-400 ms at a time, again and again, for the fault's duration. Needs the XFS disks (root,
           xfsprogs); without them, SIGSTOP/SIGCONT bursts of one worker of the same lengths (a stalled synced
           write holds the worker's GIL, so its loop stands still either way).
"""
import glob
import os
import random
import shutil
import subprocess
import sys
import threading
import time

from ..client import Client
from ..kv import key_group
from ..statemachine import kv as kv_ops
from .cluster import ThreadStop
from .retry import until_done
from .workload import History, do_op

FAULT_KINDS = ("kill", "pause", "stall", "partition", "powercut", "corrupt", "clock", "slowdisk", "wipe", "member",
               "regroup")
REGROUP_PROBE = b"regroup-probe"          # written to the group just before its removal: gone once it is back
NEEDS_XFS = ("powercut", "slowdisk")
FAKETIME_PATHS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
                  "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", "/usr/local/lib/faketime/libfaketime.so.1")


def faketime_library():
    for path in FAKETIME_PATHS:
        if os.path.exists(path):
            return path
    return None


def check_faketime(rate=4.0, span=2.0):
    """(library path, None) if a child under libfaketime at ``rate`` sees time.monotonic and CLOCK_BOOTTIME
    run at that rate, else (None, why). The child prints a line, busy-waits until its monotonic clock has
    advanced ``span`` s, prints another; this process times the two lines on its own clock (interpreter
    start-up is not measured)."""
    lib = faketime_library()
    if lib is None:
        return None, "libfaketime is not installed: apt-get install faketime"
    code = ("import sys, time\n"
            "m0, b0 = time.monotonic(), time.clock_gettime(time.CLOCK_BOOTTIME)\n"
            "print('go', flush=True)\n"
            "while time.monotonic() - m0 < %r: pass\n"
            "print(time.clock_gettime(time.CLOCK_BOOTTIME) - b0, flush=True)\n" % span)
    env = dict(os.environ, LD_PRELOAD=lib, FAKETIME="+0 x%g" % rate, FAKETIME_NO_CACHE="1")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        t0 = time.monotonic()
        second = proc.stdout.readline()
        real = time.monotonic() - t0
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if first.strip() != "go" or not second.strip():
        return None, "python under libfaketime failed: %s" % proc.stderr.read().strip()[-200:]
    boottime = float(second)
    # span s of faked time take span / rate s of real time; allow a loaded machine three times that.
    if not (real < 3 * span / rate and boottime >= span * 0.9):
        return None, ("libfaketime does not change time.monotonic/CLOCK_BOOTTIME here (%.2f s real for %.1f s "
                      "at rate %g)" % (real, span, rate))
    return lib, None


class FaultRecord:
    def __init__(self, kind, variant, target, start):
        self.kind, self.variant, self.target = kind, variant, target     # target: a node id, None for a group's
        self.start = start
        self.healed = None
        self.injected = False
        self.detail = ""
        self.recovery_s = None

    def where(self):
        return " node %s" % self.target if self.target is not None else ""

    def as_dict(self):
        return {"kind": self.kind, "variant": self.variant, "target": self.target, "injected": self.injected,
                "start": round(self.start, 3), "healed": None if self.healed is None else round(self.healed, 3),
                "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 3),
                "detail": self.detail}


class Nemesis:
    """Injects the faults of ``kinds`` on the seeded schedule into ``cluster`` until ``stop`` is set."""

    def __init__(self, cluster, kinds, seed, say=print, clock=time.monotonic, key_groups=(), history=None):
        self.cluster = cluster
        self.history = history if history is not None else History()   # the probe operations go here
        self.probe_keys = set()
        self.probe_threads = []
        self.key_groups = sorted(set(key_groups))    # groups the clients use: where a master matters
        self.topology = cluster.topology
        self.rng = random.Random(seed)
        self.say = say
        self.clock = clock
        self.records = []
        self.skipped = {}                 # kind -> why it cannot run here
        self.faketime = None
        self.kinds = []
        for kind in kinds:
            why = self._unavailable(kind, kinds)
            if why:
                self.skipped[kind] = why
                say("nemesis: fault kind %s skipped: %s" % (kind, why))
            else:
                self.kinds.append(kind)
        self.order = [kind for kind in self.kinds if kind != "member"]
        self.rng.shuffle(self.order)
        self.busy = set()                 # nodes a member step works on: no other fault targets them
        self.quiet = threading.Lock()     # held from a fault's injection to its heal, and by a removal
        self.operator = None
        self.operator_thread = None
        if "member" in self.kinds:
            from .member import MemberOperator

            self.operator = MemberOperator(self, random.Random(self.rng.getrandbits(32)), FaultRecord)
        self.client = None
        self.stop = threading.Event()
        self.thread = None
        self.t0 = clock()
        self.cleanup = []                 # what heal() must undo
        self.problems = []                # checks of a fault that failed (the regroup fault's): the run fails
        self.regrouped = set()            # groups the regroup fault removed and added back, and the member
                                          # fault's group added beyond the node files': mend_regrouped's
        self.added = {}                   # the member fault's group added beyond the node files': its
                                          # incarnation once the add completed (None until then)
        self.mended = []                  # what mend_regrouped changed, one line per group and time

    def _unavailable(self, kind, kinds):
        if kind == "partition" and not self.topology.can_partition:
            return "partitions need network namespaces (%s)" % self.topology.fallback_reason
        if kind in ("powercut",) and not any(n.disk for n in self.cluster.nodes.values()):
            return "needs each node's data on XFS on a loop device: root and xfsprogs (apt-get install xfsprogs)"
        if kind == "clock":
            self.faketime, why = check_faketime()
            return why
        if kind == "stall" and os.geteuid() != 0:
            return "stopping one thread (ptrace) of a node's worker needs root here"
        if kind == "regroup" and not self._free_groups():
            return "every group holds client keys: give more groups than the keys use (--groups)"
        return None

    def _free_groups(self):
        return [g for g in range(self.cluster.groups) if g not in self.key_groups]

    # ------------------------------------------------------------------ status of the running cluster
    def _status(self, timeout=2.0):
        if self.client is None:
            self.client = Client(self.cluster.endpoints(), self.cluster.workers, self.cluster.groups,
                                 default_timeout=3.0, **self.cluster.client_keys())
        out = []
        for node_id, node in self.cluster.nodes.items():
            if not node.alive() or node.paused:
                continue
            try:
                out.extend(self.client.status(node=node_id, timeout=timeout))
            except Exception:
                pass
        return out

    def master_of(self, group):
        """(master node, its worker index) of ``group`` as the live nodes report it, or (None, None)."""
        votes = {}
        for worker in self._status():
            for detail in worker.get("group_detail", ()):
                if detail["group"] == group and detail["master"]:
                    votes[detail["master"]] = votes.get(detail["master"], 0) + 1
        if not votes:
            return None, None
        master = max(votes, key=lambda m: (votes[m], -m))
        return master, group % self.cluster.workers

    def repairing(self):
        return sum(worker.get("repairing", 0) for worker in self._status())

    # ------------------------------------------------------------------ the schedule
    def start(self, t0=None):
        """Start the schedule; progress lines give seconds since ``t0`` (the run's start; default: now)."""
        self.t0 = self.clock() if t0 is None else t0
        self.thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self.thread.start()
        if self.operator is not None:
            self.operator_thread = threading.Thread(target=self.operator.run, args=(self.stop,), name="member",
                                                    daemon=True)
            self.operator_thread.start()

    def finish(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(120)
        if self.operator_thread is not None:
            from .member import STEP_TIMEOUT

            self.operator_thread.join(STEP_TIMEOUT + 60)
        self.heal()
        for thread in self.probe_threads:
            thread.join(4 * self.cluster.lease_s + 10)
        if self.client is not None:
            self.client.close()
            self.client = None

    def _run(self):
        if not self.order:
            return
        self.stop.wait(2.0)
        turn = 0
        while not self.stop.is_set():
            kind = self.order[turn % len(self.order)]
            turn += 1
            with self.quiet:
                if self.stop.is_set():
                    break
                record = self._inject(kind)
                if record is not None:
                    self.records.append(record)
                    self.stop.wait(self.rng.uniform(2.0, 5.0) if kind != "pause" else 1.5 * self.cluster.lease_s)
                    self.heal()
                    record.healed = self.clock()
                    self.say("nemesis: %.1f s %s %s healed" % (record.healed - self.t0, record.kind, record.variant))
            self.stop.wait(self.rng.uniform(1.5, 3.0))

    def _inject(self, kind):
        node_ids = [n for n in sorted(self.cluster.nodes) if n not in self.busy]
        if not node_ids:
            return None
        target = self.rng.choice(node_ids)
        variant = {
            "kill": lambda: self.rng.choice(("node", "supervisor", "worker", "master")),
            "pause": lambda: self.rng.choice(("node", "master", "isolated-master") if self.topology.can_partition
                                             else ("node", "master")),
            "partition": lambda: self.rng.choice(("isolate", "isolate-master", "majority", "bridge", "one-way")),
        }.get(kind, lambda: "")()
        record = FaultRecord(kind, variant, target, self.clock())
        try:
            getattr(self, "_" + kind)(record)
        except Exception as exc:                         # a fault that could not be injected is reported
            record.detail = "not injected: %s: %s" % (type(exc).__name__, exc)
            record.injected = False
        self.say("nemesis: %.1f s %s %s%s%s" % (record.start - self.t0, kind, variant, record.where(),
                                                      " (%s)" % record.detail if record.detail else ""))
        return record

    def _master_target(self, record):
        group = self.rng.choice(self.key_groups) if self.key_groups else self.rng.randrange(self.cluster.groups)
        master, worker = self.master_of(group)
        if master is not None and (master in self.busy or master not in self.cluster.nodes):
            raise RuntimeError("the master of group %d, node %d, is in a membership step" % (group, master))
        if master is not None:
            record.target = master
            record.detail = "master of group %d" % group
        return worker if master is not None else None

    # ------------------------------------------------------------------ fault kinds
    def _kill(self, record):
        node = self.cluster.nodes[record.target]
        worker = None
        if record.variant == "master":
            worker = self._master_target(record)
            node = self.cluster.nodes[record.target]
            pids = node.worker_pids()
            if worker is None or worker >= len(pids):
                record.variant = "worker"
        if record.variant == "node":
            node.kill()
            self.cleanup.append(("start", node))
        elif record.variant == "supervisor":
            workers = node.worker_pids()
            os.kill(node.pid, 9)
            node.proc.wait()
            node._reap(workers)
            self.cleanup.append(("start", node))
        else:
            pids = self._workers_by_index(node)
            index = worker if record.variant == "master" else self.rng.randrange(len(pids))
            os.kill(pids[index], 9)
            record.detail = (record.detail + "; " if record.detail else "") + "worker %d" % index
        record.injected = True

    def _workers_by_index(self, node):
        """The node's worker PIDs in worker-index order (from each worker's command line)."""
        found = {}
        for pid in node.worker_pids():
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
                index = int(argv[argv.index(b"paxos_core.runtime.worker") + 2])
                found[index] = pid
            except (FileNotFoundError, ValueError, IndexError):
                continue
        if not found:
            raise RuntimeError("node %d has no workers running" % node.node_id)
        return [found[i] for i in sorted(found)]

    def _pause(self, record):
        if record.variant in ("master", "isolated-master"):
            self._master_target(record)
        node = self.cluster.nodes[record.target]
        if record.variant == "isolated-master":
            # Cut off from its peers (not from the clients) while it stands still, and still cut off for a
            # second after it continues: its first turns then see the clients' requests and no peer's news.
            self.topology.cut_between([record.target], [n for n in self.cluster.nodes if n != record.target])
            self.cleanup.append(("heal-net", None))
            self.cleanup.append(("sleep", 1.0))
        node.pause()
        self.cleanup.append(("resume", node))
        record.injected = True

    def _partition(self, record):
        nodes = sorted(self.cluster.nodes)
        topo = self.topology
        if record.variant == "isolate-master":
            self._master_target(record)
        if record.variant in ("isolate", "isolate-master"):
            topo.cut_between([record.target], [n for n in nodes if n != record.target])
        elif record.variant == "majority":
            shuffled = nodes[:]
            self.rng.shuffle(shuffled)
            minority = shuffled[:len(nodes) // 2]
            topo.cut_between(minority, shuffled[len(nodes) // 2:])
            record.detail = "minority %s" % minority
        elif record.variant == "bridge":
            others = [n for n in nodes if n != record.target]
            self.rng.shuffle(others)
            half = len(others) // 2
            topo.cut_between(others[:half], others[half:])
            record.detail = "%s | %s, bridged by %d" % (sorted(others[:half]), sorted(others[half:]), record.target)
        else:
            for other in nodes:
                if other != record.target:
                    topo.cut(record.target, other)
            record.detail = "node %d sends nothing" % record.target
        self.cleanup.append(("heal-net", None))
        record.injected = True

    def _powercut(self, record):
        node = self.cluster.nodes[record.target]
        if node.disk is None:
            # A node the member fault started (a joiner, a replacement) runs on the shared disk: nothing to cut.
            raise RuntimeError("node %d has no filesystem of its own to cut" % record.target)
        node.kill()
        self.cleanup.append(("start", node))     # restarted at heal, whether the cut could be made or not
        node.disk.power_cut(node.owns)
        record.injected = True

    def _wiped_voters(self):
        """Members the member fault killed and wiped for a replacement that has not taken their place yet."""
        return self.operator.wiped if self.operator is not None else set()

    def wait_no_rebuild(self):
        """Wait (up to 20 s) until no node is rebuilding and no member is wiped and not yet replaced: two nodes
        of three that lost their memory cannot rebuild each other (nemesis seeds 601 and 603: a voter corrupted
        while the member fault's replacement of another, killed and wiped, was still under way; the group
        stood still for good with one voter that remembered; seed 610 the other way round: see
        MemberOperator._replace). Called by the faults that take a node's memory (corrupt, wipe) and by the
        member fault's replacement, each holding ``quiet``. RuntimeError (the fault is reported as not
        injected) if that still holds. A group the regroup fault added back is first put back where a node
        that lost its data holds it in an earlier incarnation (mend_regrouped): that copy never rebuilds; that
        needs every member to answer, so a member the member fault wiped is waited for first."""
        deadline = self.clock() + 20
        while self._wiped_voters() and self.clock() < deadline and not self.stop.is_set():
            time.sleep(0.5)
        self.mend_regrouped()
        while True:
            rebuilding, wiped = self.repairing(), self._wiped_voters()
            if not (rebuilding or wiped) or self.clock() >= deadline or self.stop.is_set():
                break
            time.sleep(0.5)
        if rebuilding:
            raise RuntimeError("a node is still rebuilding")
        if wiped:
            raise RuntimeError("node(s) %s wiped by the member fault are not replaced yet"
                               % ", ".join(map(str, sorted(wiped))))

    def _corrupt(self, record):
        self.wait_no_rebuild()
        node = self.cluster.nodes[record.target]
        node.kill()
        files = []
        for worker_dir in self.cluster.worker_log_dirs(record.target):
            for pattern in ("*.log", "*.sst"):
                files.extend(p for p in glob.glob(os.path.join(worker_dir, pattern)) if os.path.getsize(p) > 0)
        self.cleanup.append(("start", node))
        if not files:
            raise RuntimeError("no WAL or table file with data")
        path = self.rng.choice(sorted(files))
        size = os.path.getsize(path)
        offset = self.rng.randrange(size)
        bit = self.rng.randrange(8)
        with open(path, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ (1 << bit)]))
            f.flush()
            os.fsync(f.fileno())
        record.detail = "bit %d of byte %d of %s (%d bytes)" % (bit, offset, os.path.relpath(path, node.data_dir),
                                                               size)
        record.log_mark = os.path.getsize(node.log_path)
        record.injected = True

    def _wipe(self, record):
        node = self.cluster.nodes[record.target]
        self.wait_no_rebuild()
        node.kill()
        self.cleanup.append(("start", node))
        removed = 0
        for name in os.listdir(node.data_dir):
            path = os.path.join(node.data_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed += 1
        node.rebuild_next = True              # a replaced disk: the operator restarts it with --rebuild
        record.detail = "%d entries of %s deleted" % (removed, node.data_dir)
        record.injected = True
        if self.operator is not None:         # the nodes its file lists may have been replaced since
            try:
                node.rebuild_bundle = self.operator.rebuild_bundle(record.target, time.monotonic() + 30)
            except Exception as exc:          # the table not read: it restarts from its file as it is
                record.detail += "; no bundle of the table (%s: %s)" % (type(exc).__name__, exc)
            else:
                if node.rebuild_bundle:
                    record.detail += "; its file lists no member left: it rebuilds with a bundle of the table"

    def _clock(self, record):
        node = self.cluster.nodes[record.target]
        rate = round(self.rng.uniform(0.9, 1.1), 3)
        node.stop()
        node.env_extra = {"LD_PRELOAD": self.faketime, "FAKETIME": "+0 x%g" % rate, "FAKETIME_NO_CACHE": "1"}
        node.start()
        record.detail = "clock rate x%g" % rate
        self.cleanup.append(("real-clock", node))
        record.injected = True

    def _slowdisk(self, record):
        node = self.cluster.nodes[record.target]
        stop = threading.Event()
        rng = random.Random(self.rng.getrandbits(32))
        stalls = [0]

        if node.disk is not None:
            record.detail = "fsfreeze of its XFS"

            def stall(seconds):
                node.disk.freeze()
                time.sleep(seconds)
                node.disk.thaw()
        else:
            record.detail = "SIGSTOP bursts of one worker (no XFS disk)"
            pid = rng.choice(self._workers_by_index(node))

            def stall(seconds):
                os.kill(pid, 19)
                time.sleep(seconds)
                os.kill(pid, 18)

        def run():
            while not stop.is_set():
                try:
                    stall(rng.uniform(0.05, 0.4))
                    stalls[0] += 1
                except (OSError, ProcessLookupError):
                    return
                stop.wait(rng.uniform(0.05, 0.3))

        thread = threading.Thread(target=run, name="slowdisk", daemon=True)
        thread.start()
        self.cleanup.append(("slowdisk", (stop, thread, stalls, record)))
        record.injected = True

    def _admin_until(self, what, deadline):
        """``what(client)`` with a fresh admin client of the current members (the member fault changes them: a
        group's removal and add ask every node the client knows, and a node that left answers nothing), retried
        on errors until it returns or ``deadline``."""
        cluster = self.cluster

        def members_client():
            members = {n: eps for n, eps in cluster.endpoints().items() if n in cluster.nodes}
            return Client(members, cluster.workers, cluster.groups, default_timeout=5.0,
                          **cluster.client_keys(admin=True, avoid=self.busy))

        return until_done(members_client, what, deadline, 0.5)

    def _regroup(self, record):
        group = self.rng.choice(self._free_groups())
        number = len(self.records) + 1
        record.target = None
        deadline = time.monotonic() + 20          # the schedule waits meanwhile: a removal needs every node
        self._admin_until(self._probe_put(group, b"regroup%d-old" % number), deadline)
        self._admin_until(lambda client: client.remove_group(group), deadline)
        record.injected = True
        self.regrouped.add(group)
        self.cleanup.append(("add-group", group))          # until it is back (heal finishes an add left undone)
        incarnation = self._admin_until(lambda client: client.add_group(group), deadline)
        self.cleanup.remove(("add-group", group))
        record.detail = "group %d removed and added back: incarnation %d" % (group, incarnation)
        self.check_group_back(group, incarnation, b"regroup%d-new" % number, deadline)

    @staticmethod
    def _probe_put(group, value):
        def write(client):
            status = kv_ops.decode_result(client.propose(group, kv_ops.encode_put(REGROUP_PROBE, value)).result)
            if status[0] != kv_ops.OK:
                raise RuntimeError("group %d: the probe write answered %r" % (group, status))
        return write

    def check_group_back(self, group, incarnation, value, deadline):
        """A group just added (again): every member holds ``incarnation``, which starts empty (a value written
        to a removed one reads as absent, linearizably) and takes a write of ``value`` that reads back. Each
        check that fails is a problem of the run."""
        def read(client):
            return kv_ops.decode_result(client.read(group, kv_ops.encode_get(REGROUP_PROBE), mode="linearizable"))

        infos = self._admin_until(lambda client: {n: client.group_info(group, n) for n in sorted(self.cluster.nodes)},
                                  deadline)
        held = {n: (i["hosted"], i["incarnation"]) for n, i in infos.items()}
        if set(held.values()) != {(True, incarnation)}:
            self.problems.append("regroup: group %d is not held in incarnation %d everywhere: %s"
                                 % (group, incarnation, held))
        found = self._admin_until(read, deadline)
        if found[0] != kv_ops.NOT_FOUND:
            self.problems.append("regroup: group %d incarnation %d holds %s: %r" % (
                group, incarnation, "the removed one's value" if incarnation > 1 else "a value before any write", found))
        self._admin_until(self._probe_put(group, value), deadline)
        found = self._admin_until(read, deadline)
        if found != (kv_ops.OK, value):
            self.problems.append("regroup: group %d incarnation %d read %r after writing %r" % (group, incarnation,
                                                                                               found, value))

    def mend_regrouped(self):
        """`group add G` for each group the regroup fault added back (and the member fault's group added beyond
        the node files'), as the README tells an operator once a node lost its data (wipe, corrupt): that node
        holds the groups of its node file again in their first incarnation, rebuilding, which the others do not
        answer, and lacks the groups added beyond them; the add puts the incarnation the others hold there.
        Elsewhere it changes nothing (idempotent). Run before a fault that takes a node's memory (it waits for no
        node to be rebuilding) and after the run. A failure is a FAULT CHECK problem; what it changed goes
        to ``mended`` and the output. Not while a member the member fault wiped is not replaced yet: `group
        add` needs every member to answer, as an operator knows (the end's membership check fails the run if
        the replacement never completed)."""
        wiped = self._wiped_voters()
        if wiped and self.regrouped:
            self.say("nemesis: %.1f s OPERATOR group add: not now, node(s) %s wiped and not replaced yet"
                     % (self.clock() - self.t0, ", ".join(map(str, sorted(wiped)))))
            return
        for group in sorted(self.regrouped):
            nodes = sorted(self.cluster.nodes)

            def held(client):
                return {n: client.group_info(group, n) for n in nodes}

            deadline = time.monotonic() + 60
            try:
                before = self._admin_until(held, deadline)
                incarnation = self._admin_until(lambda client: client.add_group(group), deadline)
            except Exception as exc:
                self.problems.append("regroup: `group add %d` after a node lost its data failed: %s: %s"
                                     % (group, type(exc).__name__, exc))
                continue
            changed = {n: i["incarnation"] if i["hosted"] else None for n, i in before.items()
                       if not i["hosted"] or i["incarnation"] != incarnation}
            if changed:
                line = ("group %d: incarnation %d put back on node(s) %s (held there: %s)"
                        % (group, incarnation, ", ".join(map(str, sorted(changed))), changed))
                self.mended.append(line)
                self.say("nemesis: %.1f s OPERATOR group add: %s" % (self.clock() - self.t0, line))

    def _probe_key(self, group):
        """A key of ``group`` that no client task uses (they use k0, k1, ...)."""
        n = 0
        while key_group(b"probe%d" % n, self.cluster.groups) != group:
            n += 1
        key = b"probe%d" % n
        self.probe_keys.add(key)
        return key

    def _probe_client(self, prefer=None, attempt_timeout=1.0):
        cluster = self.cluster
        return Client(cluster.endpoints(), cluster.workers, cluster.groups, prefer=prefer,
                      default_timeout=4 * cluster.lease_s + 5, attempt_timeout=attempt_timeout,
                      **cluster.client_keys())

    def _stall(self, record):
        cluster, history = self.cluster, self.history
        group = self.rng.choice(self.key_groups) if self.key_groups else self.rng.randrange(cluster.groups)
        key = self._probe_key(group)
        number = len(self.records) + 1
        value_b = b"stall%d-b" % number
        # The writer prefers a node that will not be the master (its session starts with A: B is then never a
        # session's first request, which a retry could not tell from an expired session).
        master, _ = self.master_of(group)
        prefer = self.rng.choice([n for n in cluster.nodes if n != master])
        writer, readers = None, []
        try:
            # A, then a lease read of it, make the group's master hold a fresh lease on the probe key's group.
            # A session's first write that had to be retried elsewhere comes back SessionExpired (client.py):
            # then again with a fresh client and a new value (every value written is unique).
            for attempt in range(3):
                if writer is not None:
                    writer.close()
                writer = self._probe_client(prefer=prefer)
                value_a = b"stall%d-a%d" % (number, attempt)
                op = do_op(writer, cluster.groups, history, "nemesis", "write", key, value=value_a, timeout=10.0)
                if op.outcome == "ok" or self.stop.is_set():
                    break
            if op.outcome != "ok":
                raise RuntimeError("probe write of A failed (%s)" % op.error)
            master, index = self.master_of(group)
            if master is None:
                raise RuntimeError("group %d has no master" % group)
            do_op(writer, cluster.groups, history, "nemesis", "read", key, mode="lease", node=master, timeout=5.0)
            # The readers connect now, while the master's loop runs: each reads A once from it. A client whose
            # connection is still being set up when it sends tries another node 20 ms later (client.py), so
            # readers created during the stall would often be answered by the new master, and the stalled
            # one would see no read to get wrong.
            for _ in range(3):
                reader = self._probe_client(prefer=master, attempt_timeout=cluster.lease_s)
                readers.append(reader)
                do_op(reader, cluster.groups, history, "nemesis", "read", key, mode="lease", node=master,
                      timeout=5.0)
            record.target = master
            node = cluster.nodes[master]
            tid = self._workers_by_index(node)[index]
            others = [n for n in cluster.nodes if n != master]
            if self.topology.can_partition:
                self.topology.cut_between([master], others)
                self.cleanup.append(("heal-net", None))
            stall = ThreadStop(tid)
            stall.stop()
            record.injected = True
            threads = []
            try:
                op = do_op(writer, cluster.groups, history, "nemesis", "write", key, value=value_b,
                           timeout=4 * cluster.lease_s + 5)
                record.detail = "master of group %d, worker %d (pid %d); probe %s: B %s" % (
                    group, index, tid, key.decode(), op.outcome)
                if op.outcome == "ok":
                    # The readers know of no newer master, and their attempt timeout is longer than the rest of
                    # the stall: the reads wait in the stalled worker's queue.
                    while readers:
                        thread = threading.Thread(target=self._probe_read, args=(readers.pop(), key, master),
                                                  name="stall-probe", daemon=True)
                        thread.start()
                        threads.append(thread)
                        time.sleep(0.3)
                    time.sleep(0.5)
            finally:
                stall.resume()
            self.probe_threads.extend(threads)        # joined by finish(), before the history is checked
        finally:
            for client in readers + ([writer] if writer is not None else []):
                client.close()

    def _probe_read(self, reader, key, master):
        try:
            do_op(reader, self.cluster.groups, self.history, "nemesis", "read", key, mode="lease", node=master,
                  timeout=2 * self.cluster.lease_s + 2)
        finally:
            reader.close()

    # ------------------------------------------------------------------ heal
    def heal(self):
        """Undo whatever the current fault did: network healed, processes continued, nodes restarted."""
        while self.cleanup:
            what, arg = self.cleanup.pop()
            if what == "sleep":
                time.sleep(arg)
            elif what == "heal-net":
                self.topology.heal()
            elif what == "resume":
                arg.resume()
            elif what == "start":
                # Not a node that left meanwhile (removed, or wiped and replaced by the member fault).
                if not arg.alive() and self.cluster.nodes.get(arg.node_id) is arg:
                    arg.start()
            elif what == "real-clock":
                arg.stop()
                arg.env_extra = {}
                arg.start()
            elif what == "add-group":
                try:
                    self._admin_until(lambda client: client.add_group(arg), time.monotonic() + 60)
                except Exception as exc:
                    self.problems.append("regroup: group %d was removed and could not be added back: %s: %s"
                                         % (arg, type(exc).__name__, exc))
            elif what == "slowdisk":
                stop, thread, stalls, record = arg
                stop.set()
                thread.join(5)
                record.detail += ": %d stalls" % stalls[0]
        for node in self.cluster.nodes.values():
            if node.disk is not None:
                node.disk.thaw()


def corrupt_detected(cluster, record):
    """True if the node's log, after the restart that followed ``record`` (a corrupt fault), reports damage.

    A node the member fault has removed or replaced since is no longer in ``cluster.nodes``: its log is read
    all the same (``cluster.removed``). If it says nothing, the node may have left before it restarted on the
    damaged files, which went with its wiped disk: nothing can be checked, and that is not a miss (True)."""
    left = record.target not in cluster.nodes
    node = cluster.any_node(record.target)
    with open(node.log_path, "rb") as f:
        f.seek(getattr(record, "log_mark", 0))
        text = f.read().decode("utf-8", "replace").lower()
    return left or any(word in text for word in ("damage", "corrupt", "checksum", "set aside", "rebuild"))


def have_tool(name):
    return shutil.which(name) is not None

"""`paxos-core nemesis`: short runs against a real cluster, one per fault kind, and a planted bug it catches.

Each run is a subprocess (the nemesis moves its process into a network namespace, and starts nodes, which
this test process must not host); the run's own `finally` stops every node by PID and deletes its
namespaces. Every run must end with 0 anomalies, 0 lost acknowledged writes, replicas converged, no
traceback in a node's log, and the fault kind counted as injected in the last-line JSON. Needs root (network
namespaces, loop devices) and the tools of each kind (tests/_requires.py: skipped without them, failed where
PAXOS_CORE_REQUIRE_ALL=1, as in .ci/run, which installs them).
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from _requires import require_root, require_tool

DURATION = os.environ.get("PAXOS_NEMESIS_SECONDS", "12")
# The stall kind and its planted twin: one stall (it starts at 2 s and takes about 10 s), lease reads.
STALL_ARGS = ["--duration", "12", "--faults", "stall", "--seed", "3", "--read-modes", "lease,linearizable"]
TOOLS = {
    "kill": (), "pause": (), "partition": (("ip", "iproute2"), ("nsenter", "util-linux")),
    "powercut": (("mkfs.xfs", "xfsprogs"), ("xfs_io", "xfsprogs"), ("losetup", "mount"), ("mount", "mount")),
    "stall": (), "corrupt": (), "clock": (("faketime", "faketime"),),
    "slowdisk": (("mkfs.xfs", "xfsprogs"), ("fsfreeze", "util-linux"), ("losetup", "mount")),
    "wipe": (),
    "regroup": (),
}


def nemesis(tmp_path, *args, timeout=600):
    cmd = [sys.executable, "-m", "paxos_core", "nemesis", "--dir", str(tmp_path / "run")] + list(args)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = result.stdout.strip().splitlines()
    assert lines, "no output; stderr: %s" % result.stderr[-2000:]
    return result, json.loads(lines[-1]), result.stdout


def _requirements(kind):
    require_root("network namespaces and loop devices")
    require_tool("ip", apt="iproute2")
    require_tool("nsenter", apt="util-linux")
    for tool, package in TOOLS[kind]:
        require_tool(tool, apt=package)


@pytest.mark.parametrize("kind", ["kill", "pause", "stall", "partition", "powercut", "corrupt", "clock", "slowdisk",
                                  "wipe", "regroup"])
def test_fault_kind_injected_and_history_linearizable(tmp_path, kind):
    _requirements(kind)
    modes = "lease,stale" if kind in ("pause", "clock", "corrupt") else "lease,linearizable"
    args = (STALL_ARGS if kind == "stall" else
            ["--duration", DURATION, "--faults", kind, "--seed", "11", "--read-modes", modes])
    result, summary, out = nemesis(tmp_path, *args)
    assert summary["topology"] == "netns", out[-3000:]
    assert summary["faults"].get(kind, 0) >= 1, "the fault was not injected: %s" % out[-3000:]
    assert summary["faults_skipped"] == {}
    assert summary["anomalies"] == 0, out[-3000:]
    assert summary["lost_acked_writes"] == 0, out[-3000:]
    assert summary["converged"] and summary["tracebacks"] == 0 and summary["nodes_down"] == 0, out[-3000:]
    assert summary["ok"] > 100, out[-3000:]
    if kind == "corrupt":
        assert summary["corrupt_undetected"] == 0, out[-3000:]
    if kind == "regroup":                   # every group back, in a newer incarnation, empty, and writable
        assert summary["fault_check_problems"] == 0, out[-3000:]
        assert "removed and added back: incarnation" in out, out[-3000:]
    if kind == "wipe":                      # truncation is on: the wiped node came back through snapshots
        logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "run" / "logs").glob("*"))
        assert "installed a snapshot" in logs, out[-3000:]
    # Progress lines give seconds since the start of the run (not the host's monotonic clock).
    shown = [float(m.group(1)) for m in re.finditer(r"^nemesis: (\d+\.\d) s %s " % kind, out, re.M)]
    assert shown and all(0 <= t < summary["duration_s"] + 60 for t in shown), out[-3000:]
    assert result.returncode == 0, out[-3000:]


def test_a_wiped_node_gets_a_regrouped_group_back_and_the_run_converges(tmp_path):
    """regroup, then wipe (seed 5 orders them so): group 2 is removed and added back (incarnation 2), then node 3
    loses its data directory and holds group 2 again in incarnation 1, rebuilding. Its peers tell it of
    incarnation 2, which it takes by itself (ReplicaLoop.join_newer: a line in its log) and rebuilds; the
    nemesis's operator step (`group add` for the regrouped groups, as the README says after a node lost its
    data) finds nothing left to do, or replaces the copy if it comes first. The run converges (before either
    existed, runs like this ended not converged: nemesis seeds 642, 643, 645 of docs/RELIABILITY.md)."""
    _requirements("wipe")
    # 40 s: the regroup fault may take up to 20 s on a loaded machine, and the wipe must come after it.
    result, summary, out = nemesis(tmp_path, "--duration", "40", "--faults", "regroup,wipe", "--seed", "5",
                                   "--read-modes", "lease,linearizable")
    assert summary["faults"].get("regroup", 0) >= 1 and summary["faults"].get("wipe", 0) >= 1, out[-3000:]
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "run" / "logs").glob("*"))
    by_itself = len(re.findall(r"its peers hold incarnation 2, this node a leftover of 1 \(repairing\): it takes "
                               r"the newer one, rebuilding it first", logs))
    assert by_itself + summary["regroups_mended"] >= 1, out[-3000:]
    assert summary["fault_check_problems"] == 0 and summary["anomalies"] == 0, out[-3000:]
    assert summary["lost_acked_writes"] == 0, out[-3000:]
    assert summary["converged"] and summary["tracebacks"] == 0 and summary["nodes_down"] == 0, out[-3000:]
    assert result.returncode == 0, out[-3000:]


def test_member_fault_changes_the_members_under_load_and_every_check_holds(tmp_path):
    """The member fault alone, one short run: it adds group 4 beyond the node files', then its first step on 3
    voters adds a node by join bundle and promotes it (or replaces a killed and wiped voter), which puts group 4
    there first (a node that joins holds its node file's groups only): the table's members are the nodes
    running at the end, every group on every node votes on the table's voters, and the history is
    linearizable."""
    _requirements("kill")
    result, summary, out = nemesis(tmp_path, "--duration", DURATION, "--faults", "member", "--seed", "1",
                                   "--read-modes", "lease,linearizable")
    assert summary["topology"] == "netns", out[-3000:]
    assert summary["member_changes"] >= 1 and summary["faults"].get("member", 0) >= 1, out[-3000:]
    assert summary["groups_added"] == [4] and summary["groups_filled"] >= 1, out[-3000:]
    assert summary["member_problems"] == 0, out[-3000:]
    assert summary["final_members"] != [1, 2, 3], out[-3000:]
    assert summary["anomalies"] == 0 and summary["lost_acked_writes"] == 0, out[-3000:]
    assert summary["converged"] and summary["tracebacks"] == 0 and summary["nodes_down"] == 0, out[-3000:]
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "run" / "logs").glob("*"))
    assert "joins cluster" in logs, out[-3000:]
    assert result.returncode == 0, out[-3000:]


def test_a_node_promoted_without_a_group_added_at_run_time_fails_the_member_check(tmp_path):
    """The member fault with a planted worker status that omits the groups added at run time: `member promote`
    finds nothing missing on the node that joined and makes it a voter of group 4, which it does not hold. The
    member fault's check at the promotion fails the run. The unplanted twin is the test above."""
    _requirements("kill")
    result, summary, out = nemesis(tmp_path, "--duration", DURATION, "--faults", "member", "--seed", "1",
                                   "--plant", "status-omits-added-groups")
    assert summary["plant"] == "status-omits-added-groups" and summary["groups_filled"] == 0, out[-3000:]
    assert summary["member_problems"] >= 1, out[-3000:]
    assert re.search(r"MEMBERSHIP: node \d became a voter without group\(s\) \[4\]", out), out[-3000:]
    assert result.returncode == 1


def test_planted_stale_lease_clock_is_caught(tmp_path):
    """The real nodes run with the simulator's stale-lease-clock plant (lease decisions on the clock read
    before the poll, no lease dropped after a late turn). The stall fault is aimed at it: the loop of a group's
    master stands still, cut off from its peers, while the others elect a new master and acknowledge a write B
    of a probe key; lease reads of the probe key then reach the stalled master's queue. With the plant its
    first turn answers them from its old lease (the old value A). The nemesis must report the stale read
    (checked per key for linearizability, the checker unchanged) and exit non-zero, every time: one run.
    The unplanted twin is test_fault_kind_injected_and_history_linearizable[stall] (same arguments).

    The stale answer needs the reads in the stalled loop's first turn after the stall. Here that held in
    every local run (17 of 17 since the readers connect before the stall), but in two full CI runs the first run
    missed it (the reads waited and were answered B elsewhere; not understood yet, see docs/RELIABILITY.md):
    so up to three runs, with seeds 3, 4 and 5, and the first that reports the anomaly is checked."""
    _requirements("stall")
    resumes = []
    for attempt, seed in enumerate(("3", "4", "5")):
        args = [a if a != "3" else seed for a in STALL_ARGS] + ["--plant", "stale-lease-clock"]
        result, summary, out = nemesis(tmp_path / ("try%d" % attempt), *args)
        if summary["anomalies"]:
            break
        # What the stalled worker's first turn took in (replica/loop.py says it at every late resume): the
        # evidence wanted if every try misses.
        for path in sorted((tmp_path / ("try%d" % attempt) / "run" / "logs").glob("*")):
            resumes += ["try %d %s: %s" % (attempt, path.name, line.strip())
                        for line in path.read_text(errors="replace").splitlines() if "resumed" in line]
    assert summary["plant"] == "stale-lease-clock"
    assert summary["faults"].get("stall", 0) >= 1, out[-3000:]
    assert summary["anomalies"] >= 1, "\n".join(resumes[-30:]) + "\n" + out[-3000:]
    assert result.returncode == 1
    assert "ANOMALY not-linearizable on key probe" in out
    run_dir = tmp_path / ("try%d" % attempt) / "run"
    assert (run_dir / "anomalies.html").exists() and (run_dir / "anomalies.txt").exists()


@pytest.mark.parametrize("plant,problem", [
    ("remove-keeps-state", "holds the removed one's value"),
    ("readd-amnesia", "is not held in incarnation 2 everywhere"),
])
def test_a_group_removed_and_added_back_with_a_planted_bug_fails_the_regroup_check(tmp_path, plant, problem):
    """The regroup fault on real nodes with the simulator's plants of that path: a removed group's state machine
    data that outlives it (the probe written before the removal reads back), and a re-added group in the same
    incarnation (the nodes hold incarnation 1 again). Either fails the run with a FAULT CHECK line. The
    unplanted twin is test_fault_kind_injected_and_history_linearizable[regroup]."""
    _requirements("regroup")
    result, summary, out = nemesis(tmp_path, "--duration", DURATION, "--faults", "regroup", "--seed", "1",
                                   "--plant", plant)
    assert summary["plant"] == plant and summary["faults"].get("regroup", 0) >= 1, out[-3000:]
    assert summary["fault_check_problems"] >= 1 and "FAULT CHECK: regroup: group" in out and problem in out, \
        out[-3000:]
    assert result.returncode == 1


def test_loopback_run_says_so_and_checks_the_history_the_same_way(tmp_path):
    """--loopback (what a run without root or namespaces falls back to): the nodes on 127.0.0.x of one host,
    the fallback said in one line, and the same checks; kill and pause need no namespaces."""
    result, summary, out = nemesis(tmp_path, "--loopback", "--duration", DURATION, "--faults", "kill,pause",
                                   "--seed", "4", "--read-modes", "lease,linearizable")
    assert summary["topology"] == "loopback", out[-3000:]
    assert "falling back to loopback addresses" in out
    assert summary["faults"].get("kill", 0) + summary["faults"].get("pause", 0) >= 1, out[-3000:]
    assert summary["anomalies"] == 0 and summary["lost_acked_writes"] == 0, out[-3000:]
    assert summary["converged"] and summary["tracebacks"] == 0 and summary["nodes_down"] == 0, out[-3000:]
    assert summary["ok"] > 100, out[-3000:]
    assert result.returncode == 0, out[-3000:]


def test_plant_needs_its_explicit_prefix(tmp_path):
    """PAXOS_CORE_PLANT set by mistake (without the unsafe-test-only: prefix) stops a worker from starting
    with one line; it is never silently on."""
    from paxos_core.config import write_cluster

    paths = write_cluster(tmp_path / "c", nodes=1, workers=1, groups=1, curve=False)
    env = dict(os.environ, PAXOS_CORE_PLANT="stale-lease-clock")
    result = subprocess.run([sys.executable, "-m", "paxos_core", "node", str(paths[0])], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PAXOS_CORE_PLANT" in lines[0] and "unsafe-test-only:" in lines[0], lines


def test_unknown_fault_kind_is_one_line_usage_error():
    result = subprocess.run([sys.executable, "-m", "paxos_core", "nemesis", "--faults", "kill,meteor"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "meteor" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------- the power cut's disk, alone

@pytest.fixture
def xfs_disk(tmp_path):
    require_root("mount a loop device")
    for tool, package in TOOLS["powercut"]:
        require_tool(tool, apt=package)
    from paxos_core.nemesis.cluster import XfsDisk

    mount = tmp_path / "mnt"
    mount.mkdir()
    disk = XfsDisk(str(tmp_path / "disk.img"), str(mount))
    started = []
    yield disk, started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    disk.close()


def _hold(started, mount, *tag):
    """A process (started here, stopped by PID) that keeps a file on the mount open; ``tag``: extra argv."""
    code = "import sys, time\nf = open(sys.argv[1], 'w')\nprint('open', flush=True)\ntime.sleep(600)\n"
    proc = subprocess.Popen([sys.executable, "-c", code, os.path.join(mount, "held")] + list(tag),
                            stdout=subprocess.PIPE, text=True)
    started.append(proc)
    assert proc.stdout.readline().strip() == "open"
    return proc


def _synced(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def test_power_cut_kills_the_nodes_late_processes_that_hold_its_filesystem_then_cuts(xfs_disk):
    """A worker spawned just before its node was killed (it still holds the data directory) is the node's:
    the power cut kills it by PID and goes ahead; the filesystem comes back mounted with its synced data."""
    disk, started = xfs_disk
    _synced(os.path.join(disk.mount, "kept"), b"synced")
    late = _hold(started, disk.mount, "paxos_core.runtime.worker", "/x/node1.toml", "0")
    disk.power_cut(ours=lambda cmdline: " /x/node1.toml" in cmdline and "paxos_core" in cmdline, wait=5.0)
    assert late.wait(10) == -9
    with open(os.path.join(disk.mount, "kept"), "rb") as f:
        assert f.read() == b"synced"
    _synced(os.path.join(disk.mount, "after"), b"writable")
    assert disk.holders() == {}


def test_power_cut_refused_while_another_process_holds_the_filesystem_leaves_it_as_it_was(xfs_disk):
    """Something that is not the node's holds the filesystem: the cut is refused (reported as not injected by
    the nemesis), the holder is left alone and the filesystem is neither shut down nor unmounted."""
    from paxos_core.nemesis.cluster import PowerCutRefused

    disk, started = xfs_disk
    stranger = _hold(started, disk.mount)
    with pytest.raises(PowerCutRefused) as caught:
        disk.power_cut(ours=lambda cmdline: False, wait=0.5)
    assert "pid %d" % stranger.pid in str(caught.value) and "\n" not in str(caught.value)
    assert stranger.poll() is None
    _synced(os.path.join(disk.mount, "after"), b"still writable")
    assert os.path.ismount(disk.mount)


def test_remount_of_a_shut_down_filesystem_that_stays_busy_mounts_the_image_afresh(xfs_disk):
    """The filesystem was shut down and something not the node's keeps it busy: it is detached lazily and
    the image mounted again through a new loop device, so the node can start on its synced data."""
    disk, started = xfs_disk
    _synced(os.path.join(disk.mount, "kept"), b"synced")
    stranger = _hold(started, disk.mount)
    old_loop = disk.loop
    subprocess.run(["xfs_io", "-x", "-c", "shutdown", disk.mount], check=True)
    disk.remount(ours=lambda cmdline: False)
    assert disk.loop != old_loop and stranger.poll() is None
    with open(os.path.join(disk.mount, "kept"), "rb") as f:
        assert f.read() == b"synced"
    _synced(os.path.join(disk.mount, "after"), b"writable")


def test_a_power_cut_that_is_refused_is_reported_not_injected_and_the_node_restarts():
    """The disk refuses the cut (something that is not the node's holds it): the fault is reported as not
    injected and the heal starts the node again (it was killed first), so it is not left down."""
    from paxos_core.nemesis.cluster import PowerCutRefused
    from paxos_core.nemesis.faults import Nemesis

    class Disk:
        def power_cut(self, ours):
            raise PowerCutRefused("the filesystem is busy: pid 1 (init)")

        def thaw(self):
            pass

    class Node:
        node_id = 1
        disk = Disk()
        path = "/x/node1.toml"
        running = True
        starts = 0

        def alive(self):
            return self.running

        def kill(self):
            self.running = False

        def start(self):
            self.running = True
            self.starts += 1

        def owns(self, cmdline):
            return False

    cluster = _one_node_cluster(1, Node())
    nemesis = Nemesis(cluster, (), seed=1, say=lambda line: None)
    record = nemesis._inject("powercut")
    assert not record.injected and record.detail.startswith("not injected: PowerCutRefused: the filesystem is busy")
    nemesis.heal()
    assert cluster.nodes[1].running and cluster.nodes[1].starts == 1


def _one_node_cluster(node_id, node):
    """The little of a nemesis Cluster that injecting a power cut reads."""
    from types import SimpleNamespace

    return SimpleNamespace(topology=SimpleNamespace(can_partition=True), nodes={node_id: node})


def test_a_power_cut_aimed_at_a_node_without_its_own_filesystem_is_not_injected_and_kills_nothing():
    """Nemesis seed 601 (every fault): a power cut drawn for node 4, which the member fault had started on the
    shared disk, killed it and then failed on its missing disk ("AttributeError: 'NoneType' object has no
    attribute 'power_cut'"). It is refused before anything is done now."""
    from paxos_core.nemesis.faults import Nemesis

    class Node:
        node_id = 4
        disk = None
        killed = False

        def kill(self):
            self.killed = True

    cluster = _one_node_cluster(4, Node())
    nemesis = Nemesis(cluster, (), seed=1, say=lambda line: None)
    record = nemesis._inject("powercut")
    assert not record.injected and not cluster.nodes[4].killed
    assert record.detail == "not injected: RuntimeError: node 4 has no filesystem of its own to cut"


def test_corrupt_check_reads_the_log_of_a_node_the_member_fault_removed_since(tmp_path):
    """Nemesis seed 601 (every fault): node 3 was corrupted, restarted, then replaced by the member fault, and
    the final check looked it up among the members: KeyError, a traceback instead of a verdict."""
    from types import SimpleNamespace

    from paxos_core.nemesis.faults import FaultRecord, corrupt_detected

    def node(name, text):
        path = tmp_path / name
        path.write_text(text)
        return SimpleNamespace(log_path=str(path))

    def cluster(nodes, removed):
        """The two maps corrupt_detected reads, with Cluster's own lookup over them."""
        from paxos_core.nemesis.cluster import Cluster

        fake = SimpleNamespace(nodes=nodes, removed=removed)
        fake.any_node = lambda node_id: Cluster.any_node(fake, node_id)
        return fake

    record = FaultRecord("corrupt", "", 3, 1.0)
    record.log_mark = len("started\n")
    reported = node("reported.log", "started\nlog worker-0: synced state damaged: ...\n")
    silent = node("silent.log", "started\nserving\n")
    assert corrupt_detected(cluster({3: reported}, {}), record)
    assert not corrupt_detected(cluster({3: silent}, {}), record)
    assert corrupt_detected(cluster({}, {3: reported}), record)
    # Left before it said anything: its damaged disk went with it, nothing to check.
    assert corrupt_detected(cluster({}, {3: silent}), record)


def test_corrupt_strikes_only_live_worker_directories_not_those_set_aside(tmp_path):
    """A worker directory set aside after earlier damage (worker-1.damaged-<time>) is never read again: a bit
    flipped there cannot be detected (seed 110, 5 nodes, reported "corruption not reported by the node")."""
    from paxos_core.nemesis.cluster import Cluster

    for name in ("worker-0", "worker-1", "worker-1.damaged-20261202T022530Z", "worker-12"):
        (tmp_path / name).mkdir()
    (tmp_path / "worker-2").write_text("a file, not a directory")

    class Node:
        data_dir = str(tmp_path)

    class Fake:
        nodes = {1: Node()}

    assert [os.path.basename(p) for p in Cluster.worker_log_dirs(Fake(), 1)] == ["worker-0", "worker-1", "worker-12"]


def _leftovers(run_dir, prefix):
    """What a run left behind: processes started in run_dir, mounts under it, loop devices on its images,
    namespaces with its prefix."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if run_dir.encode() in f.read():
                        found.append("process %s" % pid)
            except OSError:
                pass
    with open("/proc/mounts") as f:
        found += ["mount " + line.split()[1] for line in f if run_dir in line.split()[1]]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    found += ["loop " + line for line in loops.splitlines() if run_dir in line]
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += ["netns " + line for line in spaces.splitlines() if line.startswith(prefix)]
    return found


def _clean(run_dir, prefix):
    """Remove what a failed run left (so that one failure does not spill into later tests)."""
    for item in _leftovers(run_dir, prefix):
        what, name = item.split(" ", 1)
        if what == "process":
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(int(name), sig)
                except OSError:
                    pass
    for item in _leftovers(run_dir, prefix):
        what, name = item.split(" ", 1)
        if what == "mount":
            subprocess.run(["umount", "-l", name], capture_output=True)
        elif what == "loop":
            subprocess.run(["losetup", "-d", name.split(":")[0]], capture_output=True)
        elif what == "netns":
            subprocess.run(["ip", "netns", "del", name.split()[0]], capture_output=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_run_stopped_by_a_signal_stops_its_nodes_unmounts_and_deletes_its_namespaces(tmp_path, signum):
    """SIGTERM (or Ctrl-C's SIGINT) in the middle of the fault phase: the run's `finally` still stops every
    node by PID, unmounts and detaches the XFS disks and deletes the namespaces; the exit status says which
    signal, and the run's files stay."""
    _requirements("powercut")
    run_dir = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "paxos_core", "nemesis", "--dir", run_dir, "--duration", "120",
           "--faults", "pause,partition,powercut", "--seed", "5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prefix = "px%d" % proc.pid
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            if re.match(r"^nemesis: \d+\.\d s ", line):      # a fault is being injected: the cluster is busy
                break
        assert any(l.startswith("nemesis: 3 nodes") for l in out), "".join(out)[-3000:]
        assert _leftovers(run_dir, prefix), "the run had set things up"
        proc.send_signal(signum)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = _leftovers(run_dir, prefix)
    _clean(run_dir, prefix)
    assert proc.returncode == 128 + signum, (proc.returncode, err[-3000:], left)
    assert "stopped by %s" % signal.Signals(signum).name in err, err[-3000:]
    assert left == [], "".join(out)[-2000:] + rest[-2000:]
    assert os.path.isdir(os.path.join(run_dir, "logs")), "the run's files are kept"


def test_a_client_task_follows_its_node_out_of_the_cluster(monkeypatch):
    """Seeds 341 and 347 of the member nemesis did about a fifth of the usual operations: tasks whose node
    had been replaced kept sending it their stale reads, and each waited the whole operation timeout. A task
    whose node left now takes a current member as its node (for stale reads and as its client's preferred
    node), and sends the first attempt of other reads to current members only."""
    from paxos_core.nemesis import workload as workload_module

    class FakeClient:
        def __init__(self, endpoints, workers, groups, prefer=None, **_):
            self.prefer = prefer

        def close(self):
            pass

    members = [1, 2, 3]
    calls = []

    def fake_do_op(client, groups, history, task, kind, key, *, mode="linearizable", node=None, **_):
        calls.append((kind, mode, node, client.prefer))
        if len(calls) == 20:
            members[:] = [2, 3, 4]            # node 1 replaced by node 4
        if len(calls) == 400:
            wl.stop.set()
        return workload_module.Op(len(calls), key, kind, client=task)

    monkeypatch.setattr(workload_module, "Client", FakeClient)
    monkeypatch.setattr(workload_module, "do_op", fake_do_op)
    monkeypatch.setattr(workload_module.time, "sleep", lambda s: None)
    wl = workload_module.Workload({n: ["tcp://127.0.0.1:1"] for n in range(1, 5)}, 1, 4,
                                  workload_module.History(), read_modes=("linearizable", "stale"), seed=341,
                                  members=lambda: list(members))
    wl._task(0)
    before, after = calls[:20], calls[20:]
    assert any(mode == "stale" and node == 1 for kind, mode, node, _ in before if kind == "read")
    assert {prefer for *_, prefer in before} == {1}
    reads = [(mode, node) for kind, mode, node, _ in after if kind == "read"]
    assert any(mode == "stale" for mode, _ in reads) and any(mode == "linearizable" for mode, _ in reads)
    assert all(node == 2 for mode, node in reads if mode == "stale")
    assert {node for mode, node in reads if mode == "linearizable"} == {2, 3, 4}
    assert {prefer for *_, prefer in after} == {2}


@pytest.mark.parametrize("kind", ["corrupt", "wipe"])
def test_no_memory_is_taken_from_a_voter_while_one_wiped_for_a_replacement_is_still_a_member(kind):
    """Nemesis seeds 601 and 603 (every fault, 3 nodes): the member fault killed and wiped node 1 to replace
    it, and before the swap was chosen the corrupt fault damaged node 5's log; node 5 had to rebuild from a
    majority of the other voters (1, 4), node 1 was gone, and the groups stood still to the end ("not
    converged", node 5 repairing). Faults that take a node's memory now wait while a wiped voter awaits its
    replacement, and are reported as not injected if it still does after 20 s."""
    from types import SimpleNamespace

    from paxos_core.nemesis.faults import Nemesis

    class Node:
        node_id = 5
        killed = False

        def kill(self):
            self.killed = True

    cluster = _one_node_cluster(5, Node())
    now = [0.0]

    def clock():
        now[0] += 7.0           # the 20 s wait passes in a few looks
        return now[0]
    nemesis = Nemesis(cluster, (), seed=1, say=lambda line: None, clock=clock)
    nemesis.repairing = lambda: 0
    nemesis.operator = SimpleNamespace(wiped={1})
    record = nemesis._inject(kind)
    assert not record.injected and not cluster.nodes[5].killed
    assert record.detail == "not injected: RuntimeError: node(s) 1 wiped by the member fault are not replaced yet"


def _replacing_operator(tmp_path, repairing):
    """A MemberOperator on a fake 3-node cluster (spare host 4) whose replacement step runs up to the swap: the
    join is made up, the swap answers epoch 7; the Nemesis is real (its guard), `repairing` its status look."""
    from types import SimpleNamespace

    from paxos_core.nemesis.faults import Nemesis
    from paxos_core.nemesis.member import MemberOperator

    class Node:
        paused = False

        def __init__(self, node_id):
            self.node_id, self.data_dir, self.killed = node_id, str(tmp_path / ("n%d" % node_id)), False

        def alive(self):
            return not self.killed

        def kill(self):
            self.killed = True

    def set_members(members, removed=None):
        cluster.nodes = dict(members)
        cluster.removed = dict(removed or {})

    cluster = SimpleNamespace(nodes={n: Node(n) for n in (1, 2, 3)}, removed={}, spare_ids=[4],
                              set_members=set_members, topology=SimpleNamespace(can_partition=True))
    now = [0.0]

    def clock():
        now[0] += 7.0           # the guard's 20 s wait passes in a few looks
        return now[0]
    nemesis = Nemesis(cluster, (), seed=1, say=lambda line: None, clock=clock)
    nemesis.repairing = repairing
    operator = MemberOperator(nemesis, random.Random(3), lambda *a: SimpleNamespace(
        detail="", injected=False, target=None))
    membership = SimpleNamespace(replace=lambda old, new: SimpleNamespace(epoch=7))
    operator._until = lambda what, deadline: what(SimpleNamespace(membership=membership))

    def join(record, table, deadline, replaces=None):
        cluster.nodes[4] = Node(4)
        return 4
    operator._join = join
    return operator, cluster


def test_the_member_fault_replaces_no_voter_while_a_node_rebuilds(tmp_path):
    """Nemesis seed 610 (every fault, 3 nodes): node 1 was wiped and rebuilt from its peers; before it was done,
    the member fault killed and wiped node 4 of voters 1-4 to replace it. With one voter gone and one that
    had lost its memory, no majority remembered: the add of node 4's replacement never got through, and node 1
    rebuilt to the end ("not converged"). The replacement now waits (20 s, holding `quiet`) until no node is
    rebuilding, and is not made if one still is."""
    from types import SimpleNamespace

    operator, cluster = _replacing_operator(tmp_path, repairing=lambda: 1)
    record = SimpleNamespace(detail="", injected=False, target=None)
    with pytest.raises(RuntimeError, match="a node is still rebuilding"):
        operator._replace(record, {"voters": [1, 2, 3]}, time.monotonic() + 60.0)
    assert not any(node.killed for node in cluster.nodes.values()) and sorted(cluster.nodes) == [1, 2, 3]
    assert operator.wiped == set() and not record.injected
    assert not operator.nemesis.quiet.locked()
    rebuilt = iter([1, 1, 0])               # done within the wait: the step goes on
    operator, cluster = _replacing_operator(tmp_path, repairing=lambda: next(rebuilt, 0))
    operator._adopted = lambda epoch: True
    operator._replace(record, {"voters": [1, 2, 3]}, time.monotonic() + 60.0)
    assert record.injected and record.target not in cluster.nodes and cluster.removed[record.target].killed
    assert 4 in cluster.nodes and operator.wiped == set()


def test_a_wiped_voter_counts_as_lost_until_every_group_has_adopted_its_replacement(tmp_path):
    """Nemesis seed 603 (every fault, 3 nodes): the swap that replaced wiped node 1 was chosen, so the guard of
    the faults that take memory let a wipe through, but idle group 2 had not adopted the new epoch yet and still
    voted on nodes 1, 2, 3: with node 1 gone and another voter wiped, it stood still to the end ("not
    converged"). The wiped voter now leaves `MemberOperator.wiped` only once the epoch that replaced it is
    adopted everywhere, both in the replacement step and when a later step finds it out of the table."""
    from types import SimpleNamespace

    from paxos_core import errors

    operator, cluster = _replacing_operator(tmp_path, repairing=lambda: 0)
    nodes = dict(cluster.nodes)
    looked = []
    adopted = {"now": False}

    def is_adopted(epoch):
        looked.append((epoch, set(operator.wiped)))
        if adopted["now"] is None:
            raise errors.Timeout("the replacement step ends here, its epoch not adopted")
        return adopted["now"]
    operator._adopted = is_adopted
    operator.held = set()
    record = SimpleNamespace(detail="", injected=False, target=None)
    adopted["now"] = None
    with pytest.raises(errors.Timeout):
        operator._replace(record, {"voters": [1, 2, 3]}, time.monotonic() + 60.0)
    adopted["now"] = False
    old = record.target
    assert nodes[old].killed and operator.wiped == {old}, "not adopted yet: still counted as lost"
    assert looked and all(epoch == 7 and wiped == {old} for epoch, wiped in looked)

    # A later step reads a table without the wiped voter: still lost while that epoch is not adopted everywhere.
    table = {"epoch": 7, "voters": sorted({1, 2, 3, 4} - {old}), "learners": [], "next_id": 5}
    operator._until = lambda what, deadline: table          # no spare left: the step reads the table, no more
    assert operator.step(None) is None and operator.wiped == {old}
    adopted["now"] = True
    assert operator.step(None) is None and operator.wiped == set() and looked[-1] == (7, {old})


def test_a_wiped_node_whose_file_lists_no_member_left_rebuilds_with_a_bundle_of_the_table(tmp_path):
    """Nemesis seed 622 (every fault, 3 nodes): node 1 was wiped after the member fault had replaced nodes 3 and
    2 by 4 and 6; its node file named no member left, it refused every peer's key and stayed repairing to the
    end. The wipe fault now gives such a node the table's nodes and keys as an operator does (`member bundle`,
    `node FILE --rebuild --bundle`); a node whose file lists a member left rebuilds from its file as before."""
    from types import SimpleNamespace

    from paxos_core.config import load_config, write_cluster
    from paxos_core.join import read_bundle
    from paxos_core.nemesis.faults import Nemesis
    from paxos_core.nemesis.member import MemberOperator

    files = write_cluster(tmp_path / "cluster", nodes=3, workers=1, groups=2, base_port=20000)
    config = load_config(files[0])
    cluster = SimpleNamespace(dir=str(tmp_path), configs=[config], topology=SimpleNamespace(can_partition=True),
                              nodes={1: SimpleNamespace(path=str(files[0]))})
    nemesis = Nemesis(cluster, (), seed=1, say=lambda line: None)
    operator = MemberOperator(nemesis, random.Random(3), lambda *a: None)
    public = {n: open(config.keys_dir / ("node%d.key" % n)).read().split('"')[1] for n in (1, 2, 3)}

    def table(*ids):
        nodes = [{"id": n, "role": "voter", "host": "127.0.0.1", "peer_port": 21000 + n, "client_port": 22000 + n,
                  "public_key": public.get(n, public[1])} for n in ids]
        return {"epoch": 7, "nodes": nodes + [{"id": 3, "role": "removed", "host": "127.0.0.1", "peer_port": 1,
                                               "client_port": 2, "public_key": public[3]}]}
    history = [{"voters": [1, 2, 3]}]
    for ids, expected in (((1, 2, 4), None), ((1, 4, 6), (1, 4, 6))):
        operator._until = lambda what, deadline: what(SimpleNamespace(membership=SimpleNamespace(
            table=lambda: table(*ids), history=lambda: history)))
        path = operator.rebuild_bundle(1, 0)
        if expected is None:
            assert path is None, "node 2, which its file lists, is still a member: it rebuilds from its file"
            continue
        bundle = read_bundle(path)
        assert bundle["node_id"] == 1 and bundle["first_voters"] == [1, 2, 3]
        assert [n["id"] for n in bundle["node_file"]["cluster"]["nodes"]] == list(expected)


def test_an_operator_call_is_retried_with_a_fresh_client_until_done_refused_or_out_of_time():
    from paxos_core import errors
    from paxos_core.nemesis.retry import until_done

    made, closed = [], []

    class FakeClient:
        def __init__(self):
            made.append(self)

        def close(self):
            closed.append(self)

    def failing(outcomes):
        outcomes = list(outcomes)

        def what(client):
            outcome = outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return what

    # "Not now" errors are retried, each try with a client of its own, every one closed.
    far = time.monotonic() + 60
    assert until_done(FakeClient, failing([errors.NotMaster("x"), errors.Timeout("y"), "done"]), far, 0) == "done"
    assert len(made) == 3 and closed == made and len(set(map(id, made))) == 3
    # An error the caller calls final is raised at once, and so is anything that is not a PaxosError.
    final = errors.MembershipError("refused")
    with pytest.raises(errors.MembershipError):
        until_done(FakeClient, failing([final, "never"]), far, 0, final=lambda exc: exc is final)
    with pytest.raises(RuntimeError):
        until_done(FakeClient, failing([RuntimeError("a failed check"), "never"]), far, 0)
    # Out of time: tried once all the same, then Timeout naming the last error.
    with pytest.raises(errors.Timeout, match="ConfigError: node 2 cannot be asked"):
        until_done(FakeClient, failing([errors.ConfigError("node 2 cannot be asked")]), time.monotonic() - 1, 0)
    assert closed == made

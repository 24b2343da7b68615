"""A node's processes: workers that outlive nobody, failed starts that say why in one line and leave nothing
running, readiness that only counts our own workers, and worker log records delivered to the embedding
program's logging.

Real processes on 127.0.0.1: `paxos-core node` subprocesses (tests/cluster_harness.py) and Nodes embedded in
this test process. Every process a test starts is stopped by its pid (the harness, Node.close, or the
`strays` fixture for anything left behind by a failure).
"""
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w

from cluster_harness import LocalCluster, alive, descendants, package_env, wait_for
from paxos_core import errors
from paxos_core.node import Node


def paxos_core_command():
    return [sys.executable, "-m", "paxos_core"]


def run_node_cli(config_path, timeout=120):
    """`paxos-core node CONFIG` to its end (it is expected to fail); its result."""
    return subprocess.run(paxos_core_command() + ["node", str(config_path)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=package_env())


def processes_with(text):
    """Pids of the live processes whose command line holds `text` (a config path)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and alive(int(entry)):
            found.append(int(entry))
    return found


@pytest.fixture
def strays():
    """Pids a test registers (processes it started or expects gone); any still alive at the end is killed by
    its pid, and the test fails."""
    pids = set()
    yield pids
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "processes left running: %s" % left


@pytest.fixture
def cluster(tmp_path):
    """A written 3-node cluster (2 workers per node), nothing started; closed (and checked) afterwards."""
    c = LocalCluster(tmp_path / "cluster", nodes=3, workers=2, groups=8, start=False)
    yield c
    c.close()


def listen_on(port):
    """A socket listening on 127.0.0.1:port, or None while the port is still held (a connection of a killed
    process still closing)."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


def one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def copy_of_node(cfg, directory, port_shift):
    """Node `cfg`'s file, written under `directory` with every port of that node moved by `port_shift`,
    and the SAME data directory (absolute): another process that wants the same data."""
    with open(cfg.path, "rb") as f:
        data = tomllib.load(f)
    for member in data["cluster"]["nodes"]:
        if member["id"] == cfg.node_id:
            for key in ("peer_port", "client_port", "metrics_port"):
                member[key] += port_shift
    data["node"]["data_dir"] = str(cfg.data_dir)
    if cfg.keys_dir:
        data["cluster"]["keys_dir"] = str(cfg.keys_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / Path(cfg.path).name
    with open(path, "wb") as f:
        tomli_w.dump(data, f)
    return path


# ---------------------------------------------------------------------------------------------- item 1


def test_workers_stop_when_the_node_process_is_killed_and_the_node_restarts_right_after(cluster):
    cluster.start(1)
    workers = cluster.worker_pids(1)
    supervisor = cluster.procs[1].pid
    assert sorted(workers.values()) == sorted(descendants(supervisor))
    os.kill(supervisor, signal.SIGKILL)
    cluster.procs[1].popen.wait(10)
    # The workers notice through their channel's end of file (and SIGTERM from the kernel on Linux).
    wait_for(lambda: not any(alive(p) for p in workers.values()), 5, message="orphaned workers gone")
    rows = cluster.start(1)
    assert {r["worker"]: r["pid"] for r in rows} != workers
    assert "Traceback" not in Path(cluster.procs[1].stderr).read_text()


def test_a_worker_stops_when_the_channel_from_its_supervisor_ends(cluster, strays):
    """The mechanism: end of file on the supervisor's channel stops the worker (the supervisor process itself
    stays alive here, so nothing else could tell the worker)."""
    node = Node(cluster.config_path(1), ready_timeout=60)
    try:
        before = node.supervisor.pids()
        strays.update(before.values())
        node.supervisor._workers[0].sock.shutdown(socket.SHUT_WR)
        wait_for(lambda: not alive(before[0]), 5, message="worker 0 stopped")
        assert alive(before[1])
    finally:
        node.close()
    assert not any(alive(p) for p in before.values())


GRANDCHILD = """
import sys, time
from paxos_core.runtime.channel import set_parent_death_signal
assert set_parent_death_signal()
print("armed", flush=True)
time.sleep(120)
"""

CHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
assert grandchild.stdout.readline().strip() == "armed"
print(grandchild.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_parent_death_signal_alone_stops_a_process_whose_parent_is_killed(strays):
    """The second mechanism on its own (no channel): what a worker asks the kernel for at start."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, GRANDCHILD], stdout=subprocess.PIPE, text=True,
                             env=package_env())
    strays.add(child.pid)
    grandchild = int(child.stdout.readline())
    strays.add(grandchild)
    assert alive(grandchild)
    child.kill()
    child.wait(10)
    child.stdout.close()
    wait_for(lambda: not alive(grandchild), 5, message="the grandchild got SIGTERM when its parent died")


def test_a_node_started_from_a_thread_that_ends_keeps_its_workers(cluster, strays):
    """The parent-death signal follows the thread that spawned a worker: the README's
    asyncio.to_thread(Node, ...) must not lose its workers when that thread goes."""
    made = []
    thread = threading.Thread(target=lambda: made.append(Node(cluster.config_path(1), ready_timeout=60)))
    thread.start()
    thread.join()
    node = made[0]
    try:
        pids = node.supervisor.pids()
        strays.update(pids.values())
        time.sleep(1.5)            # a worker told to stop would be gone by now (a poll lasts at most 1 s)
        assert all(alive(p) for p in pids.values())
        rows = node.wait_ready(10)
        assert {r["worker"]: r["pid"] for r in rows} == pids
        assert node.supervisor.restarts == {0: 0, 1: 0}
    finally:
        node.close()


# ---------------------------------------------------------------------------------------------- item 2


def test_a_port_in_use_fails_the_start_with_one_line_and_leaves_nothing_running(cluster):
    cfg = cluster.config(1)
    port = cfg.me.client_port + 1                      # worker 1's client port
    with listen_on(port):
        result = run_node_cli(cfg.path)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert one_line(result.stderr) == "paxos-core node: address in use: 127.0.0.1:%d" % port
    assert "running" not in result.stdout
    assert processes_with(str(cfg.path)) == []


def test_a_second_node_on_the_same_data_directory_fails_with_one_line(cluster, tmp_path):
    cluster.start(1)
    holders = set(cluster.worker_pids(1).values())
    other = copy_of_node(cluster.config(1), tmp_path / "other", port_shift=50)
    result = run_node_cli(other)
    assert result.returncode == 1, (result.returncode, result.stderr)
    line = one_line(result.stderr)
    prefix = "paxos-core node: data directory %s is in use by another process (pid " % cluster.config(1).data_dir
    assert line.startswith(prefix), line
    assert int(line[len(prefix):].rstrip(")")) in holders
    assert "running" not in result.stdout
    assert processes_with(str(other)) == []
    cluster.status(1)                                  # the node that was there first still serves


def test_node_against_a_running_node_raises_and_leaves_nothing(cluster, strays):
    cluster.start(1)
    running = set(cluster.worker_pids(1).values()) | {cluster.procs[1].pid}
    before = set(descendants(os.getpid()))
    threads = set(threading.enumerate())
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(errors.StartError) as info:
        Node(cluster.config_path(1), ready_timeout=60)
    assert set(threading.enumerate()) - threads == set()        # no supervisor thread, no client I/O thread
    assert set(os.listdir("/proc/self/fd")) - fds == set()      # sockets, channels and contexts closed
    assert isinstance(info.value, errors.PaxosError)
    assert str(info.value).startswith("address in use: 127.0.0.1:"), str(info.value)
    assert "\n" not in str(info.value)
    strays.update(set(descendants(os.getpid())) - before)
    assert set(descendants(os.getpid())) - before == set()
    assert set(processes_with(str(cluster.config_path(1)))) <= running
    cluster.status(1)


def test_readiness_counts_only_answers_from_the_workers_this_node_started(cluster, strays):
    node = Node(cluster.config_path(1), ready_timeout=60)
    try:
        pids = node.supervisor.pids()
        strays.update(pids.values())
        assert {r["worker"]: r["pid"] for r in node.wait_ready(10)} == pids
        # As if the workers answering on these ports were some other node's: not ready.
        node.supervisor.pids = lambda: {i: pid + 100000 for i, pid in pids.items()}
        with pytest.raises(errors.StartError, match="which this node did not start"):
            node.wait_ready(1)
    finally:
        node.close()


def test_a_worker_that_keeps_failing_to_restart_stops_the_node_with_one_line(cluster):
    cluster.start(1)
    cfg = cluster.config(1)
    supervisor = cluster.procs[1].pid
    workers = cluster.worker_pids(1)
    port = cfg.me.client_port                            # worker 0's
    os.kill(supervisor, signal.SIGSTOP)                  # so it cannot restart worker 0 before the port is taken
    try:
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: not alive(workers[0]), 5, message="worker 0 gone")
        sock = wait_for(lambda: listen_on(port), 10, message="port %d taken by the test" % port)
    finally:
        os.kill(supervisor, signal.SIGCONT)
    try:
        code = cluster.procs[1].popen.wait(60)
    finally:
        sock.close()
    assert code == 1
    err = Path(cluster.procs[1].stderr).read_text()
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == ("paxos-core node: worker 0 could not start again: address in use: 127.0.0.1:%d "
                    "(6 failures in a row; giving up)" % port), err[-3000:]
    assert err.count("restarting it in") == 5, err[-3000:]          # after the kill, then 4 failed starts
    assert not alive(workers[1])
    assert processes_with(str(cfg.path)) == []


# ---------------------------------------------------------------------------------------------- item 3


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_worker_log_records_reach_the_embedding_programs_logging(cluster, strays, capfd):
    capture = Capture()
    logger = logging.getLogger("paxos_core")
    logger.addHandler(capture)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        node = Node(cluster.config_path(1), ready_timeout=60)
        try:
            pids = node.supervisor.pids()
            strays.update(pids.values())
        finally:
            node.close()
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old_level)
    up = {r.worker: r for r in capture.records if r.name == "paxos_core.worker" and " up: " in r.getMessage()}
    assert sorted(up) == [0, 1]
    for index, record in up.items():
        assert record.levelno == logging.INFO
        assert record.process == pids[index]               # made in the worker process, handled here
        assert record.node == 1 and record.processName == "node1.worker%d" % index
        assert record.getMessage().startswith("node 1 worker %d up: " % index)
    # Nothing of the workers went to the stderr they inherited from this process.
    assert " up: " not in capfd.readouterr().err


def test_worker_records_follow_the_programs_levels(cluster, strays):
    """A logger the program set to WARNING gets no INFO record of a worker (levels apply here too)."""
    capture = Capture()
    logger = logging.getLogger("paxos_core")
    logger.addHandler(capture)
    old_level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        node = Node(cluster.config_path(1), ready_timeout=60)
        strays.update(node.supervisor.pids().values())
        node.close()
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old_level)
    assert [r for r in capture.records if r.levelno < logging.WARNING] == []


def test_a_config_the_worker_cannot_use_is_one_line_too(cluster, tmp_path):
    """A start failure that is not a socket or a lock (here the data directory belongs to another node):
    the worker's own one-line reason, no traceback."""
    cfg1, cfg2 = cluster.config(1), cluster.config(2)
    other = copy_of_node(cfg1, tmp_path / "wrong", port_shift=0)
    with open(other, "rb") as f:
        data = tomllib.load(f)
    data["node"]["data_dir"] = str(cfg2.data_dir)        # node 2's data for node 1
    with open(other, "wb") as f:
        tomli_w.dump(data, f)
    result = run_node_cli(other)
    assert result.returncode == 1, (result.returncode, result.stderr)
    line = one_line(result.stderr)
    assert line.startswith("paxos-core node: ") and "belongs to node 2 of cluster" in line, line
    assert processes_with(str(other)) == []

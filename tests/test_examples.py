"""The shipped examples run as their docstrings say (examples/asyncio_service.py: three services, one per node)."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from cluster_harness import alive, descendants, free_base_port, wait_for
from paxos_core.config import write_cluster

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "asyncio_service.py"


def _free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ask(port, line, timeout=15.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(line.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()


def _ctrl_c_as_in_a_terminal():
    # A test run in the background (nohup, `cmd &` in a script: CI) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: the example would not see the test's Ctrl-C, and each service was
    # killed after 30 s instead (90 s of every such run).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_asyncio_service_example_replicates_puts_and_serves_gets(tmp_path):
    cluster = tmp_path / "cluster"
    write_cluster(cluster, nodes=3, workers=1, groups=4, base_port=free_base_port(3, 1))
    ports = {node: _free_tcp_port() for node in (1, 2, 3)}
    procs, pids = {}, set()
    try:
        for node, port in ports.items():
            err = open(tmp_path / ("service%d.err" % node), "wb")
            procs[node] = subprocess.Popen([sys.executable, str(EXAMPLE), str(cluster / ("node%d.toml" % node)),
                                            str(port)], stdout=subprocess.PIPE, stderr=err, cwd=str(tmp_path),
                                           preexec_fn=_ctrl_c_as_in_a_terminal)
            err.close()
            pids.add(procs[node].pid)
        for node, proc in procs.items():
            line = proc.stdout.readline().decode()
            while line and not line.startswith("serving on"):
                line = proc.stdout.readline().decode()        # master-change lines may come first
            assert line.startswith("serving on 127.0.0.1:%d" % ports[node]), (tmp_path / ("service%d.err" % node)).read_text()
            pids.update(descendants(proc.pid))                 # the node's worker processes
        assert wait_for(lambda: _ask(ports[1], "PUT greeting hello") == "OK", timeout=30, message="PUT via node 1")
        # Another node's service reads it (a lease read, redirected to the group's master).
        assert wait_for(lambda: _ask(ports[3], "GET greeting") == "hello", timeout=30, message="GET via node 3")
        assert _ask(ports[2], "GET missing") == "(none)"
        assert _ask(ports[2], "PUT greeting bonjour") == "OK"
        assert _ask(ports[1], "GET greeting") == "bonjour"
        assert _ask(ports[1], "DELETE greeting").startswith("ERR usage")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)             # the example closes its node on Ctrl-C
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        for pid in pids:                                    # workers stop with their node; make sure, by pid
            if alive(pid):
                try:
                    wait_for(lambda: not alive(pid), timeout=15, message="process %d stopped" % pid)
                except AssertionError:
                    os.kill(pid, signal.SIGKILL)
                    raise

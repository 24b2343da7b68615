"""The supervisor: starts a node's worker processes and restarts any that dies.

Workers are spawned, never forked: each is a fresh interpreter (`python -m paxos_core.runtime.worker`),
started with subprocess, so no RocksDB handle or thread of the parent leaks into it (a fork after RocksDB
is open makes children hang), and a program that embeds a Node needs no `if __name__ == "__main__"` guard.

A worker that exits without being asked to is reported (log line, restart counter) and started again after
a short backoff; it recovers its groups from its log. Stopping sends SIGTERM to every worker, which finishes
its cycle, closes its log and exits; one that does not within the grace period is killed. Workers also stop
by themselves when the supervisor disappears.
"""
import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time

from . import spawn

log = logging.getLogger("paxos_core.supervisor")


class Supervisor:
    def __init__(self, config, config_source, log_level=logging.INFO):
        self.config = config
        self.log_level = log_level
        if isinstance(config_source, dict):
            fd, path = tempfile.mkstemp(prefix="paxos-node%d-" % config.node_id, suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(config_source, f)
            self._temp_config = path
            self.config_path = path
        else:
            self._temp_config = None
            self.config_path = str(config_source)
        self.processes = {}
        self.restarts = {i: 0 for i in range(config.workers)}
        self._stopping = threading.Event()
        self._thread = None

    def start(self):
        for i in range(self.config.workers):
            self._start_worker(i)
        self._thread = threading.Thread(target=self._watch, name="paxos-supervisor", daemon=True)
        self._thread.start()

    def _start_worker(self, index):
        # spawn.py: the worker imports this very paxos_core, whatever its current directory holds.
        argv = spawn.python_command("paxos_core.runtime.worker", self.config_path, index,
                                    logging.getLevelName(self.log_level))
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True, env=spawn.environment())
        self.processes[index] = proc
        log.info("node %d: worker %d started (pid %d)", self.config.node_id, index, proc.pid)

    def _watch(self):
        backoff = {i: 0.2 for i in self.processes}
        while not self._stopping.wait(0.2):
            for index, proc in list(self.processes.items()):
                if proc.poll() is None or self._stopping.is_set():
                    continue
                self.restarts[index] += 1
                log.error("node %d: worker %d (pid %d) died with exit code %s; restarting it (restart #%d)",
                          self.config.node_id, index, proc.pid, proc.returncode, self.restarts[index])
                time.sleep(backoff[index])
                backoff[index] = min(backoff[index] * 2, 5.0)
                if not self._stopping.is_set():
                    self._start_worker(index)

    def pids(self):
        return {i: p.pid for i, p in self.processes.items()}

    def stop(self, grace=10.0):
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for proc in self.processes.values():
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for index, proc in self.processes.items():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("node %d: worker %d did not stop in %.0fs; killing it", self.config.node_id, index, grace)
                proc.kill()
                proc.wait(5)
        if self._temp_config:
            try:
                os.unlink(self._temp_config)
            except OSError:
                pass

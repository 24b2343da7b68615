"""The supervisor: starts a node's worker processes (multiprocessing 'spawn'), restarts any that dies.

A worker that exits without being asked to is reported (log line, restart counter) and started again after
a short backoff; it recovers its groups from its log. Stopping sends SIGTERM to every worker, which finishes
its cycle, closes its log and exits; one that does not within the grace period is killed.
"""
import logging
import multiprocessing
import os
import signal
import threading
import time

from .worker import worker_main

log = logging.getLogger("paxos_core.supervisor")


class Supervisor:
    def __init__(self, config, config_source, log_level=logging.INFO):
        self.config = config
        self.config_source = config_source          # a path, or NodeConfig.to_dict()
        self.log_level = log_level
        self.context = multiprocessing.get_context("spawn")
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
        proc = self.context.Process(target=worker_main, args=(self.config_source, index, self.log_level),
                                    name="paxos-node%d-worker%d" % (self.config.node_id, index), daemon=False)
        proc.start()
        self.processes[index] = proc
        log.info("node %d: worker %d started (pid %d)", self.config.node_id, index, proc.pid)

    def _watch(self):
        backoff = {i: 0.2 for i in self.processes}
        while not self._stopping.wait(0.2):
            for index, proc in list(self.processes.items()):
                if proc.is_alive() or self._stopping.is_set():
                    continue
                self.restarts[index] += 1
                log.error("node %d: worker %d (pid %d) died with exit code %s; restarting it (restart #%d)",
                          self.config.node_id, index, proc.pid, proc.exitcode, self.restarts[index])
                time.sleep(backoff[index])
                backoff[index] = min(backoff[index] * 2, 5.0)
                if not self._stopping.is_set():
                    self._start_worker(index)

    def pids(self):
        return {i: p.pid for i, p in self.processes.items()}

    def stop(self, grace=10.0):
        self._stopping.set()
        for proc in self.processes.values():
            if proc.is_alive():
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for index, proc in self.processes.items():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("node %d: worker %d did not stop in %.0fs; killing it", self.config.node_id, index, grace)
                proc.kill()
                proc.join(5)
        if self._thread is not None:
            self._thread.join(timeout=2)

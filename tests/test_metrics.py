"""Each worker's Prometheus endpoint also serves its process's metrics (process_*, python_gc_*, python_info),
the build info, and a counter of the master changes the worker has seen. Real nodes on 127.0.0.1."""
import platform
import re
import urllib.request

import pytest

from cluster_harness import LocalCluster, wait_for
from paxos_core import __version__
from paxos_core.statemachine import kv as ops

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("metrics"), nodes=3, workers=2, groups=4)
    yield c
    c.close()


def scrape(cluster, node, worker):
    """[(name, {label: value}, value)] of one worker's endpoint."""
    host, port = cluster.config(node).me.metrics_address(worker)
    with urllib.request.urlopen("http://%s:%d/metrics" % (host, port), timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    out = []
    for m in map(_SAMPLE.match, text.splitlines()):
        if m:
            out.append((m["name"], dict(re.findall(r'(\w+)="([^"]*)"', m["labels"] or "")), float(m["value"])))
    return out


def test_process_gc_build_info_and_master_changes_on_every_worker(cluster):
    client = cluster.client(prefer=1)
    for group in range(cluster.groups):        # every group gets a master (and every worker some groups)
        client.propose(group, ops.encode_put(b"m%d" % group, b"v"), timeout=30.0)
    for node in cluster.node_ids:
        for worker in range(cluster.workers):
            where = "node %d worker %d" % (node, worker)
            # Every replica applies the master entries of its groups: its counter moves without any request.
            changes = wait_for(lambda: [v for name, labels, v in scrape(cluster, node, worker)
                                        if name == "paxos_core_master_changes_total" and v > 0],
                               30, message=where + ": master changes counted")
            assert len(changes) == 1, where
            samples = scrape(cluster, node, worker)
            names = {name for name, _, _ in samples}
            for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                         "python_gc_objects_collected_total", "python_gc_collections_total", "python_info"):
                assert name in names, (where, name)
            rss = [v for name, _, v in samples if name == "process_resident_memory_bytes"]
            assert rss[0] > 0, where
            info = [(labels, v) for name, labels, v in samples if name == "paxos_core_build_info"]
            assert info == [({"node": str(node), "worker": str(worker), "version": __version__,
                              "python": platform.python_version(), "compiled": "true"}, 1.0)], where
            master = [labels for name, labels, _ in samples if name == "paxos_core_master_changes_total"]
            assert master == [{"node": str(node), "worker": str(worker)}], where    # no per-group label


def test_the_endpoint_bounds_what_idle_connections_hold():
    # Connections that send nothing (slowloris) once held a thread and a descriptor each, for ever: now at most
    # METRICS_CONNECTIONS are served at once, each closed after METRICS_IDLE_S, and a scrape still gets through.
    import socket

    from prometheus_client import CollectorRegistry, Counter
    from paxos_core.runtime import metrics

    registry = CollectorRegistry()
    Counter("probe", "a probe", registry=registry).inc()
    server = metrics.serve_metrics("127.0.0.1", 0, registry)
    port = server.server_address[1]
    idle = []
    try:
        for _ in range(metrics.METRICS_CONNECTIONS * 4):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        # The server refuses what is beyond its bound (closes it at once, unanswered).
        wait_for(lambda: server.refused >= metrics.METRICS_CONNECTIONS * 3, 10, message="extra connections closed")
        assert idle[-1].recv(1) == b""                 # closed by the server, unanswered
        # The idle ones are closed after METRICS_IDLE_S; then a scrape is served.
        body = wait_for(lambda: _try_scrape(port), metrics.METRICS_IDLE_S * 4, message="a scrape served")
        assert b"probe_total 1.0" in body
    finally:
        for s in idle:
            s.close()
        server.shutdown()
        server.server_close()


def _try_scrape(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=1) as response:
            return response.read()
    except OSError:
        return None

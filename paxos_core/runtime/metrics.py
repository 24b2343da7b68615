"""Prometheus metrics of one worker, with no per-operation cost beyond a counter or a bucket increment.

The worker keeps plain counters and fixed-bucket histograms; a custom collector turns them into Prometheus
metrics when the endpoint is scraped. Labels are bounded: node and worker only, never per group (the build
info adds its version, python and compiled labels, one sample per worker).

Besides the worker's own metrics, each endpoint serves the worker process's: ``process_*`` (CPU, memory, open
files), ``python_gc_*`` and ``python_info`` (prometheus_client's collectors, read at scrape time too), and
``paxos_core_build_info``.
"""
import platform
import socket
import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .._version import __version__
from ..native import all_status


def build_info(labels, values):
    """``paxos_core_build_info{..., version, python, compiled} 1``; compiled: "true" when every native module
    loaded is the compiled extension (what `paxos-core info` checks)."""
    compiled = "true" if all(ok for _, ok, _ in all_status()) else "false"
    m = GaugeMetricFamily("paxos_core_build_info", "paxos-core version, Python version, compiled native modules",
                          labels=labels + ["version", "python", "compiled"])
    m.add_metric(values + [__version__, platform.python_version(), compiled], 1)
    return m


class WorkerCollector:
    """Reads a worker's stats at scrape time."""

    def __init__(self, worker):
        self.worker = worker
        # The process's own collectors, on a registry of their own that nobody serves: this collector yields
        # them, so they come with the worker's metrics from whatever registry the worker serves.
        self.process = CollectorRegistry(auto_describe=False)
        for make in (ProcessCollector, GCCollector, PlatformCollector):
            make(registry=self.process)
        self._build_info = None

    def collect(self):
        w = self.worker
        labels = ["node", "worker"]
        values = [str(w.config.node_id), str(w.index)]

        def counter(name, doc, value):
            m = CounterMetricFamily("paxos_" + name, doc, labels=labels)
            m.add_metric(values, value)
            return m

        def gauge(name, doc, value):
            m = GaugeMetricFamily("paxos_" + name, doc, labels=labels)
            m.add_metric(values, value)
            return m

        c = w.engine.counters_dict()
        yield counter("proposals", "client proposals accepted by this worker", w.stats["proposals"])
        yield counter("instances_chosen", "Paxos instances learned", c["chosen"])
        yield counter("instances_proposed", "Paxos instances this worker proposed", c["instances_proposed"])
        yield counter("fsyncs", "synced writes of the Paxos log", w.log.syncs)
        yield counter("slow_writes", "synced log writes that took 100 ms or more", w.slow_writes)
        yield counter("records_written", "log records written", w.log.records_written)
        yield counter("messages_sent", "protocol messages sent to peers", w.transport.sent_messages)
        yield counter("frames_sent", "frames sent to peers", w.transport.sent_frames)
        yield counter("frames_dropped", "frames dropped because a peer queue was full", w.transport.dropped_frames)
        yield counter("frames_received", "frames received from peers", w.transport.received_frames)
        rejected = CounterMetricFamily("paxos_frames_rejected", "frames refused, by reason",
                                       labels=labels + ["reason"])
        for reason, n in sorted(w.transport.rejected.items()):
            rejected.add_metric(values + [reason], n)
        yield rejected
        yield counter("auth_denied", "peer connections refused by CURVE authentication", w.transport.auth_denied())
        yield counter("fenced", "client commands not applied because their master was deposed", w.applier.fenced)
        yield counter("elections_won", "Paxos prepare rounds won", c["elections_won"])
        yield counter("divergences", "groups stopped because their log diverged", c["divergences"])
        m = CounterMetricFamily("paxos_core_master_changes", "master changes seen by this worker (any group)",
                                labels=labels)
        m.add_metric(values, w.stats["master_changes"])
        yield m
        yield counter("timeouts", "client requests answered with Timeout", w.stats["timeouts"])
        yield counter("overloaded", "client requests refused with Overloaded", w.stats["overloaded"])
        yield gauge("groups", "groups hosted", w.group_count())
        yield gauge("masters", "groups this worker is master of", w.masters_held())
        yield gauge("active_groups", "groups with protocol work in progress", w.engine.active_groups())
        yield gauge("pending_requests", "client requests waiting for an outcome", w.pending_count())
        yield gauge("log_bytes", "bytes of the worker's RocksDB (log and state machine): table files and memtables",
                    w.log.log_bytes())
        snaps = w.loop.snapshots
        st = snaps.stats
        yield counter("log_truncated_instances", "log instances truncated below the applied mark",
                      w.loop.retention.instances)
        yield counter("compactions", "compactions of truncated log ranges started", w.log.compactions)
        yield counter("snapshots_sent", "snapshots streamed to peers to the end", st["snapshots_sent"])
        yield counter("snapshot_sent_bytes", "snapshot chunk bytes sent", st["snapshot_bytes_sent"])
        yield counter("snapshots_installed", "snapshots swapped in", st["snapshots_installed"])
        yield counter("snapshot_installed_bytes", "entry bytes of the snapshots swapped in",
                      st["snapshot_bytes_installed"])
        yield counter("snapshot_chunks_refetched", "snapshot chunks asked for again (bad checksum)",
                      st["snapshot_chunks_refetched"])
        yield counter("snapshot_chunks_duplicate", "snapshot chunks received twice (sent again after a silence)",
                      st["snapshot_chunks_duplicate"])
        yield counter("snapshots_aborted", "snapshot transfers dropped", st["snapshots_aborted"])
        yield counter("snapshot_sources_switched", "snapshot stagings given up for another peer's offer (their "
                      "source went silent)", st["snapshot_sources_switched"])
        yield gauge("snapshots_in_progress_incoming", "snapshots being received", len(snaps.incoming))
        yield gauge("snapshots_in_progress_outgoing", "snapshot files being built or held for peers",
                    len(snaps.outgoing))
        for name, doc, hist in (("latency_seconds", "client request latency", w.latency),
                                ("batch_size", "client commands per chosen instance", w.batch_sizes),
                                ("log_write_seconds", "duration of each cycle's synced write (one per cycle)",
                                 w.write_seconds)):
            m = HistogramMetricFamily("paxos_" + name, doc, labels=labels)
            m.add_metric(values, hist.cumulative(), hist.total)
            yield m
        if self._build_info is None:
            self._build_info = build_info(labels, values)
        yield self._build_info
        yield from self.process.collect()


# The endpoint is plain HTTP, reachable by anyone who reaches the port: what a connection may hold is bounded.
METRICS_CONNECTIONS = 16        # connections served at once; more are closed at once, unanswered
METRICS_IDLE_S = 5.0            # a connection silent (or reading nothing) this long is closed


class _Handler(WSGIRequestHandler):
    timeout = METRICS_IDLE_S    # StreamRequestHandler: a socket timeout for every read and write

    def log_message(self, format, *args):   # noqa: A002 (the base class's name): scrapes are not logged
        pass


class MetricsServer(socketserver.ThreadingMixIn, WSGIServer):
    """prometheus_client's endpoint with bounds: at most METRICS_CONNECTIONS connections at once (a thread
    each), each closed after METRICS_IDLE_S without progress. prometheus_client's own server has neither, so
    connections that send nothing (slowloris) piled up threads and file descriptors in the worker without
    end, and the worker's own sockets and files need those descriptors."""

    daemon_threads = True
    request_queue_size = METRICS_CONNECTIONS

    def __init__(self, *args, **kwargs):
        self._slots = threading.BoundedSemaphore(METRICS_CONNECTIONS)
        self.refused = 0
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve_metrics(host, port, registry):
    """Serve `registry` at http://host:port/ (any path) from a daemon thread; returns the server (its
    ``shutdown()`` and ``server_close()`` stop it). OSError if the address cannot be bound."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]       # an IPv6 host too
    server_class = type("MetricsServer", (MetricsServer,), {"address_family": family})
    server = make_server(host, port, make_wsgi_app(registry), server_class=server_class, handler_class=_Handler)
    threading.Thread(target=server.serve_forever, name="paxos-metrics", daemon=True).start()
    return server

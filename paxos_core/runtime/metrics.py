"""Prometheus metrics of one worker, with no per-operation cost beyond a counter or a bucket increment.

The worker keeps plain counters and fixed-bucket histograms; a custom collector turns them into Prometheus
metrics when the endpoint is scraped. Labels are bounded: node and worker only, never per group.
"""
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

class WorkerCollector:
    """Reads a worker's stats at scrape time."""

    def __init__(self, worker):
        self.worker = worker

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
        yield counter("timeouts", "client requests answered with Timeout", w.stats["timeouts"])
        yield counter("overloaded", "client requests refused with Overloaded", w.stats["overloaded"])
        yield gauge("groups", "groups hosted", w.group_count())
        yield gauge("masters", "groups this worker is master of", w.masters_held())
        yield gauge("active_groups", "groups with protocol work in progress", w.engine.active_groups())
        yield gauge("pending_requests", "client requests waiting for an outcome", w.pending_count())
        for name, doc, hist in (("latency_seconds", "client request latency", w.latency),
                                ("batch_size", "client commands per chosen instance", w.batch_sizes),
                                ("log_write_seconds", "duration of each cycle's synced write (one per cycle)",
                                 w.write_seconds)):
            m = HistogramMetricFamily("paxos_" + name, doc, labels=labels)
            m.add_metric(values, hist.cumulative(), hist.total)
            yield m

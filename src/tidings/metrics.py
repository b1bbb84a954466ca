"""Prometheus metrics: counted in plain ints on the hot paths, exported on scrape.

The ingest and delivery paths only bump dictionary entries and histogram buckets (no label
lookup, no lock: one event loop owns them); :class:`Collector` turns them into Prometheus
families when ``/metrics`` is scraped, together with what is read at that moment (the queue
depth and the age of the oldest due event, SMTP pool usage). Every App has its own registry,
so tests and processes never share counters.

==========================================  =====================================================
``tidings_events_received_total``           events committed by ingest, by ``type`` and ``source``
``tidings_events_status_total``             statuses the worker recorded, by ``type`` and ``status``
``tidings_ingest_commit_batch_size``        events per ingest transaction (group commit)
``tidings_render_seconds``                  rendering a message
``tidings_send_seconds``                    handing a message to its transport, by ``transport``
``tidings_queue_depth``                     events due now (pending or being sent)
``tidings_queue_oldest_due_age_seconds``    how long the oldest due event has waited
``tidings_smtp_connections``                SMTP pool connections, by ``state`` (open, busy)
``tidings_smtp_queued_messages``            messages waiting for an SMTP connection
``tidings_requests_rejected_total``         refused: ``reason`` rate_limited or overloaded
``tidings_database_up``                     1 if the last scrape's queue query answered
==========================================  =====================================================
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Histogram:
    """A histogram in plain ints: ``observe`` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, as Prometheus wants them."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


class Metrics:
    """What one process counts. Plain attributes, bumped by the ingest and the worker."""

    def __init__(self) -> None:
        self.received: dict[tuple[str, str], int] = {}
        self.statuses: dict[tuple[str, str], int] = {}
        self.commit_batches = Histogram(BATCH_BUCKETS)
        self.render = Histogram(LATENCY_BUCKETS)
        self.send: dict[str, Histogram] = {}
        self.rejected = {"rate_limited": 0, "overloaded": 0}
        # Sampled from the database (on scrape, and every second when shedding is on).
        self.queue_depth = 0
        self.oldest_due_age = 0.0
        self.database_up = True

    def committed(self, events: Iterable[tuple[str, str]]) -> None:
        """An ingest transaction committed these ``(type, source)`` events."""
        received = self.received
        n = 0
        for key in events:
            received[key] = received.get(key, 0) + 1
            n += 1
        self.commit_batches.observe(n)

    def recorded(self, event_type: str, status: str) -> None:
        """The worker recorded ``status`` for an event of ``event_type``."""
        key = (event_type, status)
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def delivered(self, transport: str, render_seconds: float, send_seconds: float) -> None:
        """One message was rendered and handed to ``transport``, taking this long."""
        self.render.observe(render_seconds)
        histogram = self.send.get(transport)
        if histogram is None:
            histogram = self.send[transport] = Histogram(LATENCY_BUCKETS)
        histogram.observe(send_seconds)

    def registry(self, transports: Callable[[], Iterable[tuple[str, object]]]) -> CollectorRegistry:
        """A registry exporting these metrics, the transports' pool usage, and the process's
        own (memory, CPU, open files)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector(self, transports))
        ProcessCollector(registry=registry)
        return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format Prometheus scrapes."""
    return generate_latest(registry)


class Collector:
    """Turns :class:`Metrics` into Prometheus families at scrape time."""

    def __init__(
        self, metrics: Metrics, transports: Callable[[], Iterable[tuple[str, object]]]
    ) -> None:
        self.metrics = metrics
        self.transports = transports

    def collect(self) -> Iterator[Metric]:
        """Every family, from the current counts."""
        m = self.metrics
        yield _counter(
            "tidings_events_received",
            "Events committed by ingest.",
            ("type", "source"),
            list(m.received.items()),
        )
        yield _counter(
            "tidings_events_status",
            "Statuses recorded by the worker (final ones, and pending again after a retry).",
            ("type", "status"),
            list(m.statuses.items()),
        )
        yield _counter(
            "tidings_requests_rejected",
            "Requests refused before anything was stored.",
            ("reason",),
            [((reason,), n) for reason, n in m.rejected.items()],
        )
        yield _histogram(
            "tidings_ingest_commit_batch_size",
            "Events written per ingest transaction (group commit).",
            m.commit_batches,
        )
        yield _histogram("tidings_render_seconds", "Time to render a message.", m.render)
        send = HistogramMetricFamily(
            "tidings_send_seconds",
            "Time to hand a message to its transport (SMTP: until the server's reply).",
            labels=("transport",),
        )
        for transport, histogram in m.send.items():
            send.add_metric([transport], histogram.buckets(), histogram.total)
        yield send
        yield GaugeMetricFamily(
            "tidings_queue_depth", "Events due now (pending, or being sent).", m.queue_depth
        )
        yield GaugeMetricFamily(
            "tidings_queue_oldest_due_age_seconds",
            "How long the oldest due event has been waiting.",
            m.oldest_due_age,
        )
        yield GaugeMetricFamily(
            "tidings_database_up",
            "1 if the database answered the queue query of this scrape.",
            1 if m.database_up else 0,
        )
        connections = GaugeMetricFamily(
            "tidings_smtp_connections", "SMTP pool connections.", labels=("state",)
        )
        queued = GaugeMetricFamily(
            "tidings_smtp_queued_messages", "Messages waiting for an SMTP connection."
        )
        for _name, pool in self.transports():
            stats = getattr(pool, "stats", None)
            if stats is None:
                continue
            values: Mapping[str, int] = stats()
            connections.add_metric(["open"], values.get("open_connections", 0))
            connections.add_metric(["busy"], values.get("busy_connections", 0))
            queued.add_metric([], values.get("queued_messages", 0))
        yield connections
        yield queued


def _counter(
    name: str, doc: str, labels: Sequence[str], values: Iterable[tuple[Sequence[str], int]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in values:
        family.add_metric(list(key), value)
    return family


def _histogram(name: str, doc: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=histogram.buckets(), sum_value=histogram.total)

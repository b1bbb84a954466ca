"""Metrics counted in plain ints and exported in Prometheus' text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tidings import metrics


class Pool:
    def stats(self) -> dict[str, int]:
        return {"open_connections": 3, "busy_connections": 1, "queued_messages": 7}


def samples(m: metrics.Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition(m.registry(lambda: [("email", Pool()), ("sms", object())]))
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_counts_and_histograms_are_exported() -> None:
    m = metrics.Metrics()
    m.committed([("a", "api"), ("a", "api"), ("b", "adobe")])
    m.committed([("a", "api")])
    m.recorded("a", "processed")
    m.recorded("a", "processed")
    m.recorded("b", "deliveryFailed")
    m.delivered("smtp", 0.0002, 0.003)
    m.delivered("smtp", 0.02, 2.0)
    m.rejected["overloaded"] += 2
    m.queue_depth, m.oldest_due_age = 12, 3.5
    got = samples(m)

    def v(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    assert v("tidings_events_received_total", type="a", source="api") == 3
    assert v("tidings_events_received_total", type="b", source="adobe") == 1
    assert v("tidings_events_status_total", type="a", status="processed") == 2
    assert v("tidings_events_status_total", type="b", status="deliveryFailed") == 1
    assert v("tidings_ingest_commit_batch_size_count") == 2
    assert v("tidings_ingest_commit_batch_size_sum") == 4
    assert v("tidings_ingest_commit_batch_size_bucket", le="1.0") == 1
    assert v("tidings_ingest_commit_batch_size_bucket", le="5.0") == 2
    assert v("tidings_render_seconds_bucket", le="0.00025") == 1
    assert v("tidings_render_seconds_bucket", le="0.025") == 2
    assert v("tidings_send_seconds_bucket", transport="smtp", le="0.005") == 1
    assert v("tidings_send_seconds_bucket", transport="smtp", le="+Inf") == 2
    assert v("tidings_send_seconds_sum", transport="smtp") == 2.003
    assert v("tidings_queue_depth") == 12
    assert v("tidings_queue_oldest_due_age_seconds") == 3.5
    assert v("tidings_smtp_connections", state="open") == 3
    assert v("tidings_smtp_connections", state="busy") == 1
    assert v("tidings_smtp_queued_messages") == 7
    assert v("tidings_requests_rejected_total", reason="overloaded") == 2
    assert v("tidings_requests_rejected_total", reason="rate_limited") == 0
    assert v("tidings_database_up") == 1


def test_a_boundary_value_falls_in_its_own_bucket() -> None:
    h = metrics.Histogram((1, 2))
    for x in (1, 1.5, 2, 3):
        h.observe(x)
    assert h.buckets() == [("1.0", 1), ("2.0", 3), ("+Inf", 4)]

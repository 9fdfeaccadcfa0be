"""``GET /metrics``: the service's own counters in the Prometheus text format.

Each app has its own registry (tests and embedders may create several apps in one
process); with ``--workers N`` each worker counts its own requests, and a scrape reaches
one of them.

Metrics:
    ser_http_requests_total{route, method, status}: requests answered.
    ser_http_request_duration_seconds{route}: latency histogram (first byte in to answer sent).
    ser_http_requests_in_flight: requests being received, decoded or run now.
    ser_model_load_seconds: time to load and warm up the model.
    ser_no_speech_total: uploads answered ``"emotion": null`` (no speech found).

Example:
    >>> m = Metrics()
    >>> m.requests.labels("/predict", "POST", "200").inc()
    >>> b'ser_http_requests_total{method="POST",route="/predict",status="200"} 1.0' in m.render()[0]
    True
"""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# seconds: a 3 s clip takes ~20 ms, a 10-minute call a few seconds
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The registry and metrics of one app."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("ser_http_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("ser_http_request_duration_seconds", "time from request to answer, by route",
                                 ["route"], buckets=BUCKETS, registry=r)
        self.in_flight = Gauge("ser_http_requests_in_flight", "requests being received, decoded or run",
                               registry=r)
        self.model_load = Gauge("ser_model_load_seconds", "seconds to load and warm up the model", registry=r)
        self.no_speech = Counter("ser_no_speech", "uploads answered emotion null (no speech found)", registry=r)

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of a scrape."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

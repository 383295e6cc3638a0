"""The server's Prometheus metrics, in a registry of each app's own (so two apps in one process, as in tests, never
share or clash): requests by route and status, errors by status, request latency, batch sizes, queue depth, and the
explanations made and their time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Latency buckets (seconds): from a cached tiny model's few milliseconds to a slow CPU batch.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# An explanation's buckets (seconds): from a tiny model's occlusion to integrated gradients on a large one.
EXPLAIN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class ServerMetrics:
    registry: Any
    requests: Any       # Counter: route, method, code
    errors: Any         # Counter: code (every 4xx and 5xx answer)
    latency: Any        # Histogram: route
    batch_size: Any     # Histogram: items in one model call
    queue_depth: Any    # Gauge: items waiting for a batch
    inputs: Any         # Counter: items scored
    explanations: Any   # Counter: method (one per label explained)
    explain_seconds: Any  # Histogram: method (the time of one explanation, waiting left out)

    @classmethod
    def create(cls, max_batch: int) -> ServerMetrics:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry()
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, max_batch})
        return cls(
            registry=registry,
            requests=Counter("zoo_requests", "HTTP requests answered, by route and status code.",
                             ("route", "method", "code"), registry=registry),
            errors=Counter("zoo_errors", "Error answers (4xx and 5xx), by status code.", ("code",),
                           registry=registry),
            latency=Histogram("zoo_request_seconds", "Time from request to answer, by route.", ("route",),
                              buckets=LATENCY_BUCKETS, registry=registry),
            batch_size=Histogram("zoo_batch_size", "Items in each model call (dynamic batching).",
                                 buckets=[size for size in sizes if size <= max_batch], registry=registry),
            queue_depth=Gauge("zoo_queue_depth", "Items waiting for a batch.", registry=registry),
            inputs=Counter("zoo_inputs", "Inputs scored.", registry=registry),
            explanations=Counter("zoo_explanations", "Explanations made (one per input and label), by method.",
                                 ("method",), registry=registry),
            explain_seconds=Histogram("zoo_explain_seconds", "Time to make one explanation, by method.",
                                      ("method",), buckets=EXPLAIN_BUCKETS, registry=registry),
        )

    def observe(self, *, route: str, method: str, code: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, code=str(code)).inc()
        if code >= 400:
            self.errors.labels(code=str(code)).inc()
        self.latency.labels(route=route).observe(seconds)

    def explained(self, explanation) -> None:
        """Count one explanation (:class:`zoo.explain.attribute.Explanation`) and its time."""
        self.explanations.labels(method=explanation.method).inc()
        self.explain_seconds.labels(method=explanation.method).observe(explanation.seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

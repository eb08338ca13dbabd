"""Prometheus metrics, bound to an injected registry (a fresh one per test).

Upstream's series keep their exact names and labels so dashboards and alerts keep working.
prometheus-client renders every counter with a `_total` suffix, which would rename upstream's
`http_request_count` and friends, so those three counters come from a small collector of our
own and are exposed untyped under their bare names. Our own series follow ordinary naming.
"""

from __future__ import annotations

import bisect
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from webhook import telemetry
from webhook.admission.extensions import Extras
from webhook.admission.verdicts import Verdict
from webhook.admission.wire import LookupPath, Method
from webhook.certificates.serving import LoadedCertificate, ValidityProblem

__all__ = ["AbortPhase", "Metrics"]

AbortPhase = Literal["body", "answer"]
"""When a client went away: while its body was read, or before its answer was written."""

# Go's client has no `_created` series; keep the exposition close to upstream's.
disable_created_metrics()  # type: ignore[no-untyped-call]

UPSTREAM_LATENCY_BUCKETS = (125000, 250000, 500000, 1e6, 2e6, 4e6, 8e6)
DURATION_BUCKETS = (
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
)


class StoreView(Protocol):
    ever_populated: bool

    def __len__(self) -> int: ...


AUDIT_RESULTS = {
    "event": ("created", "exists", "error"),
    "delete": ("deleted", "gone", "refused", "error"),
}


class AuditView(Protocol):
    def counts(self) -> Mapping[str, int]: ...


class _UpstreamCounters(Collector):
    """http_request_count, pod_identity_webhook_pod_count, pod_identity_webhook_missing_sa_count."""

    def __init__(self) -> None:
        # Written on the event loop only and read by /metrics on the same loop: no lock. The
        # copies in collect() keep a scrape from another registry user safe anyway.
        self.requests: Tally[tuple[str, str, str]] = Tally()
        self.pods: Tally[str] = Tally()
        self.missing_service_accounts = 0

    def collect(self) -> Iterator[Metric]:
        requests = dict(self.requests)
        pods = dict(self.pods)
        missing = self.missing_service_accounts
        family = Metric(
            "http_request_count",
            "Counter of requests broken out for each verb, path, and response code.",
            "unknown",
        )
        for (verb, path, code), value in sorted(requests.items()):
            family.add_sample(
                "http_request_count", {"verb": verb, "path": path, "code": code}, value
            )
        yield family
        family = Metric(
            "pod_identity_webhook_pod_count",
            "Indicator to how many pods are using sts web identity or container credentials",
            "unknown",
        )
        for method, value in sorted(pods.items()):
            family.add_sample("pod_identity_webhook_pod_count", {"method": method}, value)
        yield family
        family = Metric(
            "pod_identity_webhook_missing_sa_count",
            "Service account did not have the right annotations or was not found in the cache.",
            "unknown",
        )
        if missing:  # absent until the first miss, as upstream's vector is
            family.add_sample("pod_identity_webhook_missing_sa_count", {}, missing)
        yield family


class _Histogram:
    """One histogram series: what prometheus_client's Histogram keeps, without its locks."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            out.append((floatToGoString(bound), float(cumulative)))  # type: ignore[no-untyped-call]
        return out


class _AdmissionSeries(Collector):
    """The series every /mutate request touches: upstream's request latency histogram and
    summary, and our admissions, lookups and duration histogram.

    prometheus_client takes a lock per value (seven per admission, about half of the metrics'
    cost in benchmarks/micro.py). These are written on the event loop only, so they are plain
    numbers here, exposed with the names, help, labels, buckets and order the library's
    Histogram, Summary and Counter gave them; collect() copies them first."""

    def __init__(self) -> None:
        self.latencies: dict[tuple[str, str], _Histogram] = {}
        self.summaries: dict[tuple[str, str], tuple[int, float]] = {}  # count, sum
        self.duration = _Histogram(DURATION_BUCKETS)
        self.admissions: dict[tuple[str, str], float] = {}
        self.lookups: dict[str, float] = {}

    def request(self, verb: str, path: str, micros: int) -> None:
        key = (verb, path)
        histogram = self.latencies.get(key)
        if histogram is None:
            histogram = self.latencies[key] = _Histogram(UPSTREAM_LATENCY_BUCKETS)
            self.summaries[key] = (0, 0.0)
        histogram.observe(micros)
        count, total = self.summaries[key]
        self.summaries[key] = (count + 1, total + micros)

    def collect(self) -> Iterator[Metric]:
        latencies = HistogramMetricFamily(
            "http_request_latencies",
            "Response latency distribution in microseconds for each verb and path",
            labels=["verb", "path"],
        )
        for labels, histogram in list(self.latencies.items()):
            latencies.add_metric(labels, histogram.buckets(), histogram.sum)
        yield latencies
        summary = SummaryMetricFamily(
            "http_request_duration_microseconds",
            "Response latency summary in microseconds for each verb and path.",
            labels=["verb", "path"],
        )
        for labels, (count, total) in list(self.summaries.items()):
            summary.add_metric(labels, count, total)
        yield summary
        duration = HistogramMetricFamily(
            "pod_identity_webhook_admission_duration_seconds",
            "Time to answer one /mutate request, in seconds.",
        )
        duration.add_metric([], self.duration.buckets(), self.duration.sum)
        yield duration
        admissions = CounterMetricFamily(
            "pod_identity_webhook_admissions",
            "Admission answers by outcome (mutated, not_mutated, denied, rejected, error) and "
            "reason.",
            labels=["outcome", "reason"],
        )
        for labels, value in list(self.admissions.items()):
            admissions.add_metric(labels, value)
        yield admissions
        lookups = CounterMetricFamily(
            "pod_identity_webhook_service_account_lookups",
            "ServiceAccount lookups by path: cache, informer or api (arrived while the request "
            "waited), missed.",
            labels=["path"],
        )
        for path, value in list(self.lookups.items()):
            lookups.add_metric([path], value)
        yield lookups


class _StoreCollector(Collector):
    def __init__(self, store: StoreView) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "pod_identity_webhook_used",
            "Indicator to know pod identity webhook is used",
            value=1 if self._store.ever_populated else 0,
        )
        yield GaugeMetricFamily(
            "pod_identity_webhook_service_account_cache_size",
            "ServiceAccounts in the webhook's cache.",
            value=len(self._store),
        )


class MemoView(Protocol):
    hits: int
    misses: int

    def __len__(self) -> int: ...


class _MemoCollector(Collector):
    """The decision memo's counts, read at scrape time: nothing is added per admission."""

    def __init__(self, memo: MemoView) -> None:
        self._memo = memo

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "pod_identity_webhook_decision_memo",
            "Decisions reused for a Pod identical to one decided before (hit) and made (miss).",
            labels=["result"],
        )
        family.add_metric(["hit"], self._memo.hits)
        family.add_metric(["miss"], self._memo.misses)
        yield family
        yield GaugeMetricFamily(
            "pod_identity_webhook_decision_memo_pods",
            "Distinct Pods whose decision the memo holds.",
            value=len(self._memo),
        )


class _CertificateCollector(Collector):
    """Whether the served certificate is expired, not yet valid or expiring soon, judged at
    each scrape so that the series follows the clock and the reloads."""

    def __init__(self, current: Callable[[], LoadedCertificate | None], warn_within: float) -> None:
        self._current = current
        self._warn_within = warn_within

    def collect(self) -> Iterator[Metric]:
        loaded = self._current()
        problem = loaded.problem(datetime.now(UTC), self._warn_within) if loaded else None
        family = GaugeMetricFamily(
            "pod_identity_webhook_certificate_problem",
            "1 for what is wrong with the served certificate: expired, not_yet_valid, or "
            "expiring_soon (within --cert-validity-warning); 0 for the others.",
            labels=["problem"],
        )
        for name in get_args(ValidityProblem):
            family.add_metric([name], 1 if name == problem else 0)
        yield family


class _AuditCollector(Collector):
    """The Pod auditor's gauge: read from its findings at scrape time, so a namespace whose
    Pods are all fixed or gone simply disappears."""

    def __init__(self) -> None:
        self.auditor: AuditView | None = None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "pod_identity_webhook_pods_without_credentials",
            "Pods whose containers lack the credentials the webhook would give them now, by "
            "namespace; samples only with --audit-pods.",
            labels=["namespace"],
        )
        counts = self.auditor.counts() if self.auditor is not None else {}
        for namespace, count in sorted(counts.items()):
            family.add_metric([namespace], count)
        yield family


class _CaBundleCollector(Collector):
    """The caBundle gauge: without a sample until a check ran, so a webhook that does not
    check (no --webhook-configuration) cannot be mistaken for one whose caBundle is stale."""

    def __init__(self) -> None:
        self.trusted: bool | None = None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "pod_identity_webhook_ca_bundle_trusted",
            "1 when the MutatingWebhookConfiguration's caBundle trusts the served certificate, "
            "0 when it does not; no sample until the first check (--webhook-configuration or "
            "--cert-bootstrap).",
        )
        if self.trusted is not None:
            family.add_metric([], 1 if self.trusted else 0)
        yield family


class Metrics:
    """Every series the webhook exports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._upstream = _UpstreamCounters()
        registry.register(self._upstream)
        # Declared without the auditor too, so a scrape shows the family an alert reads.
        self._audit = _AuditCollector()
        registry.register(self._audit)
        self._series = _AdmissionSeries()
        registry.register(self._series)
        self.certificate_reloads = Counter(
            "pod_identity_webhook_certificate_reloads",
            "Serving certificate reloads by result (success or error).",
            ["result"],
            registry=registry,
        )
        self.certificate_expiry = Gauge(
            "pod_identity_webhook_certificate_expiry_timestamp_seconds",
            "Expiry time of the serving certificate in use (Unix seconds).",
            registry=registry,
        )
        self.fetches = Counter(
            "pod_identity_webhook_service_account_fetches",
            "Live ServiceAccount GETs on a cache miss, by result (found, not_found, error).",
            ["result"],
            registry=registry,
        )
        self.api_errors = Counter(
            "pod_identity_webhook_api_errors",
            "Failed list or watch calls to the Kubernetes API, by source.",
            ["source"],
            registry=registry,
        )
        self.policy_violations = Counter(
            "pod_identity_webhook_policy_violations",
            "Role-policy violations by rule and mode (audit admits, enforce denies).",
            ["rule", "mode"],
            registry=registry,
        )
        self.rule_errors = Counter(
            "pod_identity_webhook_rule_errors",
            "Extension rules that raised or timed out, by rule.",
            ["rule"],
            registry=registry,
        )
        self._ca_bundle = _CaBundleCollector()
        registry.register(self._ca_bundle)
        registry.register(telemetry.LinesLostCollector("webhook"))
        self.source_reloads = Counter(
            "pod_identity_webhook_source_reloads",
            "Reloads of file and ConfigMap sources by source and result.",
            ["source", "result"],
            registry=registry,
        )
        self.client_aborts = Counter(
            "pod_identity_webhook_client_aborts",
            "Requests whose client closed the connection while the body was read (body) or "
            "before the answer was written (answer); not server errors.",
            ["phase"],
            registry=registry,
        )
        self.connections_closed = Counter(
            "pod_identity_webhook_connections_closed",
            "Connections the webhook closed on its own: header_timeout, evicted (the "
            "longest-idle one, for a new connection at --max-connections), drained (idle when "
            "the process stopped).",
            ["reason"],
            registry=registry,
        )
        self.open_connections = Gauge(
            "pod_identity_webhook_open_connections",
            "Open HTTPS connections, TLS handshakes included.",
            registry=registry,
        )
        # Children that exist from the start, at 0: rate() and increase() see the first event
        # of a series only if the series was there before it.
        for path in get_args(LookupPath):
            self._series.lookups[path] = 0.0
        for result in ("found", "not_found", "error"):
            self.fetches.labels(result)
        for result in ("success", "error"):
            self.certificate_reloads.labels(result)
        for outcome, reason in (("rejected", "bad_request"), ("error", "internal_error")):
            self._series.admissions[outcome, reason] = 0.0
        for phase in get_args(AbortPhase):
            self.client_aborts.labels(phase)
        for close in ("header_timeout", "evicted", "drained"):
            self.connections_closed.labels(close)

    def watch_store(self, store: StoreView) -> None:
        self.registry.register(_StoreCollector(store))

    def watch_memo(self, memo: MemoView) -> None:
        self.registry.register(_MemoCollector(memo))

    def watch_certificate(
        self, current: Callable[[], LoadedCertificate | None], warn_within: float
    ) -> None:
        self.registry.register(_CertificateCollector(current, warn_within))

    def client_aborts_counter(self, phase: AbortPhase) -> None:
        self.client_aborts.labels(phase).inc()

    def connection_closed(self, reason: str) -> None:
        self.connections_closed.labels(reason).inc()

    def watch_auditor(self, auditor: AuditView) -> None:
        """--audit-pods: the Pods without credentials, and what the auditor did about them."""
        self._audit.auditor = auditor
        self.audit_actions = Counter(
            "pod_identity_webhook_audit_actions",
            "What the Pod auditor did by action (event, delete) and result (created, exists, "
            "deleted, gone, refused, error).",
            ["action", "result"],
            registry=self.registry,
        )
        for action, results in AUDIT_RESULTS.items():  # at 0 from the start, for rate()
            for result in results:
                self.audit_actions.labels(action, result)

    def audit_action(self, action: str, result: str) -> None:
        self.audit_actions.labels(action, result).inc()

    def observe_request(self, verb: str, path: str, code: int, seconds: float) -> None:
        """Upstream's per-request instrumentation (microseconds, truncated)."""
        self._upstream.requests[(verb, path, str(code))] += 1
        self._series.request(verb, path, int(seconds * 1e6))

    def record(
        self,
        judged: Verdict,
        *,
        method: Method | None,
        lookup: LookupPath,
        seconds: float,
        extras: Extras | None = None,
    ) -> None:
        """Everything one answered admission counts."""
        series = self._series
        series.lookups[lookup] += 1
        if lookup == "missed":
            self._upstream.missing_service_accounts += 1
        if method is not None:
            self._upstream.pods[method] += 1
        if extras is not None:
            for violation in extras.violations:
                self.policy_violations.labels(violation.rule, violation.mode).inc()
            for name, _ in extras.rule_errors:
                self.rule_errors.labels(name).inc()
        key = (judged.outcome, judged.reason)
        series.admissions[key] = series.admissions.get(key, 0.0) + 1
        series.duration.observe(seconds)

    def ca_bundle_checked(self, trusted: bool) -> None:
        self._ca_bundle.trusted = trusted

    def source_reloads_counter(self, source: str, result: str) -> None:
        """A file or ConfigMap source was (re)loaded: result is success or error."""
        self.source_reloads.labels(source, result).inc()

    def reject(self, seconds: float) -> None:
        """A request that was not an admission we could answer (HTTP 4xx)."""
        self._series.admissions["rejected", "bad_request"] += 1
        self._series.duration.observe(seconds)

    def internal_error(self) -> None:
        self._series.admissions["error", "internal_error"] += 1

"""Prometheus metrics at /metrics, for the monitoring host only. The only module that imports prometheus_client.

What is counted, and where it is counted (one place each, so that no view counts by hand):
- requests by endpoint and status, with latency: a before/after-request pair here;
- reset requests, links used, password changes and resets, helpdesk links by outcome, and policy
  refusals by reason: `count_event`, called by audit.log, which already sees every event;
- directory operations by verb and outcome, with latency: the observer of Directory's runner;
- the mail queue's depth, and mail sent, retried and failed: the observer of the mail queue;
- rate-limit refusals by limit: `count_rate_limited`, called by the rate-limit checks.

Under gunicorn each worker is a process: with PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py
does), every worker writes its values to files there and a scrape adds them up (prometheus_client's
multiprocess mode). Without it (one process, the tests) each app has a registry of its own.

Served only to clients whose address is in METRICS_ALLOW or that send METRICS_TOKEN as a bearer
token; everyone else gets the same 404 as for any unknown page.
"""

import hmac
import ipaddress
import os
import time

from flask import Blueprint, Response, abort, current_app, g, has_app_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

bp = Blueprint("metrics", __name__)

# Outcomes of a password refusal that are not the policy's: the person, not the password, was refused.
NOT_POLICY = {"wrong_current", "locked"}


class Metrics:
    """The app's metrics, each with its labels."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)

        def counter(name, text, labels=()):
            return Counter(name, text, labels, registry=self.registry)

        self.requests = counter("pwdrst_http_requests", "HTTP requests by endpoint and status.", ["endpoint", "status"])
        self.request_seconds = Histogram(
            "pwdrst_http_request_duration_seconds", "Time to answer a request.", ["endpoint"], registry=self.registry
        )
        self.reset_requests = counter("pwdrst_reset_requests", "Forgot-password requests by outcome.", ["outcome"])
        self.links_used = counter("pwdrst_links_used", "Reset links opened, by outcome.", ["outcome"])
        self.password_changes = counter(
            "pwdrst_password_changes", "Password changes (change) and resets by link (reset).", ["kind", "outcome"]
        )
        self.helpdesk_links = counter("pwdrst_helpdesk_links", "Links the helpdesk issued, by outcome.", ["outcome"])
        self.policy_refusals = counter("pwdrst_policy_refusals", "New passwords refused, by reason.", ["reason"])
        self.directory_operations = counter(
            "pwdrst_directory_operations", "Directory operations by verb and outcome.", ["operation", "outcome"]
        )
        self.directory_seconds = Histogram(
            "pwdrst_directory_operation_duration_seconds",
            "Time a directory operation took.",
            ["operation"],
            registry=self.registry,
        )
        self.mail_queue_depth = Gauge(
            "pwdrst_mail_queue_depth", "Mail queued or being sent.", registry=self.registry, multiprocess_mode="livesum"
        )
        self.mail = counter("pwdrst_mail", "Mail queued, sent, retried and failed (undelivered).", ["event"])
        self.rate_limit_refusals = counter("pwdrst_rate_limit_refusals", "Requests a rate limit refused.", ["limit"])

    # -- observers

    def directory_operation(self, operation: str, outcome: str, seconds: float) -> None:
        """Count one directory operation (the Directory's runner calls this)."""
        self.directory_operations.labels(operation, outcome).inc()
        self.directory_seconds.labels(operation).observe(seconds)

    def mail_event(self, event: str | None, depth: int) -> None:
        """Count a mail event (queued, sent, retried, failed) and set the queue's depth."""
        if event:
            self.mail.labels(event).inc()
        self.mail_queue_depth.set(depth)

    def exposition(self) -> bytes:
        """Return the metrics in the Prometheus text format (every worker's, in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _current() -> Metrics | None:
    return current_app.extensions.get("pwdrst.metrics") if has_app_context() else None


def count_event(record: dict) -> None:
    """Count an audit event in the metric it belongs to (audit.log calls this for every event)."""
    metrics = _current()
    if metrics is None:
        return
    event, outcome = record["event"], str(record["outcome"])
    if event == "reset_requested":
        metrics.reset_requests.labels(outcome).inc()
    elif event == "link_opened":
        metrics.links_used.labels(outcome).inc()
    elif event == "link_refused":
        metrics.links_used.labels(outcome).inc()
    elif event in ("password_reset", "password_changed"):
        metrics.password_changes.labels("reset" if event == "password_reset" else "change", outcome).inc()
        if outcome == "refused":
            for reason in refusal_reasons(record.get("reason")):
                metrics.policy_refusals.labels(reason).inc()
    elif event == "helpdesk_link":
        metrics.helpdesk_links.labels(outcome).inc()


def refusal_reasons(reason: str | None) -> list[str]:
    """Return the policy reasons of a refused password: the rules it broke, or the directory's reason."""
    if reason in NOT_POLICY:
        return []
    if reason == "policy":
        # The form's refusal: the rules the policy check of this request found broken (none: the
        # confirmation did not match).
        return list(g.get("policy_problems", ())) or ["confirmation"]
    return [reason or "rejected"]


def count_rate_limited(limit: str) -> None:
    """Count a request a rate limit refused (limit: the setting's name, e.g. RATELIMIT_RESET_REQUEST)."""
    metrics = _current()
    if metrics is None:
        return
    metrics.rate_limit_refusals.labels(limit.removeprefix("RATELIMIT_").lower()).inc()
    g.rate_limit_counted = True


def allowed() -> bool:
    """Return whether this request may read the metrics: an allowed address, or the bearer token."""
    token = current_app.config["METRICS_TOKEN"]
    given = request.headers.get("Authorization", "")
    if token and given.startswith("Bearer "):
        if hmac.compare_digest(given[len("Bearer ") :].strip().encode(), str(token).encode()):
            return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in allowed_networks(current_app.config["METRICS_ALLOW"]))


def allowed_networks(cidrs) -> list:
    """Parse METRICS_ALLOW; raise ValueError naming a bad entry."""
    if isinstance(cidrs, str):
        cidrs = cidrs.replace(",", " ").split()
    return [ipaddress.ip_network(str(c).strip(), strict=False) for c in cidrs]


@bp.get("/metrics")
def scrape():
    """Answer the metrics to the monitoring host; anyone else gets a plain 404."""
    if not allowed():
        abort(404)
    body = current_app.extensions["pwdrst.metrics"].exposition()
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def init_app(app) -> None:
    """Create the app's metrics, hook them to the directory and the mail queue, and serve /metrics."""
    metrics = Metrics()
    app.extensions["pwdrst.metrics"] = metrics
    app.extensions["pwdrst.directory"].observer = metrics.directory_operation
    app.extensions["pwdrst.mail"].observer = metrics.mail_event
    app.register_blueprint(bp)

    @app.before_request
    def start_clock():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count_request(response):
        endpoint = request.endpoint or "none"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
        # A limit Flask-Limiter's decorator enforced (the meter, the helpdesk's links): by endpoint.
        if response.status_code == 429 and not g.get("rate_limit_counted"):
            metrics.rate_limit_refusals.labels(endpoint).inc()
        return response

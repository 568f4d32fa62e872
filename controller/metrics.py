"""Prometheus metrics at `/metrics` on the API port, made with prometheus_client.

Why most metrics are read at scrape time (a custom collector over `core.stats()`, the dispatcher
and the apps' counters) rather than pushed from the hot paths: the numbers already exist where
the work happens; copying them at scrape time costs the switch path nothing and cannot drift.
Only what needs a distribution is observed as it happens: bundle commit latency (reconciler),
compile time (core) and API request latency (the WSGI wrapper below).

The registry is this module's own (not prometheus_client's global one), so only tenantflow's
metrics appear and tests can build several controllers in one process.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable, Iterable

from prometheus_client import (CollectorRegistry, Counter, GCCollector, Histogram, ProcessCollector,
                               make_wsgi_app)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LOG = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
# the process's own (issue 14's RSS target is watched as process_resident_memory_bytes) and the
# cyclic GC's collections per generation (python_gc_*; frozen state: tenantflow_gc_frozen_objects)
ProcessCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)
PATH = "/metrics"

BUNDLE_SECONDS = Histogram("tenantflow_bundle_commit_seconds",
                           "Time from bundle open to the barrier reply after its commit, per flush",
                           ["datapath"], registry=REGISTRY,
                           buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
COMPILE_SECONDS = Histogram("tenantflow_compile_seconds", "Time to compile the dirty owners of one datapath",
                            ["datapath"], registry=REGISTRY,
                            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))
API_REQUESTS = Counter("tenantflow_api_requests", "API requests by method, resource and status",
                       ["method", "resource", "status"], registry=REGISTRY)
API_SECONDS = Histogram("tenantflow_api_request_seconds", "API request latency by method and resource",
                        ["method", "resource"], registry=REGISTRY)


def observe_flush(datapath: str, seconds: float) -> None:
    BUNDLE_SECONDS.labels(datapath).observe(seconds)


def observe_compile(datapath: str, seconds: float) -> None:
    COMPILE_SECONDS.labels(datapath).observe(seconds)


# ------------------------------------------------------------------------------ scrape-time view

_DATAPATH_COUNTERS = {  # core.stats() per-datapath key → (metric suffix, help)
    "flow_mods": ("flow_mods", "Flow-mods sent (adds and strict deletes)"),
    "bundles": ("bundles", "Bundles committed"),
    "errors": ("openflow_errors", "OpenFlow errors the switch returned for our messages"),
    "resyncs": ("resyncs", "Full reads of the switch's flows followed by a diff"),
    "flush_failures": ("flush_failures", "Flushes that failed (each ends in a resync)"),
    "compile_errors": ("compile_errors", "Owner compiles that raised (owner withdrawn, retried)"),
    "reconcile_errors": ("reconcile_errors", "Convergence attempts that failed (resync scheduled)"),
    "packet_ins": ("packet_ins", "Packet-ins received"),
    "packet_outs": ("packet_outs", "Packet-outs sent"),
    "packet_in_errors": ("packet_in_errors", "Packet-ins an app failed on"),
}


class CoreCollector(Collector):
    """Reads the running controller's counters at scrape time."""

    def __init__(self, core, dispatcher=None, store=None) -> None:
        self.core, self.dispatcher, self.store = core, dispatcher, store

    def collect(self) -> Iterable[Any]:
        try:
            stats = self.core.stats()
        except Exception:  # noqa: BLE001 — a scrape must not fail the API; say so in the log
            LOG.exception("metrics: core.stats() failed")
            return []
        dps = stats.get("datapaths", {})
        labels = ["datapath", "chassis"]
        desired = GaugeMetricFamily("tenantflow_desired_flows", "Flows the controller wants on the switch",
                                    labels=labels)
        installed = GaugeMetricFamily("tenantflow_installed_flows", "Flows the controller believes are installed",
                                      labels=labels)
        connected = GaugeMetricFamily("tenantflow_switch_connected", "1 while the switch's OpenFlow connection is up",
                                      labels=labels)
        healthy = GaugeMetricFamily("tenantflow_datapath_healthy",
                                    "1 when the switch's flows are known to be what the topology wants", labels=labels)
        role = GaugeMetricFamily("tenantflow_switch_role",
                                 "This controller's OpenFlow role on the switch (1 = current)",
                                 labels=labels + ["role"])
        counters = {k: CounterMetricFamily(f"tenantflow_{suffix}", text, labels=labels)
                    for k, (suffix, text) in _DATAPATH_COUNTERS.items()}
        for name, d in dps.items():
            lv = [name, str(d.get("chassis") or "")]
            desired.add_metric(lv, d.get("desired_flows", 0))
            installed.add_metric(lv, d.get("installed_flows", 0))
            connected.add_metric(lv, 1 if d.get("connected") else 0)
            healthy.add_metric(lv, 1 if d.get("healthy", True) else 0)
            role.add_metric(lv + ["master" if d.get("master", True) else "slave"], 1)
            for k, fam in counters.items():
                fam.add_metric(lv, d.get(k, 0) or 0)
        out: list[Any] = [desired, installed, connected, healthy, role, *counters.values()]
        out.append(CounterMetricFamily("tenantflow_core_batches", "Core work batches processed",
                                       value=stats.get("batches", 0)))
        out.append(CounterMetricFamily("tenantflow_check_failures",
                                       "Check-mode differences between incremental and fresh compiles",
                                       value=stats.get("check_failures", 0)))
        if "gc" in stats:
            out.append(GaugeMetricFamily("tenantflow_gc_frozen_objects",
                                         "Objects frozen out of the cyclic GC's walks after big batches",
                                         value=stats["gc"].get("frozen_objects", 0)))
        out.extend(self._feed(stats))
        out.extend(self._packet_ins())
        return out

    def _feed(self, stats: dict) -> list[Any]:
        applied = stats.get("revision", 0)
        fams: list[Any] = [GaugeMetricFamily("tenantflow_feed_applied_revision",
                                             "Store revision the controller has applied", value=applied)]
        if self.store is not None:
            try:
                head = self.store.revision()
            except Exception as exc:  # noqa: BLE001 — the store being away is itself worth showing
                LOG.warning("metrics: store revision unavailable: %s", exc)
                head = None
            if head is not None:
                fams.append(GaugeMetricFamily("tenantflow_feed_lag_revisions",
                                              "Store revision minus the revision the controller applied",
                                              value=max(0, head - applied)))
        return fams

    def _packet_ins(self) -> list[Any]:
        outcomes = CounterMetricFamily("tenantflow_packet_in_outcomes",
                                       "What the apps did with packet-ins (answered, rate_limited, malformed, ...)",
                                       labels=["app", "outcome"])
        for app in getattr(self.core, "packet_apps", {}).values():
            for outcome, n in sorted(dict(getattr(app, "stats", {}) or {}).items()):
                outcomes.add_metric([str(getattr(app, "name", "?")), str(outcome)], n)
        fams: list[Any] = [outcomes]
        leases = [app for app in getattr(self.core, "packet_apps", {}).values() if hasattr(app, "active_leases")]
        if leases:
            fams.append(GaugeMetricFamily("tenantflow_dhcp_active_leases",
                                          "Ports whose last DHCP lease (ACK) has not run out or been released",
                                          value=sum(app.active_leases() for app in leases)))
        d = self.dispatcher
        if d is not None:
            disp = CounterMetricFamily("tenantflow_dispatch", "Packet-in dispatch: handled, errors, dropped "
                                       "(queue full), unknown (no app/chassis)", labels=["outcome"])
            for outcome in ("handled", "errors", "dropped", "unknown"):
                disp.add_metric([outcome], getattr(d, outcome, 0))
            fams.append(disp)
        return fams


# ------------------------------------------------------------------------------ WSGI

_collector: CoreCollector | None = None
_UUIDISH = re.compile(r"^[0-9a-fA-F-]{8,}$")


def resource_of(path: str) -> str:
    """The label for a request path: '/v2.0/ports/<id>' → 'ports'; bounded cardinality (no ids)."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] in ("v2.0", "identity"):
        parts = parts[1:]
        if parts and parts[0] == "v3":
            parts = ["identity"] + parts[1:]
    keep = [p for p in parts[:3] if not _UUIDISH.match(p)]
    name = "/".join(keep[:2]) if keep and keep[0] in ("tenantflow", "identity") else (keep[0] if keep else "")
    return re.sub(r"\.json$", "", name)[:40] or "root"


def instrument(app: Callable, core=None, dispatcher=None, store=None) -> Callable:
    """WSGI wrapper: serves /metrics and counts every other request by method, resource and status."""
    global _collector
    if core is not None:
        if _collector is not None:   # one controller per process; tests build several in turn
            REGISTRY.unregister(_collector)
        _collector = CoreCollector(core, dispatcher, store)
        REGISTRY.register(_collector)
    metrics_app = make_wsgi_app(REGISTRY)

    def wsgi(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path == PATH:
            return metrics_app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        resource = resource_of(path)
        status = ["500"]

        def recording_start_response(st, headers, exc_info=None):
            status[0] = st.split(" ", 1)[0]
            return start_response(st, headers, exc_info) if exc_info else start_response(st, headers)

        t0 = time.perf_counter()
        try:
            return app(environ, recording_start_response)
        finally:
            API_SECONDS.labels(method, resource).observe(time.perf_counter() - t0)
            API_REQUESTS.labels(method, resource, status[0]).inc()
    return wsgi

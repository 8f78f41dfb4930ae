"""ModelMesh's Prometheus metrics for one mesh instance, and its metrics and probe HTTP endpoints.

Names, types, label names, bucket bounds and the text layout follow kserve/modelmesh (Metric.java,
Metrics.java): it registers its collectors in a private registry and writes them with the Java
simpleclient 0.9.0 text writer. That writer differs from prometheus_client's on points a scraper's
regex can see, so exposition() writes the same layout itself from this instance's CollectorRegistry:

* counters are exposed under their bare name (`modelmesh_loadmodel_failure 2.0`, TYPE counter):
  ModelMesh's own Counter emits its full name as the sample name, and 0.9.0 predates the `_total`
  suffix; prometheus_client would write `modelmesh_loadmodel_failure_total` plus a `_created` series;
* there are no `_created` series at all;
* numbers and `le` bounds are printed as Java's Double.toString prints them (`1.0`, `6.7108864E7`);
* every label set ends with a comma (`{method="ModelInfer",code="OK",le="0.5",}`).

Gauges whose names end in `_total` (modelmesh_instance_models_total, the leader's counts) are
gauges upstream and keep their names unchanged.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

# Upstream's bucket bounds, in the unit of each metric.
MS_TIME_BUCKETS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 50, 75, 100, 200, 500, 1000, 2000, 5000, 10000,
                                      20000, 60000, 120000, 300000)
AGE_BUCKETS: tuple[float, ...] = tuple(s * 1000 for s in (30, 5 * 60, 15 * 60, 3600, 4 * 3600, 12 * 3600, 86400,
                                                          7 * 86400, 30 * 86400, 90 * 86400))
MODEL_SIZE_BUCKETS: tuple[float, ...] = tuple(256 * 1024 * 4**i for i in range(8))
MESSAGE_SIZE_BUCKETS: tuple[float, ...] = tuple(128 * 4**i for i in range(8))

# ModelMesh reports "no model loaded" as an LRU time of Long.MAX_VALUE milliseconds.
_NO_LRU_SECONDS = (2**63 - 1) // 1000
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def java_double(value: float) -> str:
    """A number as Java's Double.toString (via simpleclient's doubleToGoString) prints it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(value)  # Python's shortest repr has the same digits and always a '.'
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{exponent + len(text) - 1}"


class _Histogram:
    def __init__(self, name: str, help_text: str, bounds: Sequence[float], labels: Sequence[str]) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self.bounds = (*map(float, bounds), math.inf)
        self.le = tuple(java_double(b) for b in self.bounds)
        # label values -> [per-bucket counts..., sum]; an unlabelled histogram exists from the start,
        # as upstream's does (its count is 0 before any observation).
        self.children: dict[tuple[str, ...], list[float]] = {} if self.labels else {(): self._fresh()}

    def _fresh(self) -> list[float]:
        return [0.0] * (len(self.bounds) + 1)

    def observe(self, value: float, labels: tuple[str, ...] = ()) -> None:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self._fresh()
        child[bisect_left(self.bounds, value)] += 1
        child[-1] += value

    def family(self) -> Metric:
        metric = Metric(self.name, self.help, "histogram")
        for values, child in self.children.items():
            base = dict(zip(self.labels, values, strict=True))
            total = 0.0
            for le, count in zip(self.le, child, strict=False):
                total += count
                metric.add_sample(f"{self.name}_bucket", {**base, "le": le}, total)
            metric.add_sample(f"{self.name}_count", base, total)
            metric.add_sample(f"{self.name}_sum", base, child[-1])
        return metric


@dataclass
class _Scalar:
    name: str
    help: str
    kind: str  # "counter" or "gauge"
    value: float = 0.0

    def family(self) -> Metric:
        metric = Metric(self.name, self.help, self.kind)
        metric.add_sample(self.name, {}, self.value)
        return metric


def _short_method(method: str) -> str:
    # ModelMesh labels requests with the part after the service name (its default short names);
    # Python's gRPC handlers see "/pkg.Service/Method", Java's "pkg.Service/Method".
    method = method.lstrip("/")
    return method.split("/", 1)[1] if "/" in method else method


class _Code(Protocol):
    @property
    def name(self) -> str: ...


# ModelMesh's histograms (Metrics.java): attribute -> (name, help, buckets, labelled per request or per model).
HISTOGRAMS: dict[str, tuple[str, str, tuple[float, ...], str]] = {
    "invoke": ("modelmesh_invoke_model_milliseconds", "Internal model server inference request time",
               MS_TIME_BUCKETS, "request"),
    "api": ("modelmesh_api_request_milliseconds", "External inference request time", MS_TIME_BUCKETS, "request"),
    "req_size": ("modelmesh_request_size_bytes", "Inference request payload size", MESSAGE_SIZE_BUCKETS, "request"),
    "resp_size": ("modelmesh_response_size_bytes", "Inference response payload size", MESSAGE_SIZE_BUCKETS,
                  "request"),
    "cache_miss": ("modelmesh_cache_miss_milliseconds", "Cache miss delay", MS_TIME_BUCKETS, "model"),
    "load": ("modelmesh_loadmodel_milliseconds", "Time taken to load model", MS_TIME_BUCKETS, "model"),
    "unload": ("modelmesh_unloadmodel_milliseconds", "Time taken to unload model", MS_TIME_BUCKETS, "model"),
    "queue": ("modelmesh_req_queue_delay_milliseconds", "Time spent in inference request queue", MS_TIME_BUCKETS,
              "model"),
    "load_queue": ("modelmesh_loading_queue_delay_milliseconds", "Time spent in model loading queue",
                   MS_TIME_BUCKETS, "model"),
    "sizing": ("modelmesh_model_sizing_milliseconds", "Time taken to perform model sizing", MS_TIME_BUCKETS, "model"),
    "age": ("modelmesh_age_at_eviction_milliseconds", "Time since model was last used when evicted", AGE_BUCKETS,
            "model"),
    "size": ("modelmesh_loaded_model_size_bytes", "Reported size of loaded model", MODEL_SIZE_BUCKETS, "model"),
}

FIRST_HISTOGRAMS = ("invoke", "api", "req_size", "resp_size", "cache_miss", "load", "unload", "queue", "load_queue",
                    "sizing")


class MeshMetrics:
    """One instance's ModelMesh metrics; per_model adds ModelMesh's per-model labels (modelId, vModelId)."""

    def __init__(self, per_model: bool = False) -> None:
        self.per_model = per_model
        self._lock = threading.Lock()
        request_labels = ("method", "code", "modelId", "vModelId") if per_model else ("method", "code")
        model_labels = ("modelId", "vModelId") if per_model else ()

        labels = {"request": request_labels, "model": model_labels}
        self._h = {key: _Histogram(name, text, buckets, labels[by])
                   for key, (name, text, buckets, by) in HISTOGRAMS.items()}
        self._load_failure = _Scalar("modelmesh_loadmodel_failure", "Model load failures", "counter")
        self._unload_failure = _Scalar("modelmesh_unloadmodel_failure",
                                       "Unload model failures (not counting multiple attempts for same copy)",
                                       "counter")
        self._unload_attempt_failure = _Scalar("modelmesh_unloadmodel_attempt_failure",
                                               "Unload model attempt failures", "counter")
        self._leader = (
            _Scalar("modelmesh_models_loaded_total", "Total number of models with at least one loaded copy", "gauge"),
            _Scalar("modelmesh_models_with_failure_total",
                    "Total number of models with one or more recent load failures", "gauge"),
            _Scalar("modelmesh_models_managed_total", "Total number of models managed", "gauge"),
        )
        self._is_leader = False
        self._instance = (
            _Scalar("modelmesh_instance_lru_seconds",
                    "Last used time of least recently used model in pod (in secs since epoch)", "gauge"),
            _Scalar("modelmesh_instance_lru_age_seconds",
                    "Last used age of least recently used model in pod (secs ago)", "gauge"),
            _Scalar("modelmesh_instance_capacity_bytes", "Effective model capacity of pod excluding unload buffer",
                    "gauge"),
            _Scalar("modelmesh_instance_used_bytes", "Amount of capacity currently in use by loaded models", "gauge"),
            _Scalar("modelmesh_instance_used_bps", "Amount of capacity used in basis points (100ths of percent)",
                    "gauge"),
            _Scalar("modelmesh_instance_models_total", "Number of model copies loaded in pod", "gauge"),
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Families(self))

    # ---- events (times in milliseconds: ModelMesh records whole milliseconds, so fractions are dropped)

    def _model(self, model_id: str, vmodel_id: str) -> tuple[str, ...]:
        return (model_id, vmodel_id) if self.per_model else ()

    def _request(self, histogram: _Histogram, method: str, code: str | _Code, ms: float, req_bytes: int | None,
                 resp_bytes: int | None, model_id: str, vmodel_id: str) -> None:
        labels: tuple[str, ...] = (_short_method(method), code if isinstance(code, str) else code.name)
        if self.per_model:
            # Upstream fills both per-model labels with the vmodel id when there is one, else the model id.
            shown = vmodel_id or model_id
            labels += (shown, shown)
        with self._lock:
            histogram.observe(int(ms), labels)
            if req_bytes is not None:
                self._h["req_size"].observe(req_bytes, labels)
            if resp_bytes is not None:
                self._h["resp_size"].observe(resp_bytes, labels)

    def api_request(self, method: str, code: str | _Code, ms: float, *, req_bytes: int | None = None,
                    resp_bytes: int | None = None, model_id: str = "", vmodel_id: str = "") -> None:
        """An external (API) request; code is a gRPC status name or grpc.StatusCode."""
        self._request(self._h["api"], method, code, ms, req_bytes, resp_bytes, model_id, vmodel_id)

    def invoke_model(self, method: str, code: str | _Code, ms: float, *, req_bytes: int | None = None,
                     resp_bytes: int | None = None, model_id: str = "", vmodel_id: str = "") -> None:
        """A request this instance made to its model server (or forwarded to another instance)."""
        self._request(self._h["invoke"], method, code, ms, req_bytes, resp_bytes, model_id, vmodel_id)

    def _observe(self, histogram: _Histogram, value: float, model_id: str, vmodel_id: str) -> None:
        with self._lock:
            histogram.observe(value, self._model(model_id, vmodel_id))

    def cache_miss(self, ms: float, model_id: str = "", vmodel_id: str = "") -> None:
        self._observe(self._h["cache_miss"], int(ms), model_id, vmodel_id)

    def queue_delay(self, ms: float, model_id: str = "", vmodel_id: str = "") -> None:
        self._observe(self._h["queue"], int(ms), model_id, vmodel_id)

    def loading_queue_delay(self, ms: float, model_id: str = "", vmodel_id: str = "") -> None:
        self._observe(self._h["load_queue"], int(ms), model_id, vmodel_id)

    def model_sizing(self, ms: float, model_id: str = "", vmodel_id: str = "") -> None:
        self._observe(self._h["sizing"], int(ms), model_id, vmodel_id)

    def load(self, ms: float, size_bytes: int, model_id: str = "", vmodel_id: str = "") -> None:
        """A successful load: its time and the size the runtime reported."""
        labels = self._model(model_id, vmodel_id)
        with self._lock:
            self._h["load"].observe(int(ms), labels)
            self._h["size"].observe(size_bytes, labels)

    def unload(self, ms: float, model_id: str = "", vmodel_id: str = "") -> None:
        self._observe(self._h["unload"], int(ms), model_id, vmodel_id)

    def evicted(self, age_ms: float, model_id: str = "", vmodel_id: str = "") -> None:
        """An eviction from the cache; age_ms is the time since the copy was last used."""
        self._observe(self._h["age"], int(age_ms), model_id, vmodel_id)

    def _inc(self, counter: _Scalar) -> None:
        with self._lock:
            counter.value += 1

    def load_failed(self) -> None:
        self._inc(self._load_failure)

    def unload_failed(self) -> None:
        self._inc(self._unload_failure)

    def unload_attempt_failed(self) -> None:
        self._inc(self._unload_attempt_failure)

    # ---- state

    def set_instance(self, lru_ms: int, capacity_bytes: int, used_bytes: int, models: int, *,
                     now_ms: int | None = None) -> None:
        """This pod's gauges; lru_ms is the epoch-ms last use of its least recently used copy (<= 0: none)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        values = (
            lru_ms // 1000 if lru_ms > 0 else _NO_LRU_SECONDS,
            (now_ms - lru_ms) // 1000 if lru_ms > 0 else 0,
            capacity_bytes,
            used_bytes,
            int(used_bytes / capacity_bytes * 10_000) if capacity_bytes else 0,
            models,
        )
        with self._lock:
            for gauge, value in zip(self._instance, values, strict=True):
                gauge.value = float(value)

    def set_leader(self, loaded: int, managed: int, with_failure: int) -> None:
        """The cluster-wide gauges, which only the leader exposes."""
        with self._lock:
            for gauge, value in zip(self._leader, (loaded, with_failure, managed), strict=True):
                gauge.value = float(value)
            self._is_leader = True

    def clear_leader(self) -> None:
        with self._lock:
            self._is_leader = False

    # ---- exposition

    def families(self) -> list[Metric]:
        with self._lock:
            # In ModelMesh's order: the failure counters come between the request histograms and the model ones.
            out = [self._h[key].family() for key in FIRST_HISTOGRAMS]
            out += [c.family() for c in (self._load_failure, self._unload_failure, self._unload_attempt_failure)]
            out += [self._h[key].family() for key in HISTOGRAMS if key not in FIRST_HISTOGRAMS]
            if self._is_leader:
                out += [g.family() for g in self._leader]
            out += [g.family() for g in self._instance]
        return out

    def exposition(self, names: set[str] | None = None) -> bytes:
        """The registry in ModelMesh's text layout; names (Prometheus' name[] parameter) keeps the named
        families, and the named samples of other families."""
        lines: list[str] = []
        for family in self.registry.collect():
            samples = family.samples
            if names and family.name not in names:
                samples = [s for s in samples if s.name in names]
                if not samples:
                    continue
            lines.append(f"# HELP {family.name} {_escape_help(family.documentation)}")
            lines.append(f"# TYPE {family.name} {family.type}")
            for sample in samples:
                labels = "".join(f'{k}="{_escape_label(v)}",' for k, v in sample.labels.items())
                lines.append(f"{sample.name}{{{labels}}} {java_double(sample.value)}" if labels
                             else f"{sample.name} {java_double(sample.value)}")
        return ("\n".join(lines) + "\n").encode() if lines else b""


class _Families(Collector):
    def __init__(self, metrics: MeshMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics.families()


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


# ---- HTTP endpoints


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as scrapers and kubelet probes expect

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _metrics_handler(metrics: MeshMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(_Quiet):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            # Upstream answers on /metrics and /, with or without a trailing slash, and filters by name[].
            if url.path.rstrip("/") not in ("/metrics", ""):
                self._reply(404)
                return
            names = set(parse_qs(url.query).get("name[]", [])) or None
            self._reply(200, metrics.exposition(names), CONTENT_TYPE)

        do_HEAD = do_GET

    return Handler


def _probe_handler(ready: Callable[[], bool], live: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    checks = {"/ready": ready, "/live": live}

    class Handler(_Quiet):
        def do_GET(self) -> None:
            check = checks.get(urlsplit(self.path).path)
            if check is None:
                self._reply(404)
                return
            try:
                ok = bool(check())
            except Exception:  # a failing check is a failed probe, not a crashed server
                ok = False
            self._reply(200 if ok else 503, b"OK" if ok else b"NOT OK")

        do_HEAD = do_GET

    return Handler


@dataclass
class Endpoints:
    """The running metrics and probe servers; ports are the bound ones (useful when 0 was asked for)."""

    servers: list[ThreadingHTTPServer]
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def metrics_port(self) -> int:
        return int(self.servers[0].server_address[1])

    @property
    def probe_port(self) -> int:
        return int(self.servers[1].server_address[1])

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for thread in self.threads:
            thread.join(5)


def _start(port: int, handler: type[BaseHTTPRequestHandler], name: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True)
    thread.start()
    return server, thread


def serve(metrics: MeshMetrics, metrics_port: int, probe_port: int, ready: Callable[[], bool],
          live: Callable[[], bool]) -> Endpoints:
    """GET /metrics (plain http) on 127.0.0.1:metrics_port; GET /ready and /live on 127.0.0.1:probe_port."""
    metrics_server, metrics_thread = _start(metrics_port, _metrics_handler(metrics), "mesh-metrics")
    try:
        probe_server, probe_thread = _start(probe_port, _probe_handler(ready, live), "mesh-probes")
    except OSError:
        metrics_server.shutdown()
        metrics_server.server_close()
        raise
    return Endpoints([metrics_server, probe_server], [metrics_thread, probe_thread])

"""A real Prometheus scraping the service on loopback; the alert rules; the Grafana dashboard."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import math
import os
import re
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from tcv_helpers.cli import app as cli_app
from tcv_helpers.deploy.app import create_app
from tcv_helpers.deploy.inference import load_detector
from tcv_helpers.deploy.reference import brightness_reference, load_reference
from tcv_helpers.deploy.server import serve_in_background
from tcv_helpers.monitor import prometheus as prom_mod
from tcv_helpers.monitor.prometheus import (
    monitoring_files,
    prometheus_status,
    start_prometheus,
    write_config,
)
from tcv_helpers.monitor.prometheus_query import (
    PrometheusError,
    PrometheusQueryError,
    PrometheusUnavailable,
    query,
    query_table,
)
from tcv_helpers.monitor.prometheus_rules import (
    RulesError,
    alert_rules,
    check_config,
    check_dashboard,
    check_queries,
    check_rules,
    dashboard_queries,
    exported_metrics,
    metric_names,
    run_rule_tests,
)
from tests.conftest import ROOT

with warnings.catch_warnings():  # Starlette nudges towards httpx2; the test client still works
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

CLASSES = ("car", "truck", "bus", "motorcycle", "bicycle", "person")
KEY = "prom-test-key-3f9a"
REFERENCE = {"brightness": {"mean": 100.0, "std": 10.0}}
ALERTS_TEST = ROOT / "tests" / "monitoring" / "alerts_test.yml"
#: What the tiny model finds in every image: two cars and a truck (a bus below the threshold).
BOXES = [(16, 16, 10, 10, 0, 0.9), (48, 16, 10, 10, 0, 0.8), (32, 48, 12, 12, 1, 0.7)]
BOXES += [(40, 40, 8, 8, 2, 0.1)]


def _tiny_onnx(path: Path) -> Path:
    """A 64-pixel "YOLO" ONNX model, as Ultralytics exports it, that always finds ``BOXES``.

    The output does not depend on the pixels (a constant plus zero times their mean), so the
    counts Prometheus reports can be checked exactly; it takes a second to build, not a training.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    raw = np.zeros((1, 4 + len(CLASSES), len(BOXES)), np.float32)
    for anchor, (x, y, w, h, class_id, score) in enumerate(BOXES):
        raw[0, :4, anchor] = (x, y, w, h)
        raw[0, 4 + class_id, anchor] = score
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Reshape", ["nothing", "shape"], ["flat"]),
        helper.make_node("Add", ["boxes", "flat"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(raw.shape))],
        initializer=[
            numpy_helper.from_array(raw, "boxes"),
            numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
            numpy_helper.from_array(np.array([1, 1, 1], np.int64), "shape"),
        ],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    metadata = {"names": str(dict(enumerate(CLASSES))), "imgsz": "[64, 64]", "stride": "32"}
    helper.set_model_props(model, {**metadata, "task": "detect"})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _png(level: int, size: tuple[int, int] = (80, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (level, level, level)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    onnx_path = _tiny_onnx(tmp_path_factory.mktemp("prometheus") / "tiny.onnx")
    return SimpleNamespace(onnx=onnx_path, detector=load_detector(onnx_path, threads=1))


@pytest.fixture
def prometheus_bin() -> Path:
    status = prometheus_status()
    if not status.available:
        pytest.skip(status.message)
    return prom_mod.find_executable("prometheus")


@pytest.fixture
def promtool() -> Path:
    try:
        return prom_mod.find_executable("promtool")
    except PrometheusUnavailable as exc:
        pytest.skip(str(exc))


def _metrics_page(app_kwargs: dict, detector) -> str:
    """The service's /metrics after one good and one refused request."""
    with TestClient(create_app(detector, api_key="", **app_kwargs)) as client:
        assert client.post("/v1/detect", files={"image": ("a.png", _png(60))}).status_code == 200
        assert client.post("/v1/detect", files={"image": ("a.txt", b"text")}).status_code == 415
        return client.get("/metrics").text


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile over cumulative ``(upper bound, count)`` buckets."""
    buckets = sorted(buckets)
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    raise AssertionError("no bucket holds the rank")


# ---- the reference profile the service exports (tcv_helpers.deploy.reference) ----------------


def test_reference_profile_is_exported_beside_the_images_brightness(tiny, tmp_path):
    profile = brightness_reference([_png(60), _png(140), np.full((20, 30, 3), 100, np.uint8)])
    assert profile["brightness"]["count"] == 3
    assert profile["brightness"]["mean"] == pytest.approx(100, abs=0.01)
    assert profile["brightness"]["std"] == pytest.approx(np.std([60, 140, 100]), abs=0.01)

    page = _metrics_page({"reference": REFERENCE}, tiny.detector)
    values = {
        s.labels["stat"]: s.value
        for f in text_string_to_metric_families(page)
        for s in f.samples
        if s.name == "tcv_reference_brightness"
    }
    assert values == {"mean": 100.0, "std": 10.0}
    assert "tcv_reference_brightness{" not in _metrics_page({}, tiny.detector)

    # Found beside the model, or one folder up (a benchmark's variants folder).
    variants = tmp_path / "variants"
    model = variants / "onnxruntime-fp32" / "tiny.onnx"
    model.parent.mkdir(parents=True)
    model.write_bytes(tiny.onnx.read_bytes())
    (variants / "reference.json").write_text(json.dumps({"brightness": {"mean": 42, "std": 7}}))
    beside = create_app(load_detector(model, threads=1), api_key="")
    assert beside.state.service.settings.reference == {"brightness": {"mean": 42.0, "std": 7.0}}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not valid JSON"),
        ('{"mean": 3}', '"brightness" object'),
        ('{"brightness": {"mean": 90}}', "brightness.std must be a number"),
        ('{"brightness": {"mean": 300, "std": 5}}', "brightness.mean must be in 0-255"),
        ('{"brightness": {"mean": true, "std": 5}}', "brightness.mean must be a number"),
    ],
)
def test_bad_reference_profiles_name_the_file_and_field(tiny, tmp_path, content, words):
    path = tmp_path / "reference.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"reference\.json") as caught:
        load_reference(path)
    assert words in str(caught.value)
    with pytest.raises(ValueError, match=re.escape(words)):
        create_app(tiny.detector, api_key="", reference=path)


@pytest.mark.parametrize("problem", ["unreadable", "malformed"], ids=["unreadable", "malformed"])
def test_a_reference_found_beside_the_model_never_stops_the_service(
    tiny, tmp_path, monkeypatch, caplog, problem
):
    model = tmp_path / "models" / "tiny.onnx"
    model.parent.mkdir()
    model.write_bytes(tiny.onnx.read_bytes())
    reference = model.parent / "reference.json"
    reference.write_text(
        '{"brightness": {"mean": 42, "std": 7}}' if problem == "unreadable" else "{"
    )
    if problem == "unreadable":  # root reads any file: make the read fail as a 0600 file would
        real = Path.read_text

        def read_text(self, *args, **kwargs):
            if self.name == "reference.json":
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", read_text)
    with caplog.at_level(logging.WARNING, logger="tcv_helpers.deploy.app"):
        app = create_app(load_detector(model, threads=1), api_key="")
    assert app.state.service.settings.reference is None
    warning = caplog.text
    assert "reference.json not used" in warning and "without the drift baseline" in warning
    if problem == "unreadable":
        assert "Permission denied" in warning
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        page = client.get("/metrics").text
    assert "tcv_reference_brightness{" not in page


def test_missing_reference_is_refused_by_tcv_serve(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gone\.json"):
        load_reference(tmp_path / "gone.json")
    with pytest.raises(ValueError, match="at least one image"):
        brightness_reference([])
    args = ["serve", "--model", str(tiny.onnx), "--reference", str(tmp_path / "gone.json")]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code != 0 and "gone.json" in result.output
    assert "Traceback" not in result.output


# ---- PromQL names, the dashboard and the rules against what the service exports --------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        ('absent(up{job="tcv"})', {"up"}),
        (
            'histogram_quantile(0.95, sum by (job, le) (rate(x_bucket{a=~"/v1/.*", b!="{c}"}[5m])))',
            {"x_bucket"},
        ),
        ("a / on (job, instance) group_left(stat) b offset 5m", {"a", "b"}),
        ('sum(rate(c_total{job=~"$job"}[$__rate_interval])) > bool 1e3', {"c_total"}),
        (
            "rec:ratio:rate5m > 0.2 and on (job) increase(d_count[15m]) >= 20",
            {"rec:ratio:rate5m", "d_count"},
        ),
        ('clamp_min(g{stat="std"}, 1) or vector(0)', {"g"}),
    ],
)
def test_metric_names_reads_the_metrics_of_an_expression(expr, names):
    assert metric_names(expr) == names


def test_dashboard_queries_only_what_the_service_exports(tiny, tmp_path):
    files = monitoring_files()
    board = json.loads(files.dashboard.read_text())
    assert board["schemaVersion"] >= 39 and board["uid"] and board["title"]
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"] and {"x", "y", "w", "h"} <= set(panel["gridPos"])
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
    titles = " | ".join(p["title"] for p in panels).lower()
    for subject in ("by status", "error ratio", "p50 / p95 / p99", "inference", "by class"):
        assert subject in titles, subject
    assert "brightness vs reference" in titles and "model" in titles
    used = set().union(*(metric_names(q.expr) for q in dashboard_queries()))
    assert {"tcv_requests_total", "tcv_request_seconds_bucket", "tcv_reference_brightness"} <= used

    page = _metrics_page({"reference": REFERENCE}, tiny.detector)
    assert check_dashboard(page) == []

    # The check fails on a metric or a label the service does not have.
    broken = json.loads(files.dashboard.read_text())
    target = broken["panels"][5]["targets"][0]
    target["expr"] = target["expr"].replace("tcv_requests_total", "tcv_request_total")
    target = broken["panels"][6]["targets"][0]
    target["expr"] = target["expr"].replace("status=~", "code=~")
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    problems = check_dashboard(page, path=path)
    assert any("tcv_request_total is not exported" in p for p in problems), problems
    assert any("tcv_requests_total has no label 'code'" in p for p in problems), problems
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"junk\.json"):
        dashboard_queries(tmp_path / "junk.json")


def test_rules_read_only_what_the_service_exports(tiny):
    rules = yaml.safe_load(monitoring_files().alerts.read_text())
    everything = [r for group in rules["groups"] for r in group["rules"]]
    alerts = {r["alert"] for r in everything if "alert" in r}
    assert {"TcvServiceDown", "TcvHighLatencyP95", "TcvServerErrors", "TcvClientErrors"} <= alerts
    assert "TcvInputBrightnessDrift" in alerts
    exported = exported_metrics(_metrics_page({"reference": REFERENCE}, tiny.detector))
    exported["up"] = set()
    exported.update({r["record"]: {"job", "instance"} for r in everything if "record" in r})
    queries = {r.get("alert") or r["record"]: r["expr"] for r in everything}
    assert check_queries(queries, exported) == []


# ---- promtool and the configuration --------------------------------------------------------


def test_alert_rules_table_lists_every_alert():
    table = alert_rules()
    assert {
        "TcvServiceDown",
        "TcvHighLatencyP95",
        "TcvServerErrors",
        "TcvInputBrightnessDrift",
    } <= set(table["alert"])
    assert len(table) == 7 and table["expr"].str.len().min() > 0
    assert table.set_index("alert").loc["TcvInputBrightnessDrift", "for"] == "10m"


def test_promtool_accepts_the_rules_and_their_unit_tests(promtool, tmp_path):
    assert "SUCCESS" in check_rules(monitoring_files().alerts)
    assert "SUCCESS" in run_rule_tests(ALERTS_TEST)
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: Half\n        expr: rate(up[5m]\n"
    )
    with pytest.raises(RulesError, match=r"broken\.yml") as caught:
        check_rules(broken)
    assert '"Half"' in str(caught.value) and "parse error" in str(caught.value)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.yml"):
        check_rules(tmp_path / "nowhere.yml")


def test_config_names_the_key_file_never_the_key(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    path = write_config(tmp_path / "prometheus.yml", "http://127.0.0.1:8123", api_key_file=key_file)
    text = path.read_text()
    assert KEY not in text
    config = yaml.safe_load(text)
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s"}
    assert config["rule_files"] == [str(monitoring_files().alerts)]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "tcv" and job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:8123"]}]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": str(key_file)}
    plain = yaml.safe_load(
        write_config(tmp_path / "p2.yml", "127.0.0.1:9", rules=[], scrape_interval=0.5).read_text()
    )
    assert "authorization" not in plain["scrape_configs"][0] and plain["rule_files"] == []
    assert plain["scrape_configs"][0]["scrape_interval"] == "500ms"
    with contextlib.suppress(PrometheusUnavailable):  # promtool missing: nothing to check with
        assert "SUCCESS" in check_config(path)
    for target in ("localhost", "ftp://x:1", "http://127.0.0.1:8000/metrics"):
        with pytest.raises(ValueError, match="target"):
            write_config(tmp_path / "x.yml", target)
    with pytest.raises(ValueError, match="scrape_interval"):
        write_config(tmp_path / "x.yml", "127.0.0.1:9", scrape_interval="1 second")
    with pytest.raises(FileNotFoundError, match="no-key"):
        write_config(tmp_path / "x.yml", "127.0.0.1:9", api_key_file=tmp_path / "no-key")


def test_without_prometheus_the_errors_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(PrometheusUnavailable, match="apt-get install prometheus"):
        prom_mod.find_executable("prometheus-that-is-not-there")
    with pytest.raises(PrometheusUnavailable, match="No Prometheus answers"):
        query(f"http://127.0.0.1:{prom_mod._free_port('127.0.0.1')}", "up")
    with pytest.raises(PrometheusUnavailable, match="does not exist"):
        start_prometheus("http://127.0.0.1:9", executable=tmp_path / "prometheus")
    with pytest.raises(ValueError, match="either target"):
        start_prometheus()
    with pytest.raises(ValueError, match="credentials_file"):
        start_prometheus(config=tmp_path / "p.yml", api_key=KEY)

    def missing(name: str = "prometheus") -> Path:
        raise PrometheusUnavailable(f"{name} is not installed here; {prom_mod.INSTALL_HINT}.")

    monkeypatch.setattr(prom_mod, "find_executable", missing)
    status = prometheus_status()
    assert not status.available and not status
    assert "apt-get install prometheus" in status.message
    assert "prometheus.io/download" in status.message


# ---- the real thing: the service and Prometheus on loopback ----------------------------------


def _post(client: httpx.Client, count: int, name: str, data: bytes, status: int) -> None:
    for _ in range(count):
        answer = client.post("/v1/detect", files={"image": (name, data)})
        assert answer.status_code == status, answer.text


def _grafana(expr: str) -> str:
    """A dashboard query as Grafana sends it with job tcv, every instance, a 1-minute rate."""
    return expr.replace("$__rate_interval", "1m").replace("$job", "tcv").replace("$instance", ".*")


def test_prometheus_reads_back_what_the_service_served(tiny, prometheus_bin):
    began = time.time()
    grey, square = _png(60), _png(60, size=(64, 64))
    with (
        serve_in_background(tiny.detector, api_key=KEY, reference=REFERENCE) as server,
        start_prometheus(server.url, api_key=KEY) as prom,
    ):
        # The key is in a file only its owner reads, named by the config, never in it.
        config = yaml.safe_load(prom.config.read_text())
        key_file = Path(config["scrape_configs"][0]["authorization"]["credentials_file"])
        assert KEY not in prom.config.read_text() and key_file.read_text() == KEY
        assert key_file.stat().st_mode & 0o777 == 0o600
        (target,) = prom.wait_for_scrape()  # raises with the scrape's error if the key is refused
        assert target.health == "up" and target.last_error == ""

        # Traffic in two rounds, with a scrape between: a labelled series appears with its first
        # request, and rate() counts only what a series gains after Prometheus first saw it.
        with (
            httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=30) as client,
            httpx.Client(base_url=server.url, timeout=30) as anonymous,
        ):
            _post(client, 1, "grey.png", grey, 200)
            _post(client, 1, "notes.txt", b"just text\n", 415)
            _post(client, 1, "empty.jpg", b"", 422)
            _post(anonymous, 1, "grey.png", grey, 401)
            prom.wait_for_scrape()
            _post(client, 20, "grey.png", grey, 200)
            _post(client, 9, "square.png", square, 200)
            _post(client, 19, "notes.txt", b"just text\n", 415)
            _post(anonymous, 1, "grey.png", grey, 401)
        prom.wait_for_scrape()

        # Counters: exactly what was sent, by status and by reason.
        by_status = prom.query('sum by (status) (tcv_requests_total{endpoint="/v1/detect"})')
        assert {s.labels["status"]: s.value for s in by_status} == {
            "200": 30, "415": 20, "422": 1, "401": 2
        }  # fmt: skip
        by_reason = prom.query('sum by (reason) (tcv_errors_total{endpoint="/v1/detect"})')
        assert {s.labels["reason"]: s.value for s in by_reason} == {
            "not_an_image": 20, "empty": 1, "unauthorized": 2
        }  # fmt: skip
        table = query_table(
            prom.url, {"by status": 'sum by (status) (tcv_requests_total{endpoint="/v1/detect"})'}
        )
        assert dict(zip(table["labels"], table["value"], strict=True)) == {
            "status=200": 30, "status=401": 2, "status=415": 20, "status=422": 1
        }  # fmt: skip
        assert set(table["query"]) == {"by status"}
        by_class = prom.query("sum by (class_name) (tcv_detections_total)")
        assert {s.labels["class_name"]: s.value for s in by_class} == {"car": 60, "truck": 30}
        assert prom.query_value("sum(tcv_detections_per_image_count)") == 30
        (info,) = prom.query("tcv_model_info")
        assert info.labels["version"] == tiny.detector.version and info.value == 1
        assert info.labels["model"] == "tiny" and info.labels["backend"] == "onnxruntime"

        # Latency: Prometheus' quantile of the stored histogram equals the service's own buckets.
        selector = 'tcv_request_seconds_bucket{endpoint="/v1/detect"}'
        assert prom.query_value(f"sum({selector.replace('_bucket', '_count')})") == 53
        page = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": KEY}).text
        buckets = [
            (float(s.labels["le"]), s.value)
            for f in text_string_to_metric_families(page)
            for s in f.samples
            if s.name == "tcv_request_seconds_bucket" and s.labels["endpoint"] == "/v1/detect"
        ]
        for q in (0.5, 0.95, 0.99):
            stored = prom.query_value(f"histogram_quantile({q}, sum by (le) ({selector}))")
            assert stored == pytest.approx(_quantile(q, buckets)) and 0 < stored < 10

        # Over time: the request count climbs to all of it (the grid of evaluation times runs a
        # step past now, hence past the last scrape).
        (series,) = prom.query_range(
            'sum(tcv_requests_total{endpoint="/v1/detect"})',
            start=began,
            end=time.time() + 0.5,
            step=0.5,
        )
        assert series.values == sorted(series.values)
        assert series.values[0] < 53 and series.values[-1] == 53

        # Drift: frames of brightness 60 against a reference of 100 +- 10 are 4 sd off; the
        # alert is pending (it fires after 10 minutes) and so is the 4xx one (20 of 49 after the
        # first round); nothing else.
        (z,) = prom.wait_for(  # NaN until a scrape shows frames (0 / 0), then a number
            "instance:tcv_image_brightness:zscore15m",
            until=lambda found: bool(found) and math.isfinite(found[0].value),
            timeout=20,
        )
        assert z.value == pytest.approx(-4, abs=0.01)
        expected = {"TcvInputBrightnessDrift", "TcvClientErrors"}
        alerts = prom.wait_for(
            "ALERTS", until=lambda found: {s.labels["alertname"] for s in found} >= expected,
            timeout=20,
        )  # fmt: skip
        assert {s.labels["alertname"] for s in alerts} == expected
        assert {s.labels["alertstate"] for s in alerts} == {"pending"}

        # Every dashboard query and every rule runs on the real Prometheus and, for the
        # dashboard, shows data.
        for item in dashboard_queries():
            assert prom.query(_grafana(item.expr)), f"{item.panel} {item.ref_id}: no data"
        for group in yaml.safe_load(monitoring_files().alerts.read_text())["groups"]:
            for rule in group["rules"]:
                prom.query(rule["expr"])

        # Bad PromQL names the query; a many-series query is not one number.
        with pytest.raises(PrometheusQueryError, match=r"sum\(tcv_requests_total"):
            prom.query("sum(tcv_requests_total")
        with pytest.raises(PrometheusQueryError, match="aggregate"):
            prom.query_value("tcv_requests_total")
        with pytest.raises(PrometheusQueryError, match="query_range"):
            prom.query("up[1m]")

        # Without the key the scrape is refused, and waiting for it says so.
        with (
            start_prometheus(server.url, api_key="", rules=[]) as keyless,
            pytest.raises(PrometheusError, match="401"),
        ):
            keyless.wait_for_scrape(timeout=15)
    assert not prom.workdir.exists() and not key_file.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(prom.pid, 0)


def test_a_broken_config_stops_prometheus_with_its_log(prometheus_bin, tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs:\n  - job_name: [not, a, name]\n")
    with pytest.raises(PrometheusError, match="exited") as caught:
        start_prometheus(config=config, workdir=tmp_path / "run", startup_timeout=20)
    assert "prometheus.yml" in str(caught.value) and "line 2" in str(caught.value)

"""Charts are values: assert on their Vega-Lite specs (marks, encodings, the Pareto points)."""

import json

import pandas as pd
import pytest

import workbench as wb
from workbench import charts


def _layers(spec):
    return spec.get("layer", [spec])


def _data(spec, layer):
    name = layer.get("data", {}).get("name") or spec.get("data", {}).get("name")
    return spec["datasets"][name]


def test_tradeoff_marks_encodings_and_front(cnn_results):
    frame = cnn_results.frame
    spec = charts.tradeoff(frame, current="prune(0.5)", pinned=["fold-bn"]).to_dict()
    layers = _layers(spec)
    marks = [layer["mark"]["type"] for layer in layers]
    assert marks == ["line", "point", "point", "text"]
    points = layers[1]["encoding"]
    assert points["x"]["field"] == "latency_ms_p50" and points["y"]["field"] == "metric"
    assert points["size"]["field"] == "size_kb" and points["color"]["field"] == "precision"
    assert points["shape"]["field"] == "runtime"
    tooltip = {t["field"] for t in points["tooltip"]}
    assert {"pipeline", "latency_ms_iqr", "latency_ms_p90", "size_gzip_bytes"} <= tooltip
    front = _data(spec, layers[0])
    assert sorted(r["pipeline"] for r in front) == sorted(cnn_results.pareto()["pipeline"])
    assert [r["latency_ms_p50"] for r in front] == sorted(r["latency_ms_p50"] for r in front)
    roles = {r["pipeline"]: r["role"] for r in _data(spec, layers[1])}
    assert roles["baseline"] == "baseline" and roles["prune(0.5)"] == "current" and roles["fold-bn"] == "pinned"


def test_tradeoff_uses_fidelity_without_labels_and_skips_failed_rows(cnn_results):
    frame = cnn_results.frame.copy()
    frame.loc[1, "metric"] = None
    frame.loc[2, "status"] = "failed"
    spec = charts.tradeoff(frame).to_dict()
    assert _layers(spec)[1]["encoding"]["y"]["field"] == "fidelity"
    plotted = {r["pipeline"] for r in _data(spec, _layers(spec)[1])}
    assert frame.loc[2, "pipeline"] not in plotted


def test_latency_distribution_has_every_sample(cnn_results):
    frame = cnn_results.frame
    spec = charts.latency_distribution(frame).to_dict()
    assert spec["mark"]["type"] == "boxplot"
    data = spec["datasets"][spec["data"]["name"]]
    expected = sum(len(json.loads(s)) for s in frame["latency_samples_ms"])
    assert len(data) == expected


def test_size_breakdown_adds_up(cnn_results):
    parts = charts.size_parts(cnn_results.frame)
    for pipeline, group in parts.groupby("pipeline"):
        file_parts = group[group["part"] != "gzip of the file"]["bytes"].sum()
        row = cnn_results.row(pipeline)
        assert file_parts == row["size_bytes"]
    assert charts.size_breakdown(cnn_results.frame).to_dict()["layer"][0]["mark"]["type"] == "bar"


def test_roofline_against_the_measured_peaks(cnn_results, device):
    spec = charts.roofline(cnn_results.frame, device).to_dict()
    roof = spec["datasets"][spec["layer"][0]["data"]["name"]]
    assert max(r["gflops"] for r in roof) == pytest.approx(device.peak_gflops_all)
    points = charts.roofline_points(cnn_results.frame)
    assert (points["gflops"] > 0).all() and (points["intensity"] > 0).all()
    assert spec["layer"][0]["encoding"]["x"]["scale"]["type"] == "log"


def test_throughput_curve(cnn_study):
    curve = cnn_study.throughput(["baseline", "fold-bn"], batch_sizes=(1, 8, 32))
    assert list(curve.columns[:3]) == ["pipeline", "batch_size", "latency_ms_p50"]
    assert len(curve) == 6 and (curve["throughput"] > 0).all()
    base = curve[curve["pipeline"] == "baseline"].set_index("batch_size")["throughput"]
    assert base[32] > base[1]  # batching pays on this model
    spec = charts.throughput_curve(curve).to_dict()
    assert spec["encoding"]["x"]["scale"]["type"] == "log"


@pytest.mark.parametrize("suffix", [".html", ".svg", ".png", ".json"])
def test_charts_save_offline(cnn_results, tmp_path, suffix):
    path = charts.save(charts.tradeoff(cnn_results.frame), tmp_path / f"chart{suffix}")
    data = path.read_bytes()
    assert len(data) > 500
    if suffix == ".html":
        text = data.decode()
        assert "vega-embed" in text or "vegaEmbed" in text
        assert "cdn.jsdelivr" not in text and "<script src=\"http" not in text  # nothing from a CDN
    if suffix == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_chart_file_type(cnn_results, tmp_path):
    with pytest.raises(wb.WorkbenchError, match=".html, .svg, .png or .json"):
        charts.save(charts.tradeoff(cnn_results.frame), tmp_path / "chart.pdf")


def test_charts_of_an_empty_or_all_failed_frame(cnn_results):
    frame = cnn_results.frame.copy()
    frame["status"] = "failed"
    assert charts.tradeoff(frame).to_dict()["layer"]  # renders, with nothing plotted
    assert charts.latency_samples(frame).empty and isinstance(charts.size_parts(frame), pd.DataFrame)

import json
import subprocess
import sys

HEAVY = ["torch", "tensorflow", "tf_keras", "keras", "onnxruntime", "ipywidgets", "altair", "transformers", "IPython",
         "distributed", "dask", "openvino", "nncf"]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_workbench_pulls_in_no_framework_and_no_ui():
    loaded = _modules_after("import workbench")
    assert not [m for m in HEAVY if m in loaded]


def test_parsing_pipelines_pulls_in_no_framework():
    loaded = _modules_after("import workbench as wb; wb.parse_pipelines('prune(0.5) + int8-dynamic; fold-bn')")
    assert "torch" not in loaded


def test_public_api_is_pinned():
    import workbench as wb

    assert sorted(wb.__all__) == sorted([
        "COLUMNS", "DaskExecutor", "DataError", "DeviceProfile", "Executor", "IncompatibleRecipesError",
        "InlineExecutor", "LatencyStats", "MissingDependencyError", "ModelError", "ModelHandle", "ParameterError",
        "Pipeline", "ProcessExecutor", "Recipe", "Results", "ResultsStore", "SearchResult", "Space", "SpecError",
        "Study", "TimingConfig",
        "TrainingStudy", "Trial", "TrialRecord",
        "UnknownNameError", "UnsafeModelError", "UnsupportedError", "WarmExecutor", "WeightStats", "WorkbenchError",
        "__version__", "charts", "device", "errors", "history", "load_data", "load_model", "measure_latency", "open_model", "pages", "parse_pipelines", "readable", "recipes", "recommend", "sources",
        "search", "targets", "tasks",
        "text", "wrap", "zoo",
    ])
    for name in wb.__all__:
        assert hasattr(wb, name), name


def test_missing_extra_names_the_install_command(monkeypatch):
    from workbench._optional import require
    from workbench.errors import MissingDependencyError

    try:
        require("surely_not_installed_pkg", "tf", "the TensorFlow backend")
    except MissingDependencyError as exc:
        assert "pip install 'efficiency-workbench[tf]'" in str(exc)
    else:
        raise AssertionError("expected MissingDependencyError")

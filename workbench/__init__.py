"""Efficiency Workbench: which optimizations make a model smaller and faster, and what each costs.

    import workbench as wb
    model, task = wb.zoo.load("digits-cnn")
    results = wb.Study(model, task).run(["int8-dynamic", "prune(0.5)", "fold-bn + int8-dynamic"])
    results.frame; results.pareto(); wb.device()

`import workbench` imports no deep-learning framework and no UI: backends load when a model needs them.
"""

from . import charts, errors, pages, readable, recipes, recommend, sources, targets, tasks, text, zoo
from .datafiles import load_data
from .errors import (
    DataError,
    IncompatibleRecipesError,
    MissingDependencyError,
    ModelError,
    ParameterError,
    SpecError,
    UnknownNameError,
    UnsafeModelError,
    UnsupportedError,
    WorkbenchError,
)
from .executors import DaskExecutor, Executor, InlineExecutor, ProcessExecutor, WarmExecutor
from .history import history
from .loading import load_model
from .model import ModelHandle, WeightStats, wrap
from .profiling.device import DeviceProfile, device
from .profiling.timing import LatencyStats, TimingConfig, measure_latency
from .recipes import Pipeline, Recipe, parse_pipelines
from .recommend import SearchResult, Space, search
from .results import COLUMNS, Results
from .sources import open_model
from .store import ResultsStore
from .study import Study
from .training import TrainingStudy
from .trial import Trial, TrialRecord

__version__ = "0.1.0"

__all__ = [
    "COLUMNS", "DaskExecutor", "DataError", "DeviceProfile", "Executor", "IncompatibleRecipesError",
    "InlineExecutor", "LatencyStats", "MissingDependencyError", "ModelError", "ModelHandle", "ParameterError",
    "Pipeline", "ProcessExecutor", "Recipe", "Results", "ResultsStore", "SearchResult", "Space", "SpecError", "Study",
    "TimingConfig", "TrainingStudy", "Trial", "TrialRecord", "UnknownNameError", "UnsafeModelError",
    "UnsupportedError", "WarmExecutor", "WeightStats", "WorkbenchError", "__version__",
    "charts", "device", "errors", "history", "load_data", "load_model", "measure_latency", "open_model", "pages", "parse_pipelines", "readable", "recipes", "recommend", "sources",
    "search", "targets", "tasks",
    "text", "wrap", "zoo",
]

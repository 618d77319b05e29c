"""Interactive panels over the workbench's public API: `TradeoffPanel(study)`, `TrainingPanel(training_study)`,
`DevicePanel()`.

The panels are thin ipywidgets views over plain objects that tests drive: `TradeoffModel` and
`TrainingModel`, both `TrialModel`s (background trials, superseding, pins).
"""

from .state import PanelState, TradeoffModel, TrialModel, availability
from .training import TrainingModel, TrainingState

__all__ = ["DevicePanel", "PanelState", "TradeoffModel", "TradeoffPanel", "TrainingModel", "TrainingPanel",
           "TrainingState", "TrialModel", "availability"]


def __getattr__(name: str):
    if name in ("TradeoffPanel", "DevicePanel", "TrainingPanel"):  # ipywidgets only when a view is asked for
        from . import panel

        return getattr(panel, name)
    raise AttributeError(name)

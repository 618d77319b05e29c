"""Interactive panels over the workbench's public API: `TradeoffPanel(study)`, `DevicePanel()`.

The panels are thin ipywidgets views over `widgets.state.TradeoffModel`, a plain object that tests drive.
"""

from .state import PanelState, TradeoffModel, availability

__all__ = ["DevicePanel", "PanelState", "TradeoffModel", "TradeoffPanel", "availability"]


def __getattr__(name: str):
    if name in ("TradeoffPanel", "DevicePanel"):  # ipywidgets only when a view is asked for
        from . import panel

        return getattr(panel, name)
    raise AttributeError(name)

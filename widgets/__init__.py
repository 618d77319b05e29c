"""Interactive panels over the workbench's public API (ipywidgets). The trade-off panel lands with issue 5."""

__all__: list[str] = []

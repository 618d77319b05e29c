"""Find it for me: the fastest (or smallest) configuration within an accuracy budget, in a time budget.

    found = wb.search(model, task, max_drop=1.0, budget_s="10m", store="search.db")
    found = study.search(holdout=test_task, max_drop=0.5, budget_s=120)

`loop.py` runs the search (Optuna's TPE over a `space.Space`, every proposal a study trial), `heldout.py`
confirms the choice on data it was not selected on, `result.py` is the answer, `quality.py` what a drop means.
"""

from .heldout import HeldOut
from .loop import OBJECTIVES, Search, check_request, parse_duration, search
from .quality import Quality, quality_of
from .result import SearchResult
from .space import Space, default_space

__all__ = ["OBJECTIVES", "HeldOut", "Quality", "Search", "SearchResult", "Space", "check_request", "default_space",
           "parse_duration", "quality_of", "search"]

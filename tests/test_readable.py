"""Numbers for people: units, and every change said in words with which way is better."""

import pytest

from workbench import readable


@pytest.mark.parametrize("kind, baseline, current, text, verdict", [
    ("time", 1.0, 2.45, "2.45x slower", "worse"),
    ("time", 2.0, 0.5, "4.00x faster", "better"),
    ("time", 1.0, 1.01, "unchanged", "same"),
    ("size", 4000, 1000, "4.00x smaller", "better"),
    ("size", 1000, 1010, "1.010x larger", "worse"),
    ("memory", 100, 50, "2.00x less", "better"),
    ("rate", 100, 250, "2.50x higher", "better"),
    ("points", 0.981, 0.978, "−0.3 points", "worse"),
    ("points", 0.97, 0.99, "+2.0 points", "better"),
    ("points", 0.5, 0.5002, "unchanged", "same"),
    ("share", 0.0, 0.5, "+50.0 points", None),
    ("loss", 1.0, 0.5, "-0.5", "better"),
    ("score", 0.855, 0.852, "−0.003", "worse"),
    ("score", 0.855, 0.8552, "unchanged", "same"),
])
def test_changes_in_words(kind, baseline, current, text, verdict):
    change = readable.change(kind, baseline, current)
    assert (change.text, change.verdict) == (text, verdict)


def test_a_latency_change_inside_the_timing_spread_is_noise_whichever_way():
    change = readable.change("time", 1.0, 1.3, noise=0.4)
    assert change.verdict == "noise" and change.text == "within noise (1.30x)" and change.ratio == pytest.approx(1.3)
    assert readable.change("time", 1.0, 1.3, noise=0.1).verdict == "worse"


def test_units_and_missing_values():
    assert readable.size(90_893_809) == "86.7 MB" and readable.size(2048) == "2.00 KB" and readable.size(12) == "12 B"
    assert readable.ms(0.2487, 0.0564) == "0.249 ms ± 0.028"
    assert readable.percent(1.323e-07) == "<0.01%" and readable.percent(0.5) == "50.0%" and readable.percent(0) == "0%"
    assert readable.number(1234.5) == "1,234" and readable.number(0.012345) == "0.0123"
    assert readable.change("time", None, 1.0).text == "–" and readable.size(float("nan")) == "–"

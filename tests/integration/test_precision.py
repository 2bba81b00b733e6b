"""The choice between int8 and fp32 from measurements (pure logic; the measuring itself runs at every
pull of the default model and is checked in test_engine.py)."""

from __future__ import annotations

import pytest

from onnxvec.models.build.precision import MEAN_COSINE, MIN_COSINE, MIN_SPEEDUP, pick

pytestmark = pytest.mark.slow  # minutes: `pytest -m 'not slow'` leaves it out

HOLDS = {"min_cosine": MIN_COSINE + 0.002, "mean_cosine": MEAN_COSINE + 0.0005}


def test_the_fastest_variant_that_holds_wins() -> None:
    measured = {
        "slow": HOLDS | {"speedup": MIN_SPEEDUP + 0.1},
        "fast": HOLDS | {"speedup": MIN_SPEEDUP + 0.5},
        "fastest-but-drifts": {"min_cosine": 0.99, "mean_cosine": 0.998, "speedup": 3.0},
    }
    variant, reason = pick(measured)
    assert variant == "fast" and "fast holds quality" in reason


def test_each_threshold_alone_rules_a_variant_out() -> None:
    for failing in [
        {"min_cosine": MIN_COSINE - 0.0001},
        {"mean_cosine": MEAN_COSINE - 0.00001},
        {"speedup": MIN_SPEEDUP - 0.01},
    ]:
        variant, reason = pick({"int8": HOLDS | {"speedup": 2.0} | failing})
        assert variant == "fp32" and "no int8 variant" in reason, failing

"""Bjøntegaard deltas against cases with a known answer, and the comparison table."""

from __future__ import annotations

import numpy as np
import pytest

from imgcodec.eval.bdrate import bd_psnr, bd_rate, compare, markdown_table
from imgcodec.eval.results import Curve, NoOverlapError, ResultsError

# A JPEG-like curve: concave, unevenly spaced (the interpolation must not matter for the answers).
RATE = [0.25, 0.4, 0.7, 1.1, 1.9, 3.0]
PSNR = [26.1, 28.4, 30.9, 33.0, 36.2, 39.5]


@pytest.mark.parametrize("factor", [0.8, 0.5, 1.1, 1.0])
def test_constant_rate_factor_gives_exactly_that_percentage(factor):
    test = [r * factor for r in RATE]
    assert bd_rate(RATE, PSNR, test, PSNR) == pytest.approx((factor - 1) * 100, abs=1e-9)


@pytest.mark.parametrize("shift", [0.5, -1.25, 0.0])
def test_constant_db_shift_gives_exactly_that_bd_psnr(shift):
    assert bd_psnr(RATE, PSNR, RATE, [p + shift for p in PSNR]) == pytest.approx(shift, abs=1e-9)


def test_partial_overlap_hand_computed():
    # Straight lines in (log R, PSNR): anchor (1 bpp, 30 dB)–(4, 40), test (0.5, 35)–(2, 45).  They share
    # only 35..40 dB and 1..2 bpp; there the test needs a quarter of the rate, or gives 10 dB more.
    assert bd_rate([1, 4], [30, 40], [0.5, 2], [35, 45]) == pytest.approx(-75.0)
    assert bd_psnr([1, 4], [30, 40], [0.5, 2], [35, 45]) == pytest.approx(10.0)


def test_hand_computed_two_point_case():
    # Two points: pchip is the straight line.  Anchor log-rate goes linearly from log 1 to log 2 over
    # 30..40 dB, the test from log 1 to log 4: mean Δ log R = (log 4 − log 2) / 2 = log √2.
    assert bd_rate([1, 2], [30, 40], [1, 4], [30, 40]) == pytest.approx((np.sqrt(2) - 1) * 100)
    # Over log R in [0, log 2]: the anchor rises 30→40, the test 30→35: mean Δ = −2.5 dB.
    assert bd_psnr([1, 2], [30, 40], [1, 4], [30, 40]) == pytest.approx(-2.5)


def test_order_of_points_does_not_matter_and_inverse_is_consistent():
    rng = np.random.default_rng(0)
    order = rng.permutation(len(RATE))
    test_rate, test_psnr = [RATE[i] * 0.9 for i in order], [PSNR[i] + 0.3 for i in order]
    a = bd_rate(RATE, PSNR, test_rate, test_psnr)
    assert a == pytest.approx(bd_rate(RATE, PSNR, sorted(test_rate), sorted(test_psnr)))
    b = bd_rate(test_rate, test_psnr, RATE, PSNR)
    # Swapping the roles over the same overlap gives the reciprocal factor.
    assert (1 + a / 100) * (1 + b / 100) == pytest.approx(1.0)
    assert a < 0


def test_no_overlap_and_bad_curves():
    with pytest.raises(NoOverlapError, match="do not overlap"):
        bd_rate([0.1, 0.2], [20, 22], [1, 2], [35, 38])
    with pytest.raises(NoOverlapError):
        bd_psnr([0.1, 0.2], [20, 22], [1, 2], [35, 38])
    with pytest.raises(ResultsError, match="at least 2 rate points"):
        bd_rate([0.5], [30], RATE, PSNR)
    with pytest.raises(ResultsError, match="same value"):
        bd_rate([0.5, 0.6, 0.7], [30, 30, 31], RATE, PSNR)
    with pytest.raises(ResultsError, match="positive"):
        bd_rate([0.0, 0.6], [30, 31], RATE, PSNR)


def curve(name, rate, psnr, published=False):
    return Curve(name, {"bpp": list(rate), "psnr-rgb": list(psnr)}, published=published)


def test_compare_table():
    anchor = curve("jpeg", RATE, PSNR)
    better = curve("mine", [r * 0.8 for r in RATE], PSNR)
    far = curve("tiny", [0.01, 0.02], [10, 12], published=True)
    rows = compare([anchor, better, far], anchor)
    assert rows[0]["bd_rate"] == pytest.approx(0.0) and rows[1]["bd_rate"] == pytest.approx(-20.0)
    assert rows[2]["bd_rate"] is None and rows[2]["bd_dist"] is None
    text = markdown_table(rows, "jpeg")
    lines = text.splitlines()
    assert lines[0] == "| curve | points | BD-rate vs jpeg | BD-PSNR (dB) vs jpeg |"
    assert "| mine | 6 | -20.0 % | " in text
    assert "| tiny (published) | 2 | no overlap | no overlap |" in text
    assert "tiny: no common quality range; no common rate range with jpeg" in text


def test_compare_leaves_a_delta_undefined_where_two_points_share_a_rate_or_a_quality():
    """Tiny images can give two qualities files of the same size: the report goes on, that curve's
    delta along the repeated axis is undefined (with a note), the other one is computed."""
    anchor = curve("jpeg", RATE, PSNR)
    same_rate = curve("tie", [0.3, 0.3, 0.6, 0.9], [30.0, 30.2, 32.0, 34.0])
    same_psnr = curve("flat", [0.3, 0.5, 0.9], [31.0, 31.0, 34.0])
    rows = compare([anchor, same_rate, same_psnr], anchor)
    tie, flat = rows[1], rows[2]
    assert tie["bd_dist"] is None and tie["bd_rate"] == pytest.approx(
        bd_rate(RATE, PSNR, [0.3, 0.3, 0.6, 0.9], [30.0, 30.2, 32.0, 34.0]))
    assert flat["bd_rate"] is None and flat["bd_dist"] == pytest.approx(bd_psnr(RATE, PSNR, [0.3, 0.5, 0.9], [31.0, 31.0, 34.0]))
    text = markdown_table(rows, "jpeg")
    assert f"| tie | 4 | {tie['bd_rate']:+.1f} % | undefined |" in text
    assert f"| flat | 3 | undefined | {flat['bd_dist']:+.2f} |" in text
    assert "- tie: two points at the same rate (0.3 bpp) with jpeg; its delta is undefined." in text
    assert "- flat: two points at the same quality (31 dB) with jpeg; its delta is undefined." in text


def test_compare_refuses_one_point_curves():
    anchor = curve("jpeg", RATE, PSNR)
    with pytest.raises(ResultsError, match="single: a curve needs at least 2"):
        compare([anchor, curve("single", [0.5], [30])], anchor)


def test_point_delta():
    from imgcodec.eval.bdrate import point_delta

    # On the straight anchor (1 bpp, 30 dB)–(4, 40) in (log R, PSNR): 35 dB costs 2 bpp, and 2 bpp gives 35 dB.
    d_rate, d_dist = point_delta([1, 4], [30, 40], 1.5, 35.0)
    assert d_rate == pytest.approx(-25.0)
    assert d_dist == pytest.approx(35.0 - (30 + 10 * np.log(1.5) / np.log(4)))
    assert point_delta([1, 4], [30, 40], 8.0, 45.0) == (None, None)  # outside the anchor's range


def test_compare_lists_curves_without_the_metric():
    anchor = Curve("jpeg", {"bpp": RATE, "psnr-rgb": PSNR, "ms-ssim-rgb-db": [10 + p / 4 for p in PSNR]}, False)
    published = curve("paper", RATE, PSNR, published=True)  # no MS-SSIM values
    rows = compare([anchor, published], anchor, "ms-ssim")
    assert rows[1]["missing"] and rows[1]["bd_rate"] is None
    text = markdown_table(rows, "jpeg", "ms-ssim")
    assert "| paper (published) | 0 | – | – |" in text and "Without ms-ssim values (–): paper." in text

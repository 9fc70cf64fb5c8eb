"""Kaplan–Meier, Greenwood, median CI and log-rank on cases checked by hand and against the textbook."""

import math

import numpy as np
import pytest

from nnp.md.survival import kaplan_meier, logrank_test, median_survival, stratified_logrank_test, summarize

# Freireich et al. (1963) leukaemia remission times (weeks), the Kaplan–Meier example of most textbooks
# (e.g. Kleinbaum & Klein, Survival Analysis, ch. 2). Censored times marked False.
MP6 = [(6, True), (6, True), (6, True), (6, False), (7, True), (9, False), (10, True), (10, False), (11, False),
       (13, True), (16, True), (17, False), (19, False), (20, False), (22, True), (23, True), (25, False),
       (32, False), (32, False), (34, False), (35, False)]
PLACEBO = [(t, True) for t in (1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23)]


def split(rows):
    return [t for t, _ in rows], [e for _, e in rows]


def test_kaplan_meier_by_hand():
    # durations 1 2 2+ 3 4+: S(1) = 4/5; at t=2 four at risk (2, 2+, 3, 4+), one collapse: 0.8*3/4;
    # at t=3 two at risk (3, 4+), one collapse: 0.6/2. The censored 2+ is at risk at 2 but no collapse.
    km = kaplan_meier([1, 2, 2, 3, 4], [True, True, False, True, False])
    np.testing.assert_array_equal(km.times, [1, 2, 3])
    np.testing.assert_array_equal(km.at_risk, [5, 4, 2])
    np.testing.assert_allclose(km.survival, [0.8, 0.6, 0.3])
    # Greenwood at t=3: 0.3^2 (1/(5*4) + 1/(4*3) + 1/(2*1))
    assert km.variance[-1] == pytest.approx(0.09 * (1 / 20 + 1 / 12 + 1 / 2))
    np.testing.assert_allclose(km.at([0.5, 1, 2.5, 3, 10]), [1.0, 0.8, 0.6, 0.3, 0.3])
    median, lower, upper = median_survival(km)
    assert median == 3.0  # first time with S <= 0.5
    # no collapse at all: S = 1, no median, and censored runs are not drawn as collapses
    none = kaplan_meier([5, 5, 5], [False, False, False])
    assert len(none.times) == 0 and median_survival(none) == (None, None, None)


def test_kaplan_meier_textbook_6mp():
    km = kaplan_meier(*split(MP6))
    np.testing.assert_array_equal(km.times, [6, 7, 10, 13, 16, 22, 23])
    np.testing.assert_array_equal(km.at_risk, [21, 17, 15, 12, 11, 7, 6])
    np.testing.assert_allclose(km.survival, [0.8571, 0.8067, 0.7529, 0.6902, 0.6275, 0.5378, 0.4482], atol=5e-5)
    np.testing.assert_allclose(np.sqrt(km.variance), [0.0764, 0.0869, 0.0963, 0.1068, 0.1141, 0.1282, 0.1346],
                               atol=5e-5)
    # median 23 weeks; log-log CI: lower band first <= 0.5 at 13 (0.432; at 10 it is 0.503), upper band never
    # (0.68 at 23): (13, NA), as R's survfit(conf.type = "log-log")
    assert median_survival(km) == (23.0, 13.0, None)
    lower, upper = km.band()
    s, g = km.survival[3], km.greenwood[3]
    sigma = math.sqrt(g) / abs(math.log(s))
    assert lower[3] == pytest.approx(s ** math.exp(1.959964 * sigma)) and lower[3] == pytest.approx(0.4316, abs=1e-3)
    assert lower[2] == pytest.approx(0.503, abs=1e-3)
    summary = summarize(*split(MP6))
    assert summary["median_ps"] == 23.0 and summary["median_ci_ps"] == [13.0, None] and summary["collapses"] == 9


def test_logrank_textbook_6mp_vs_placebo():
    result = logrank_test(*split(MP6), *split(PLACEBO))
    assert result.observed == (9.0, 21.0)
    assert result.expected[0] == pytest.approx(19.25, abs=0.01) and result.expected[1] == pytest.approx(10.75, abs=0.01)
    assert result.chi2 == pytest.approx(16.79, abs=0.01)  # R: survdiff -> Chisq = 16.8 on 1 df, p = 4.17e-05
    assert result.p_value == pytest.approx(4.17e-5, rel=0.01)
    same = logrank_test(*split(MP6), *split(MP6))
    assert same.chi2 == pytest.approx(0.0) and same.p_value == pytest.approx(1.0)


def test_stratified_logrank_sums_within_strata():
    """Two copies of one stratum double O − E and its variance, so chi2 doubles; and a difference that pooling
    invents from unbalanced strata (Simpson) is absent when each stratum compares like with like."""
    one = stratified_logrank_test([(*split(MP6), *split(PLACEBO))])
    assert one == logrank_test(*split(MP6), *split(PLACEBO))
    two = stratified_logrank_test([(*split(MP6), *split(PLACEBO))] * 2)
    assert two.chi2 == pytest.approx(2 * one.chi2) and two.observed == (18.0, 42.0)
    # stratum 1: every run of both groups collapses at 1 ps (A has 4 runs, B 1); stratum 2: none does (A 1, B 4)
    strata = [([1.0] * 4, [True] * 4, [1.0], [True]), ([10.0], [False], [10.0] * 4, [False] * 4)]
    assert stratified_logrank_test(strata).chi2 == pytest.approx(0.0)
    pooled = logrank_test([1.0] * 4 + [10.0], [True] * 4 + [False], [1.0] + [10.0] * 4, [True] + [False] * 4)
    # by hand: at 1 ps 10 at risk, 5 collapses, 5 of A at risk: E = 2.5, O = 4, V = 5·5·5·5 / (100·9)
    assert pooled.chi2 == pytest.approx(1.5 ** 2 / (625 / 900))
    with pytest.raises(ValueError, match="at least one stratum"):
        stratified_logrank_test([])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one length"):
        kaplan_meier([1, 2], [True])
    with pytest.raises(ValueError, match="finite"):
        kaplan_meier([1, float("nan")], [True, True])

"""Survival analysis of MD stability: Kaplan–Meier, median stable time with a CI, log-rank test.

A trajectory is a duration (time until collapse, or until the run stopped) and an event flag
(``collapsed``: True for a collapse, False for a censored run that was still stable when it stopped).
Censored runs count as "at risk" up to their stopping time and never as collapses.

* Kaplan–Meier: ``S(t) = prod_{t_i <= t} (1 - d_i / n_i)`` over distinct collapse times ``t_i`` with
  ``d_i`` collapses and ``n_i`` trajectories at risk (duration >= t_i; collapses at a time come before
  censorings at the same time). Greenwood: ``Var S(t) = S(t)^2 sum_{t_i <= t} d_i / (n_i (n_i - d_i))``.
* Median: the smallest ``t`` with ``S(t) <= 0.5`` (None when the curve never reaches 0.5). Its CI is
  Brookmeyer–Crowley's: the times whose log-log pointwise interval for ``S`` contains 0.5, i.e.
  lower = first ``t`` where the lower band ``<= 0.5``, upper = first ``t`` where the upper band ``<= 0.5``
  (as R's ``survfit(conf.type = "log-log")``). The band is ``S^exp(±z σ)``, ``σ = sqrt(Σ d/(n(n-d))) / |log S|``.
* Log-rank (Mantel–Haenszel) test of two groups: chi-square with 1 degree of freedom; stratified, the
  observed − expected collapses and their variances summed over strata before the chi-square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np


@dataclass
class KaplanMeier:
    times: np.ndarray  # distinct collapse times
    at_risk: np.ndarray  # n_i
    events: np.ndarray  # d_i
    survival: np.ndarray  # S just after each time
    greenwood: np.ndarray  # cumulative sum of d / (n (n - d)) (inf once S = 0)
    durations: np.ndarray  # the input, for plotting censored marks
    collapsed: np.ndarray

    @property
    def variance(self) -> np.ndarray:
        """Greenwood variance of S at ``times``."""
        with np.errstate(invalid="ignore"):
            return np.where(self.survival > 0, self.survival ** 2 * self.greenwood, 0.0)

    def at(self, t: float | np.ndarray) -> np.ndarray:
        """S(t) (right-continuous step function)."""
        index = np.searchsorted(self.times, np.asarray(t, dtype=float), side="right")
        return np.concatenate([[1.0], self.survival])[index]

    def band(self, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise log-log confidence band (lower, upper) of S at ``times``."""
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        lower, upper = np.zeros_like(self.survival), np.zeros_like(self.survival)
        for k, (s, g) in enumerate(zip(self.survival, self.greenwood)):
            if s >= 1.0:
                lower[k] = upper[k] = 1.0
            elif s > 0.0 and math.isfinite(g):
                sigma = math.sqrt(g) / abs(math.log(s))
                lower[k], upper[k] = s ** math.exp(z * sigma), s ** math.exp(-z * sigma)
        return lower, upper


def _check(durations: Sequence[float], collapsed: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(durations, dtype=float)
    e = np.asarray(collapsed, dtype=bool)
    if d.ndim != 1 or d.shape != e.shape or len(d) == 0:
        raise ValueError(f"durations and collapsed must be non-empty 1-D sequences of one length, got {d.shape} and {e.shape}")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("durations must be finite and >= 0")
    return d, e


def kaplan_meier(durations: Sequence[float], collapsed: Sequence[bool]) -> KaplanMeier:
    """Kaplan–Meier estimate with Greenwood's variance terms."""
    d, e = _check(durations, collapsed)
    times = np.unique(d[e])
    at_risk = np.array([(d >= t).sum() for t in times], dtype=float)
    events = np.array([(e & (d == t)).sum() for t in times], dtype=float)
    survival = np.cumprod(1.0 - events / at_risk)
    with np.errstate(divide="ignore"):
        greenwood = np.cumsum(np.where(at_risk > events, events / (at_risk * (at_risk - events)), np.inf))
    return KaplanMeier(times, at_risk, events, survival, greenwood, d, e)


def median_survival(km: KaplanMeier, confidence: float = 0.95) -> tuple[float | None, float | None, float | None]:
    """(median, lower, upper); None where the curve (or band) never reaches 0.5 (e.g. too few collapses)."""
    def first_at_or_below(values: np.ndarray) -> float | None:
        hit = np.flatnonzero(values <= 0.5)
        return float(km.times[hit[0]]) if len(hit) else None

    lower_band, upper_band = km.band(confidence)
    return first_at_or_below(km.survival), first_at_or_below(lower_band), first_at_or_below(upper_band)


@dataclass
class LogRank:
    chi2: float
    p_value: float
    observed: tuple[float, float]
    expected: tuple[float, float]


def _logrank_terms(durations_a: Sequence[float], collapsed_a: Sequence[bool], durations_b: Sequence[float],
                   collapsed_b: Sequence[bool]) -> tuple[float, float, float, float]:
    """Group a's observed and expected collapses, the variance of their difference, all collapses."""
    da, ea = _check(durations_a, collapsed_a)
    db, eb = _check(durations_b, collapsed_b)
    times = np.unique(np.concatenate([da[ea], db[eb]]))
    observed_a = expected_a = variance = 0.0
    for t in times:
        na, nb = float((da >= t).sum()), float((db >= t).sum())
        oa, ob = float((ea & (da == t)).sum()), float((eb & (db == t)).sum())
        n, o = na + nb, oa + ob
        observed_a += oa
        expected_a += o * na / n
        if n > 1:
            variance += na * nb * o * (n - o) / (n * n * (n - 1))
    return observed_a, expected_a, variance, float(ea.sum() + eb.sum())


def stratified_logrank_test(strata: Sequence[tuple[Sequence[float], Sequence[bool], Sequence[float], Sequence[bool]]]
                            ) -> LogRank:
    """Log-rank test of two groups compared within strata (e.g. one stratum per seed, whose two groups share a
    split): observed − expected and its variance summed over the strata, chi-square with 1 degree of freedom.
    One stratum is the plain log-rank test."""
    if not strata:
        raise ValueError("stratified_logrank_test needs at least one stratum")
    observed_a, expected_a, variance, total = (sum(values) for values in zip(*(_logrank_terms(*s) for s in strata)))
    if variance == 0.0:
        chi2, p = 0.0, 1.0  # no collapse in either group (or nothing to compare)
    else:
        chi2 = (observed_a - expected_a) ** 2 / variance
        p = math.erfc(math.sqrt(chi2 / 2.0))  # chi-square survival function, 1 degree of freedom
    return LogRank(chi2, p, (observed_a, total - observed_a), (expected_a, total - expected_a))


def logrank_test(durations_a: Sequence[float], collapsed_a: Sequence[bool],
                 durations_b: Sequence[float], collapsed_b: Sequence[bool]) -> LogRank:
    """Log-rank test that two groups of trajectories share one survival curve."""
    return stratified_logrank_test([(durations_a, collapsed_a, durations_b, collapsed_b)])


def summarize(durations: Sequence[float], collapsed: Sequence[bool], confidence: float = 0.95) -> dict:
    """JSON-ready KM summary: median stable time with its CI, counts, the curve itself."""
    km = kaplan_meier(durations, collapsed)
    median, lower, upper = median_survival(km, confidence)
    return {"n": int(len(km.durations)), "collapses": int(km.collapsed.sum()),
            "median_ps": median, "median_ci_ps": [lower, upper], "confidence": confidence,
            "ci_method": "Brookmeyer-Crowley, log-log Greenwood band",
            "curve": {"time_ps": km.times.tolist(), "survival": km.survival.tolist(),
                      "at_risk": km.at_risk.tolist(), "collapses": km.events.tolist()}}

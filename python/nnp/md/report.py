"""Reports of the stability runs: tables, the two-model comparison, the ensemble deviation record."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .protocol import Protocol


def record_deviation(trajectories: list, protocol: Protocol, summary: dict, output_dir: Path) -> Path:
    """Ensemble runs: deviation traces (deviation.npz), first crossing of the trust level, plot."""
    from ..plotting import plot_deviation
    from .deviation import COLUMNS, crossing_summary

    traces = {t.index: np.array(t.deviation).reshape(-1, len(COLUMNS)) for t in trajectories}
    np.savez(output_dir / "deviation.npz", columns=np.array(COLUMNS),
             **{f"trajectory_{k}": trace for k, trace in traces.items()})
    for entry, t in zip(summary["trajectories"], trajectories):
        entry.update(crossing_summary(traces[t.index], protocol.deviation_threshold, protocol.timestep_fs,
                                      t.collapsed, t.steps))
    ps = protocol.timestep_fs / 1000.0
    max_f = COLUMNS.index("max_devi_f")
    return plot_deviation({t.index: (traces[t.index][:, 0] * ps, traces[t.index][:, max_f]) for t in trajectories},
                          {t.index: t.time_ps if t.collapsed else None for t in trajectories},
                          protocol.deviation_threshold, output_dir / "deviation.png")


def format_stability_table(summary: dict) -> str:
    lines = [f"{'traj':>5}{'time (ps)':>12}  outcome"]
    for t in summary["trajectories"]:
        lines.append(f"{t['index']:>5}{t['time_ps']:>12.2f}  {t['reason']}")
        if "deviation_threshold" in t:
            crossed = ("never" if t["first_exceeds_step"] is None else
                       f"at step {t['first_exceeds_step']} ({t['first_exceeds_ps']:.3f} ps)")
            lead = t["warning_steps_before_collapse"]
            lines.append(f"{'':>17}max_devi_f > {t['deviation_threshold']:g} eV/Å {crossed}"
                         + ("" if lead is None else f", {lead} steps before collapse"))
    lines.append(f"median {summary['median_time_ps']:.2f} ps (min {summary['min_time_ps']:.2f}, "
                 f"max {summary['max_time_ps']:.2f}); stable for the full run: {100 * summary['stable_fraction']:.0f}%")
    return "\n".join(lines)


def format_median(km: dict) -> str:
    """One line: median stable time and its CI, 'not reached' where the curve (or band) stays above 0.5."""
    def fmt(value: float | None) -> str:
        return "not reached" if value is None else f"{value:.3f} ps"

    lower, upper = km["median_ci_ps"]
    return (f"Kaplan-Meier median stable time {fmt(km['median_ps'])}, 95% CI [{fmt(lower)}, {fmt(upper)}]; "
            f"{km['collapses']}/{km['n']} collapsed, the others censored")


def format_replica_table(summary: dict) -> str:
    lines = [f"{'traj':>5}{'seed':>7}{'stable (ps)':>13}  outcome"]
    for t in summary["trajectories"]:
        lines.append(f"{t['index']:>5}{t['seed']:>7}{t['stable_ps']:>13.3f}  {t['reason']}")
    h_r = f"; h(r) error {summary['h_r_mae']:.4f} ({summary['h_r_frames']} frames)" if "h_r_mae" in summary else ""
    lines.append(format_median(summary["kaplan_meier"]) + h_r + f"; wall {summary['wall_s']:.1f} s")
    return "\n".join(lines)


def stable_times(summary: dict) -> tuple[list[float], list[bool]]:
    """Stable time (ps) and collapse flag of every trajectory of a ``stability.json`` (replica runs and single
    runs; files written before single runs named the time ``stable_ps`` name it ``time_ps``)."""
    rows = summary["trajectories"]
    return [r.get("stable_ps", r.get("time_ps")) for r in rows], [bool(r["collapsed"]) for r in rows]


def compare_stability(summary_a: dict, summary_b: dict, path: str | Path | None = None) -> dict:
    """Log-rank test between two stability summaries (``stability.json``); optionally plot both KM curves."""
    from .survival import kaplan_meier, logrank_test

    (da, ea), (db, eb) = stable_times(summary_a), stable_times(summary_b)
    test = logrank_test(da, ea, db, eb)
    result = {"models": [summary_a["model"], summary_b["model"]], "logrank_chi2": test.chi2,
              "logrank_p": test.p_value, "collapses_observed": list(test.observed),
              "collapses_expected": list(test.expected)}
    if path is not None:
        from ..plotting import plot_kaplan_meier

        names = [Path(summary_a["model"]).name, Path(summary_b["model"]).name]
        if names[0] == names[1]:
            names = [summary_a["model"], summary_b["model"]]
        total = max(summary_a["protocol"]["time_ps"], summary_b["protocol"]["time_ps"])
        curves = {names[0]: kaplan_meier(da, ea), names[1]: kaplan_meier(db, eb)}
        result["plot"] = str(plot_kaplan_meier(curves, total, Path(path)))
    return result

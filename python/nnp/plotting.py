"""Plots a person would rather look at than read (headless matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Training/validation loss and validation errors against epoch."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].semilogy(epochs, [r["train_loss"] for r in history], label="train")
    axes[0].semilogy(epochs, [r["val_loss"] for r in history], label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0].legend()
    for ax, key, unit in ((axes[1], "energy_per_atom", "meV/atom"), (axes[2], "forces", "meV/Å")):
        for stat in ("mae", "rmse"):
            values = [1000 * r.get(f"val_{key}_{stat}", float("nan")) for r in history]
            ax.semilogy(epochs, values, label=stat.upper())
        ax.set(xlabel="epoch", ylabel=unit, title=f"validation {key.replace('_', ' ')}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_analysis(curves: dict, output_dir: Path) -> list[Path]:
    """Latent projections coloured by environment, and force-smoothness distributions."""

    paths = []
    labels = np.asarray(curves["labels"])
    names = list(curves["projections"])
    if names:
        fig, axes = plt.subplots(2, len(names), figsize=(4.5 * len(names), 8), squeeze=False)
        for col, name in enumerate(names):
            proj = curves["projections"][name]
            sub = labels[proj["index"]]
            for row, key in enumerate(("pca", "tsne")):
                ax = axes[row][col]
                for label in sorted(set(sub)):
                    pts = proj[key][sub == label]
                    ax.scatter(pts[:, 0], pts[:, 1], s=4, label=label)
                ax.set_title(f"{name}: {key.upper()}")
                ax.set_xticks([])
                ax.set_yticks([])
        axes[0][-1].legend(fontsize=6, markerscale=2, loc="best")
        fig.tight_layout()
        paths.append(output_dir / "latent_projections.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    if curves["smoothness"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, values in curves["smoothness"].items():
            ax.hist(values, bins=30, histtype="step", density=True, label=name)
        ax.set(xlabel="|ΔF| / |Δx| (eV/Å²)", ylabel="density", title="local force smoothness")
        ax.legend()
        fig.tight_layout()
        paths.append(output_dir / "force_smoothness.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def plot_survival(times: dict[str, list[float]], total_ps: float, path: Path) -> Path:
    """Fraction of trajectories still stable against time, one curve per model."""

    fig, ax = plt.subplots(figsize=(6, 4))
    grid = np.linspace(0, total_ps, 200)
    for name, values in times.items():
        values = np.asarray(values)
        ax.step(grid, [(values > t).mean() for t in grid], where="post", label=name)
    ax.set(xlabel="time (ps)", ylabel="fraction stable", ylim=(-0.02, 1.02), title="MD stability")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_kaplan_meier(curves: dict, total_ps: float, path: Path, confidence: float = 0.95,
                      colours: dict[str, str] | None = None) -> Path:
    """Kaplan–Meier survival curves (steps), their log-log confidence bands, censored runs marked '+'.

    ``curves``: name -> ``nnp.md.survival.KaplanMeier`` (made by the caller: plotting imports nothing of md);
    ``colours``: name -> matplotlib colour, for curves that other plots show in a fixed colour.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, km in curves.items():
        t = np.concatenate([[0.0], km.times, [max(total_ps, float(km.durations.max()))]])
        s = np.concatenate([[1.0], km.survival, km.survival[-1:] if len(km.times) else [1.0]])
        (line,) = ax.step(t, s, where="post", color=(colours or {}).get(name),
                          label=f"{name} (n={len(km.durations)}, {int(km.events.sum())} collapsed)")
        if len(km.times):
            lower, upper = km.band(confidence)
            ax.fill_between(t, np.concatenate([[1.0], lower, lower[-1:]]), np.concatenate([[1.0], upper, upper[-1:]]),
                            step="post", alpha=0.15, color=line.get_color())
        censored = km.durations[~km.collapsed]
        ax.plot(censored, km.at(censored), "+", ms=10, mew=1.5, color=line.get_color())
    ax.set(xlabel="time (ps)", ylabel="fraction stable (Kaplan–Meier)", ylim=(-0.02, 1.05), xlim=(0, None),
           title=f"MD stability, {int(100 * confidence)}% log-log bands, + censored")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_overlay(x, curves: dict[str, np.ndarray], xlabel: str, ylabel: str, path: Path) -> Path:
    """Several curves (RDFs, h(r)) on one axis."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, y in curves.items():
        ax.plot(x, y, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_deviation(traces: dict, collapse_ps: dict, threshold: float, path: Path) -> Path:
    """Ensemble force deviation (max over atoms) against time per trajectory, collapse marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (time_ps, max_devi_f) in traces.items():
        (line,) = ax.plot(time_ps, max_devi_f, lw=0.8, label=f"trajectory {name}")
        if collapse_ps.get(name) is not None:
            ax.axvline(collapse_ps[name], color=line.get_color(), ls="--", lw=0.8)
            ax.plot([collapse_ps[name]], [threshold], marker="x", color=line.get_color(), ms=8)
    ax.axhline(threshold, color="k", ls=":", lw=1, label=f"trust level {threshold:g} eV/Å")
    ax.set_yscale("log")
    ax.set(xlabel="time (ps)", ylabel="max force deviation (eV/Å)",
           title="ensemble model deviation (dashed: collapse)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

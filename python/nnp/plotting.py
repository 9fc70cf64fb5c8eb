"""Plots a person would rather look at than read (headless matplotlib)."""

from __future__ import annotations

from pathlib import Path

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

"""Pictures: the predicted phase timeline and saliency overlays (matplotlib, imported when drawing)."""

import textwrap
from pathlib import Path


def plot_timeline(path: Path, labels: list[str], rows, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    starts = np.array([r[0] for r in rows])
    ends = np.array([r[1] for r in rows])
    probs = np.array([r[2] for r in rows])  # (T, C)
    predicted = probs.argmax(axis=1)
    cmap = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    fig, (ax_bar, ax_prob) = plt.subplots(
        2, 1, figsize=(10, 1.6 + 0.25 * len(labels)), sharex=True, gridspec_kw={"height_ratios": [1, 3]}
    )
    for start, end, cls in zip(starts, ends, predicted):
        ax_bar.axvspan(start, max(end, start + 1e-3), color=cmap(cls % cmap.N), linewidth=0)
    ax_bar.set_yticks([])
    ax_bar.set_title(title, fontsize=9)
    handles = [matplotlib.patches.Patch(color=cmap(i % cmap.N), label=label) for i, label in enumerate(labels)]
    ax_bar.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    edges = np.append(starts, ends[-1] if len(ends) else 0.0)
    ax_prob.pcolormesh(edges, np.arange(len(labels) + 1), probs.T, cmap="viridis", vmin=0, vmax=1, shading="flat")
    ax_prob.set_yticks(np.arange(len(labels)) + 0.5, labels, fontsize=7)
    ax_prob.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _save_overlay(path: Path, image, heatmap, title: str, alpha: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    axes[0].imshow(image)
    axes[0].set_title("frame", fontsize=8)
    axes[1].imshow(image)
    axes[1].imshow(heatmap, cmap="jet", alpha=alpha, vmin=0, vmax=1)
    axes[1].set_title("saliency", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(textwrap.fill(title, 90), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

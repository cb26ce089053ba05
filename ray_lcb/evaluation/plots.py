"""The classic needle-in-a-haystack heatmap, drawn with matplotlib alone.

Mirrors gkamradt's ``CreateVizFromLLMTesting`` notebook (which uses seaborn):
mean score pivoted with depth as rows and context length as columns, a
red -> yellow -> green colour map (#F0496E, #EBB839, #0CD79F), axes "Token
Limit" x "Depth Percent", x ticks rotated 45 degrees. Called by the runner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NIAH_COLORS = ["#F0496E", "#EBB839", "#0CD79F"]


def score_grid(cells: list[dict]) -> tuple[list[int], list[float], np.ndarray]:
    """Mean score per (depth, length) from ``{"length", "depth", "score"}`` cells; NaN where none scored.

    Returns:
        (lengths, depths, grid) with ``grid`` of shape [num_depths, num_lengths].
    """
    lengths = sorted({c["length"] for c in cells})
    depths = sorted({c["depth"] for c in cells})
    sums = np.zeros((len(depths), len(lengths)))
    counts = np.zeros_like(sums)
    for cell in cells:
        if cell["score"] is None:
            continue
        i, j = depths.index(cell["depth"]), lengths.index(cell["length"])
        sums[i, j] += cell["score"]
        counts[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return lengths, depths, grid


def plot_niah_heatmap(cells: list[dict], path: str | Path, *, model_name: str, vmax: float = 100.0) -> Path:
    """Write the heatmap PNG of ``cells`` (scores on 0..vmax) to ``path`` and return the path."""
    # A bare Figure, not pyplot: works without a display and switches no backend in the caller.
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure

    lengths, depths, grid = score_grid(cells)
    mean = float(np.nanmean(grid)) if np.isfinite(grid).any() else float("nan")
    # Grey marks cells without a usable score.
    cmap = LinearSegmentedColormap.from_list("niah", NIAH_COLORS).with_extremes(bad="#D3D3D3")

    fig = Figure(figsize=(17.5, 8))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
    fig.colorbar(image, ax=ax, label="Score")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths], rotation=45, ha="right")
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    ax.set_xticks(np.arange(-0.5, len(lengths)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(depths)), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("Token Limit")
    ax.set_ylabel("Depth Percent")
    ax.set_title(f'Pressure Testing {model_name}\nFact Retrieval Across Context Lengths ("Needle In A HayStack")'
                 f" - mean score {mean:.1f}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path

"""Training curves: one row of measures per round (or iteration), written as
``curve.csv`` and drawn as ``curve.png`` (one figure per :class:`Panel`), for every
distillation method and for expert iteration; and the rows as TensorBoard scalars.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Panel:
    """One figure of ``curve.png``: columns against column ``x``.

    Attributes:
        x: the column along the horizontal axis.
        xlabel: its label.
        ylabel: the vertical axis' label.
        keys: the columns drawn: a name, or a prefix ending in ``_`` (``score_vs_``).
        ylim: the vertical axis' range (``None``: fitted to the data).
        twin: a column drawn dashed on a second vertical axis, if the rows have it.
        twin_label: that axis' label.
        legend: where the legend goes.
    """

    x: str
    xlabel: str
    ylabel: str
    keys: tuple[str, ...]
    ylim: tuple[float, float] | None = (0.0, 1.02)
    twin: str | None = None
    twin_label: str = ""
    legend: str = "lower right"

    def drawn(self, column: str) -> bool:
        """Whether the panel draws ``column``."""
        return any(column == k or (k.endswith("_") and column.startswith(k))
                   for k in self.keys)


def columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every column of ``rows``, in the order they first appear."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return list(keys)


def write_curve(directory: Path, rows: Sequence[dict[str, Any]], panels: Sequence[Panel],
                name: str = "curve") -> None:
    """``NAME.csv`` (a row a round; a column a row lacks is left empty) and
    ``NAME.png`` (the panels side by side) in ``directory``; nothing without rows."""
    if not rows:
        return
    keys = columns(rows)
    with open(directory / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 + 4 * (len(panels) - 1), 4),
                             squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        x = [r.get(panel.x, float("nan")) for r in rows]
        for key in keys:
            if panel.drawn(key):
                ax.plot(x, [r.get(key, float("nan")) for r in rows], marker="o",
                        label=key.removeprefix("p_") if panel.keys == ("p_",) else key)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        if panel.ylim is not None:
            ax.set_ylim(*panel.ylim)
        ax.grid(alpha=0.3)
        ax.legend(loc=panel.legend, fontsize=7)
        if panel.twin is not None and panel.twin in keys:
            twin = ax.twinx()
            twin.plot(x, [r.get(panel.twin, float("nan")) for r in rows], color="black",
                      ls="--", label=panel.twin.replace("_", " "))
            twin.set_ylabel(panel.twin_label)
            twin.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(directory / f"{name}.png", dpi=100)
    plt.close(fig)


def write_scalars(log_dir: Path, rows: Sequence[dict[str, Any]], step: str,
                  skip: Sequence[str] = ()) -> None:
    """Every numeric column of ``rows`` but ``step`` and ``skip`` as TensorBoard scalars
    against ``step``."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    for row in rows:
        for key, value in row.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and key != step and key not in skip:
                writer.add_scalar(key, value, row[step])
    writer.close()

"""``--plot``: the report as a grouped bar chart (matplotlib, part of ``memreranker[eval]``)."""

from __future__ import annotations

import os
from pathlib import Path

from memreranker.eval.metrics import METRICS
from memreranker.eval.report import Report


def check_plot_path(path: str | os.PathLike[str]) -> None:
    """``ValueError`` unless a chart can be written at ``path`` (its directory exists and
    is writable, it is not a directory, matplotlib knows its format): checked before an
    evaluation, not found out after it."""
    target = Path(path)
    where = f"cannot write the plot {os.fspath(path)}"
    if target.is_dir():
        raise ValueError(f"{where}: it is a directory")
    folder = target.parent
    if not folder.is_dir():
        raise ValueError(f"{where}: no such directory {folder}")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{where}: the directory {folder} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"{where}: the file is not writable")
    suffix = target.suffix.lower().removeprefix(".")
    if suffix:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        if suffix not in formats:
            raise ValueError(
                f"{where}: unknown image format .{suffix} (use one of "
                f"{', '.join('.' + f for f in sorted(formats))})"
            )


def plot_report(report: Report, path: str | os.PathLike[str]) -> None:
    """Write a PNG (or any format matplotlib infers from the suffix): one group of bars per
    metric, one bar per system. F1 has no bar for the first stage, which has no scores.
    A calibrated report gets a second panel: each reranker's precision, recall and F1
    against the threshold, its F1-best threshold marked."""
    # Figure without pyplot: no global backend or GUI, safe in threads and notebooks alike.
    from matplotlib.figure import Figure

    names = list(report.systems)
    width = 0.8 / len(names)
    calibrations = report.calibrations
    wide = max(8.0, 1.1 * len(METRICS) * max(1, len(names)) * 0.5)
    fig = Figure(figsize=(wide, 9.0 if calibrations else 4.5))
    ax = fig.add_subplot(2, 1, 1) if calibrations else fig.add_subplot()
    for k, name in enumerate(names):
        values = report.systems[name].metrics
        xs = [i + (k - (len(names) - 1) / 2) * width for i, m in enumerate(METRICS)
              if values[m] is not None]
        ys = [values[m] for m in METRICS if values[m] is not None]
        ax.bar(xs, ys, width=width, label=name)
    ax.set_xticks(range(len(METRICS)), list(METRICS))
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("score")
    ax.set_title(
        f"{os.path.basename(report.dataset)}: {report.queries} queries, "
        f"candidates: {report.first_stage}"
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(len(names), 4),
              frameon=False)
    if calibrations:
        ax = fig.add_subplot(2, 1, 2)
        styles = (("precision", 1, ":"), ("recall", 2, "--"), ("F1", 3, "-"))
        for name, cal in calibrations.items():
            color = f"C{names.index(name)}"  # the colour of the reranker's bars above
            step = max(1, len(cal.curve) // CURVE_POINTS)
            curve = list(cal.curve[::step])
            if cal.curve and curve[-1] != cal.curve[-1]:
                curve.append(cal.curve[-1])
            xs = [point[0] for point in curve]
            for label, column, style in styles:
                ax.plot(xs, [point[column] for point in curve], style, color=color,
                        label=f"{name} {label}")
            if cal.threshold is not None:
                ax.axvline(cal.threshold, color=color, alpha=0.4)
                ax.annotate(f"F1 {cal.f1:.2f} at >= {cal.threshold:.3f}",
                            (cal.threshold, cal.f1), textcoords="offset points", xytext=(4, 4),
                            color=color, fontsize=8)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.05)
        ax.set_xlabel("threshold (score_threshold: P(yes) at or above it is kept)")
        ax.set_ylabel("pooled over pairs")
        ax.set_title("calibration: precision, recall and F1 against the threshold")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, frameon=False,
                  fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120)


CURVE_POINTS = 2000
"""At most about this many thresholds per calibration curve are drawn (a LOCOMO sweep has
~10^6)."""

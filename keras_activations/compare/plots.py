"""PNG figures of a comparison (matplotlib, Agg backend: no display needed)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402


def _finish(fig, ax, path):
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", ncol=2)
    else:
        ax.text(0.5, 0.5, "nothing to show for these activations",
                ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def loss_curves(rows, path):
    """Training (solid) and validation (dashed) loss per epoch, one color per activation.

    Args:
        rows: Report rows (see `report.result_row`).
        path: Where to write the PNG.

    Returns:
        `path`.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, row in enumerate(rows):
        color = f"C{i % 10}"
        train = row["history"].get("loss", [])
        val = row["history"].get("val_loss", [])
        epochs = range(1, len(train) + 1)
        ax.plot(epochs, train, color=color, label=row["activation"])
        if val:
            ax.plot(range(1, len(val) + 1), val, color=color, linestyle="--")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (solid: train, dashed: validation)")
    ax.set_yscale("log")
    ax.set_title("Loss curves")
    return _finish(fig, ax, path)


def by_depth(rows, field, path, ylabel, title, log=False):
    """A monitor field (mean over training) against layer depth, one line per activation.

    Args:
        rows: Report rows (see `report.result_row`).
        field: A field of `by_depth`, e.g. `"gradient_norm"`.
        path: Where to write the PNG.
        ylabel: Y axis label.
        title: Figure title.
        log: Log-scale y axis.

    Returns:
        `path`.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, row in enumerate(rows):
        points = [
            (e["depth"], e[field])
            for e in row["by_depth"]
            if e.get(field) is not None and (not log or e[field] > 0)
        ]
        if not points:
            continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", color=f"C{i % 10}", label=row["activation"])
    ax.set_xlabel("hidden layer (0 = next to the input)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    return _finish(fig, ax, path)


def write_all(rows, out_dir):
    """Writes loss_curves.png, gradient_norm_by_depth.png and dead_fraction_by_depth.png.

    Args:
        rows: Report rows.
        out_dir: Output directory.

    Returns:
        A dict figure name -> path.
    """
    import os

    return {
        "loss_curves": loss_curves(rows, os.path.join(out_dir, "loss_curves.png")),
        "gradient_norm_by_depth": by_depth(
            rows,
            "gradient_norm",
            os.path.join(out_dir, "gradient_norm_by_depth.png"),
            "gradient norm (mean over training)",
            "Gradient norm against depth",
            log=True,
        ),
        "dead_fraction_by_depth": by_depth(
            rows,
            "dead_fraction",
            os.path.join(out_dir, "dead_fraction_by_depth.png"),
            "dead fraction (mean over training)",
            "Dead units against depth",
        ),
    }

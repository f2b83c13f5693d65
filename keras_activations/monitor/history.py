"""Records of `GradientMonitor` as rows, CSV and text tables.

The record layout is the contract in docs/CONTRACTS.md ("GradientMonitor
history"): `step`, `epoch`, `steps`, `global_norm`, `variables` and `layers`;
records are unpacked by `figures.RecordProgram.record`.
"""

import csv

from keras_activations.monitor.record import LAYER_SCALARS

# The CSV columns: the record's per-layer scalars (`record.LAYER_SCALARS`),
# with the layer's units after its gradient and weight figures.
_UNITS_AT = LAYER_SCALARS.index("dead_units")
ROW_KEYS = (
    ("step", "epoch", "layer", "depth")
    + LAYER_SCALARS[:_UNITS_AT]
    + ("units",)
    + LAYER_SCALARS[_UNITS_AT:]
    + ("global_norm",)
)


def to_rows(history):
    """Flattens records into one dict per (record, layer).

    Args:
        history: A list of records (`GradientMonitor.history`).

    Returns:
        A list of dicts with the keys of `ROW_KEYS`.

    Example:

    >>> rows = to_rows(monitor.history)
    >>> rows[0]["dead_fraction"]
    0.0
    """
    rows = []
    for record in history:
        for name, layer in record["layers"].items():
            row = {key: layer.get(key) for key in ROW_KEYS}
            row["step"] = record["step"]
            row["epoch"] = record["epoch"]
            row["layer"] = name
            row["global_norm"] = record["global_norm"]
            rows.append(row)
    return rows


def to_csv(history, path):
    """Writes `to_rows(history)` to a CSV file with a header row.

    Args:
        history: A list of records.
        path: Destination file path.

    Returns:
        The number of rows written.
    """
    rows = to_rows(history)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(ROW_KEYS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return len(rows)


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e4:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def format_table(rows, keys=None):
    """Formats rows as an aligned plain-text table.

    Args:
        rows: Dicts (e.g. from `to_rows`).
        keys: Columns to show; defaults to every key of `ROW_KEYS` except
            `global_norm`.

    Returns:
        The table as a string.
    """
    keys = list(keys or [k for k in ROW_KEYS if k != "global_norm"])
    cells = [keys] + [[_fmt(row.get(k)) for k in keys] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(keys))]
    lines = [
        "  ".join(cell.rjust(w) for cell, w in zip(line, widths))
        for line in cells
    ]
    return "\n".join(lines)

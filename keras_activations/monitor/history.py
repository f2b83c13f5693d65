"""Records of `GradientMonitor` as plain Python/NumPy data, rows and CSV.

The record layout is the contract in docs/CONTRACTS.md ("GradientMonitor
history"): `step`, `epoch`, `steps`, `global_norm`, `variables` and `layers`.
"""

import csv
import math

import numpy as np

ROW_KEYS = (
    "step",
    "epoch",
    "layer",
    "depth",
    "gradient_norm",
    "gradient_cosine",
    "units",
    "dead_units",
    "dead_fraction",
    "saturation",
    "activation_mean",
    "activation_std",
    "global_norm",
)


def edges_from_range(lo, hi, bins):
    return np.linspace(float(lo), float(hi), int(bins) + 1)


def build_record(
    out,
    *,
    step,
    epoch,
    steps,
    window_start_dstep,
    variables,
    watched,
    sites,
    site_keys,
    order,
    prev_valid,
    bins,
):
    """Turns one `DeviceState.flush()` result into a record.

    Args:
        out: Dict of NumPy arrays from `DeviceState.flush`.
        step: Global step at the end of the window (1-based).
        epoch: 0-based epoch of the window's end.
        steps: Training steps in the window.
        window_start_dstep: Device step count when the window began.
        variables: `(variable, owner, watched)` triples.
        watched: `(name, layer)` pairs of watched layers.
        sites: Activation sites with state, keyed by name (`{name: site}`).
        site_keys: `{name: key}` of the flush output for each site.
        order: Layer names in depth order (input to output).
        prev_valid: Whether a previous record's gradient exists (cosine).
        bins: Histogram buckets.

    Returns:
        `(record, has_snapshot)`.
    """
    has_snapshot = int(out["snap_dstep"]) > int(window_start_dstep)
    sumsq = out["sumsq"].astype(np.float64)
    nonfinite = out["nonfinite"]
    global_sq = float(np.sum(sumsq[: len(variables)]))
    record = {
        "step": int(step),
        "epoch": int(epoch),
        "steps": int(steps),
        "global_norm": math.sqrt(global_sq) if np.isfinite(global_sq) else float("nan"),
        "variables": {},
        "layers": {},
    }
    layer_sq = {}
    layer_dot = {}
    layer_prev = {}
    layer_cur = {}
    j = 0
    for i, (v, owner, is_watched) in enumerate(variables):
        if not is_watched:
            continue
        size = int(np.prod(v.shape)) if len(v.shape) else 1
        entry = {
            "norm": math.sqrt(float(sumsq[i])),
            "nonfinite": int(round(float(nonfinite[i]))),
            "size": size,
            "histogram": None,
        }
        if has_snapshot:
            lo, hi = out["glohi"][j]
            entry["histogram"] = {
                "edges": edges_from_range(lo, hi, bins),
                "counts": np.rint(out["ghist"][j]).astype(np.int64),
            }
            if "dot" in out:
                layer_dot[owner] = layer_dot.get(owner, 0.0) + float(out["dot"][j])
                layer_prev[owner] = layer_prev.get(owner, 0.0) + float(
                    out["prev_sq"][j]
                )
                layer_cur[owner] = layer_cur.get(owner, 0.0) + float(
                    out["cur_sq"][j]
                )
        record["variables"][v.path] = entry
        if owner is not None:
            layer_sq[owner] = layer_sq.get(owner, 0.0) + float(sumsq[i])
        j += 1
    depth = {name: d for d, name in enumerate(order)}
    for name, _ in watched:
        entry = {
            "depth": depth.get(name, len(depth)),
            "gradient_norm": None,
            "gradient_cosine": None,
            "units": None,
            "dead_units": None,
            "dead_fraction": None,
            "saturation": None,
            "activation_mean": None,
            "activation_std": None,
            "activation_histogram": None,
        }
        if name in layer_sq:
            entry["gradient_norm"] = math.sqrt(layer_sq[name])
        if prev_valid and has_snapshot and name in layer_dot:
            denom = math.sqrt(layer_prev[name] * layer_cur[name])
            if denom > 0 and math.isfinite(denom):
                entry["gradient_cosine"] = layer_dot[name] / denom
        site = sites.get(name)
        if site is not None:
            _fill_site(entry, site, out, site_keys[name], bins, has_snapshot)
        record["layers"][name] = entry
    record["layers"] = dict(
        sorted(record["layers"].items(), key=lambda kv: kv[1]["depth"])
    )
    return record, has_snapshot


def _fill_site(entry, site, out, key, bins, has_snapshot):
    alive = out[f"alive/{key}"]
    saturated, pairs, s1, s2 = (float(a) for a in out[f"stats/{key}"])
    units = site.units if site.pieces is None else site.units * site.pieces
    entry["units"] = int(units)
    if site.track_dead:
        dead = int(np.sum(alive <= 0))
        entry["dead_units"] = dead
        entry["dead_fraction"] = dead / units if units else None
    elif site.derivative is not None:  # cannot die: f' > 0 everywhere
        entry["dead_units"] = 0
        entry["dead_fraction"] = 0.0
    if site.derivative is not None and pairs > 0:
        entry["saturation"] = saturated / pairs
    if pairs > 0:
        mean = s1 / pairs
        entry["activation_mean"] = mean
        entry["activation_std"] = math.sqrt(max(s2 / pairs - mean * mean, 0.0))
    if has_snapshot:
        lo, hi = out[f"lohi/{key}"]
        entry["activation_histogram"] = {
            "edges": edges_from_range(lo, hi, bins),
            "counts": np.rint(out[f"hist/{key}"]).astype(np.int64),
        }


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

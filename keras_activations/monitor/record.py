"""The record: the one schema `history`, the event files and the CSV derive
from (docs/CONTRACTS.md, "GradientMonitor history").

`Layout.record` turns what `State.read` returned for a window into a
record. Each figure is computed once, here, in float64 NumPy.
"""

import numpy as np

# The per-layer figures of a record that are scalars (TensorBoard tag
# `<key>/<layer>`, CSV columns), in order.
LAYER_SCALARS = (
    "gradient_norm",
    "gradient_cosine",
    "update_ratio",
    "weight_norm",
    "dead_units",
    "dead_fraction",
    "inactive_fraction",
    "saturation",
    "activation_mean",
    "activation_std",
)
# The per-variable figures that are scalars: `(tag prefix, key of the
# record's variable entry)`, tag `<prefix>/<variable path>`, in order.
VARIABLE_SCALARS = (
    ("gradient_norm", "norm"),
    ("nonfinite_gradients", "nonfinite"),
    ("update_ratio", "update_ratio"),
    ("weight_norm", "weight_norm"),
)


def edges(lohi, bins):
    """`bins + 1` equal-width edges over `[lo, hi]`; the last is `hi`."""
    lo, hi = (float(v) for v in lohi)
    out = lo + (hi - lo) * (np.arange(bins + 1, dtype=np.float64) / bins)
    out[-1] = hi
    return out


def _histogram(counts, lohi):
    counts = np.asarray(counts)
    return {"edges": edges(lohi, counts.shape[-1]), "counts": np.rint(counts).astype(np.int64)}


def histogram(values, bins, finite=False):
    """The histogram of an array's finite values (NaN and inf left out):
    `bins` equal-width buckets over their [min, max] (a single value `v`:
    `[v, v + max(|v|, 1) * 1e-3]`; none: `[0, 1e-3]`), with the arithmetic
    of `tf.histogram_fixed_width`, which counts the activations on the
    device (`state.histograms`). `finite=True` says that every value is
    finite (it saves a pass).

    Returns:
        `{"edges": [bins + 1], "counts": [bins]}`.
    """
    flat = np.asarray(values, np.float32).ravel()
    if not finite and not np.isfinite(flat).all():
        flat = flat[np.isfinite(flat)]
    lo = flat.min() if flat.size else np.float32(0)
    hi = flat.max() if flat.size else np.float32(0)
    if not hi > lo:
        hi = np.float32(lo + np.maximum(np.abs(lo), np.float32(1)) * np.float32(1e-3))
    step = (np.float64(hi) - np.float64(lo)) / bins
    # every value is >= lo: max(v, lo) = v
    scaled = np.subtract(flat, np.float64(lo), dtype=np.float64)
    scaled /= step
    np.minimum(scaled, bins - 1, out=scaled)
    counts = np.bincount(scaled.astype(np.intp), minlength=bins)
    return {"edges": edges((lo, hi), bins), "counts": counts.astype(np.int64)}


def _norm(sumsq):
    sumsq = float(sumsq)
    return float(np.sqrt(sumsq)) if np.isfinite(sumsq) else float("nan")


def _ratio(update_sq, weight_sq):
    """`||update|| / ||weights||`: NaN when either is not finite, `None`
    when the weights are all 0."""
    if not (np.isfinite(update_sq) and np.isfinite(weight_sq)):
        return float("nan")
    return float(np.sqrt(update_sq / weight_sq)) if weight_sq > 0 else None


def _cosine(dot, prev_sq, cur_sq):
    denom = np.sqrt(prev_sq * cur_sq)
    if not (denom > 0 and np.isfinite(denom) and np.isfinite(dot)):
        return None
    return float(dot / denom)


def _site_figures(site, fired, stats):
    """`units, dead_units, dead_fraction, activation_mean, activation_std`
    of a site over a window, and the share of unit-example pairs whose
    `|f'|` was below the tolerance: the `saturation` of an activation whose
    derivative tends to 0 (`site.saturates`: sigmoid, tanh, the ELU
    family), else (rectifiers, whose derivative is a step) the
    `inactive_fraction`."""
    units = int(site.units * (site.pieces or 1))
    saturated, pairs, s1, s2 = (float(v) for v in stats)
    out = {"units": units}
    if site.track_dead:
        dead = int(np.sum(np.asarray(fired) <= 0))
        out["dead_units"] = dead
        out["dead_fraction"] = dead / units if units else 0.0
    if pairs > 0:
        mean = s1 / pairs
        out["activation_mean"] = mean
        with np.errstate(invalid="ignore"):
            out["activation_std"] = float(np.sqrt(max(s2 / pairs - mean * mean, 0.0)))
        if site.track_dead and site.pieces is None:
            out["saturation" if site.saturates else "inactive_fraction"] = saturated / pairs
    return out


class Layout:
    """What a record of one `State` holds.

    Args:
        state: The monitor's `state.State`.
        watched: `(name, layer)` pairs of watched layers.
        order: Layer names in depth order (input to output).
    """

    def __init__(self, state, watched, order):
        depth = {name: d for d, name in enumerate(order)}
        self.layer_names = sorted(
            (name for name, _ in watched), key=lambda n: depth.get(n, len(depth))
        )
        self.depth = {n: i for i, n in enumerate(self.layer_names)}
        self.bins = state.bins
        variables = state.variables
        self.variables = [
            (j, i, variables[i][0].path, variables[i][1], int(np.prod(variables[i][0].shape)))
            for j, i in enumerate(state.watched)
        ]
        self.n_variables = len(variables)
        # (row in the packed site figures, site, units slice, record name).
        name_of = {id(layer): name for name, layer in watched}
        self.sites = [
            (k, site, slice(state.offsets[k], state.offsets[k] + state.sizes[k]), name_of.get(id(site.layer), site.name))
            for k, site in enumerate(state.sites)
        ]

    def _unpack(self, raw, key):
        """A packed per-watched-variable vector of `raw` (`cur`) as one
        float32 array per watched variable."""
        if not self.variables:
            return []
        packed = np.asarray(raw[key], np.float32)
        return np.split(packed, np.cumsum([size for *_, size in self.variables])[:-1])

    def record(self, raw, *, step, epoch, steps, start, prev):
        """The record of a window.

        Args:
            raw: `State.read()`'s arrays.
            step: The record's step label (the window's last step).
            epoch: The epoch of the window's end.
            steps: Steps in the window.
            start: The device step count before the window's first step.
            prev: The gradient snapshot of an earlier record (`[watched
                variables]` flat float64 arrays), or `None`; the cosine is
                this record's snapshot against it.

        Returns:
            `(record, snapshot)`: the record, and its gradient snapshot
            (for the next record's `prev`), or `None` without one.
        """
        count = int(raw["count"])

        def label(c):
            return int(step - (count - int(c)))

        applied = int(raw["grad_count"]) > start
        snapshot = applied and int(raw["gsnap_count"]) == int(raw["grad_count"])
        sumsq = 2.0 * np.asarray(raw["sumsq"], np.float64)  # half sums on the device
        record = {
            "step": int(step),
            "epoch": int(epoch),
            "steps": int(steps),
            "gradient_step": label(raw["grad_count"]) if applied else None,
            "global_norm": _norm(np.sum(sumsq[: self.n_variables])) if applied else None,
            "variables": {},
            "layers": {},
        }
        for name in self.layer_names:
            record["layers"][name] = {
                "depth": self.depth[name],
                "gradient_norm": None,
                "gradient_cosine": None,
                "update_ratio": None,
                "weight_norm": None,
                "units": None,
                "dead_units": None,
                "dead_fraction": None,
                "inactive_fraction": None,
                "saturation": None,
                "activation_mean": None,
                "activation_std": None,
                "activation_histogram": None,
            }
        cur = self._unpack(raw, "cur")
        # The watched variables' change over the window's last step, if it
        # took a snapshot (`before`: the variables as it began).
        last = int(raw["snap_count"]) == count
        weight_sq = [2.0 * float(v) for v in raw.get("weight_sq", ())]  # half sums on the device
        update_sq = [2.0 * float(v) for v in raw.get("update_sq", ())] if last else None
        per_layer = {}
        for j, i, path, owner, size in self.variables:
            nonfinite = int(round(float(raw["nonfinite"][i])))
            record["variables"][path] = {
                "norm": _norm(sumsq[i]) if applied else None,
                "nonfinite": nonfinite,
                "size": size,
                "histogram": histogram(cur[j], self.bins, finite=nonfinite == 0) if snapshot else None,
                "update_ratio": _ratio(update_sq[j], weight_sq[j]) if last else None,
                "weight_norm": _norm(weight_sq[j]),
            }
            if owner in record["layers"]:
                per_layer.setdefault(owner, []).append((j, i))
        for name, items in per_layer.items():
            entry = record["layers"][name]
            layer_weight_sq = sum(weight_sq[j] for j, _ in items)
            entry["weight_norm"] = _norm(layer_weight_sq)
            if last:
                entry["update_ratio"] = _ratio(sum(update_sq[j] for j, _ in items), layer_weight_sq)
            if applied:
                entry["gradient_norm"] = _norm(sum(sumsq[i] for _, i in items))
            if snapshot and prev is not None:
                # float32 dot products (float64 BLAS is slow on some builds)
                dot, prev_sq, cur_sq = (
                    sum(float(np.dot(a[j], b[j])) for j, _ in items)
                    for a, b in ((cur, prev), (prev, prev), (cur, cur))
                )
                entry["gradient_cosine"] = _cosine(dot, prev_sq, cur_sq)
        for k, site, units, name in self.sites:
            entry = record["layers"].get(name)
            if entry is None:
                continue
            entry.update(_site_figures(site, raw["fired"][units], raw["stats"][k]))
            if last and raw["hist"][k].sum() > 0:
                entry["activation_histogram"] = _histogram(raw["hist"][k], raw["lohi"][k])
        return record, (cur if snapshot else None)

"""The figures of a record: computed on the device, packed, unpacked.

Once per record `GradientMonitor` calls a `RecordProgram`: a `tf.function`
(in cross-replica context, not XLA) that

1. reads and resets the step accumulators (`DeviceState.read_and_reset`),
2. computes every figure of the record from them in float64, a few
   vectorized ops for all variables and layers at once: norms, the cosine
   with the previous record, dead units, saturation, activation mean and
   standard deviation, histogram edges, and
3. returns them packed in ONE float64 vector (one device-to-host copy).

The host writes the events from that vector (`write_events`, a fraction of
a millisecond, see `events`) and unpacks a history record from it only when
`GradientMonitor.history` is read (`record`). What is written and what
`history` holds are the same numbers.
"""

import math

import numpy as np
import tensorflow as tf

from keras_activations.monitor import plots


def _edges(lohi, bins):
    """`[m, bins + 1]` equal-width edges from `[m, 2]` ranges; the last edge
    is exactly the range's right end."""
    lohi = tf.cast(lohi, tf.float64)
    lo, hi = lohi[:, :1], lohi[:, 1:]
    inner = lo + (hi - lo) * (np.arange(bins, dtype=np.float64) / bins)[None, :]
    return tf.concat([inner, hi], axis=1)


def _membership(rows, cols, pairs):
    """Static 0/1 float64 matrix `[rows, cols]` with ones at `pairs`."""
    m = np.zeros((rows, cols), np.float64)
    for r, c in pairs:
        m[r, c] = 1.0
    return tf.constant(m)


class RecordProgram:
    """Computes and packs the figures of one record; unpacks and writes them.

    Args:
        state: The `accumulators.DeviceState` of the fit.
        variables: `(variable, owner name, watched)` triples (`sites.select`).
        watched: `(name, layer)` pairs of watched layers.
        sites: Activation sites with state, keyed by record name.
        order: Layer names in depth order (input to output).
        bins: Histogram buckets.
    """

    def __init__(self, state, variables, watched, sites, order, bins):
        self.state = state
        self.bins = int(bins)
        depth = {name: d for d, name in enumerate(order)}
        self.layer_names = sorted(
            (name for name, _ in watched), key=lambda n: depth.get(n, len(depth))
        )
        self.depth = {n: depth.get(n, len(depth)) for n in self.layer_names}
        # Watched variables, in the order of the accumulators' rows.
        self.var_pos = list(state.watched_pos)
        self.var_paths = [variables[i][0].path for i in self.var_pos]
        self.var_sizes = [
            int(np.prod(variables[i][0].shape)) if len(variables[i][0].shape) else 1
            for i in self.var_pos
        ]
        owners = [variables[i][1] for i in self.var_pos]
        self.grad_layers = [n for n in self.layer_names if n in set(owners)]
        self._owner_matrix = _membership(
            len(self.grad_layers),
            len(self.var_pos),
            [
                (self.grad_layers.index(o), j)
                for j, o in enumerate(owners)
                if o in self.grad_layers
            ],
        )
        self.n_variables = len(variables)
        self.site_names = [n for n in self.layer_names if n in sites]
        self.sites = [sites[n] for n in self.site_names]
        self.units = [
            s.units if s.pieces is None else s.units * s.pieces for s in self.sites
        ]
        self.tracked = [i for i, s in enumerate(self.sites) if s.track_dead]
        self.layout = None
        # Not XLA: measured slower here than TensorFlow's executor.
        self._fn = tf.function(self._program, autograph=False, jit_compile=False)

    # ---- device -------------------------------------------------------------

    def __call__(self, window_start, prev_valid):
        """Runs the program; returns the packed figures as a NumPy vector."""
        with self.state.strategy.scope():
            flat = self._fn(
                tf.constant(window_start, tf.int64),
                tf.constant(bool(prev_valid)),
            )
        return flat.numpy()

    def _program(self, window_start, prev_valid):
        raw = self.state.read_and_reset(window_start)
        parts, layout = [], {}

        def put(key, value):
            value = tf.reshape(tf.cast(value, tf.float64), [-1]) if not value.shape.rank else tf.cast(value, tf.float64)
            offset = sum(int(np.prod(p.shape)) for p in parts)
            layout[key] = (offset, tuple(int(d) for d in value.shape))
            parts.append(tf.reshape(value, [-1]))

        bins = self.bins
        snap = raw["snap_dstep"] > window_start
        put("has_snapshot", tf.cast(snap, tf.float64))
        put("dstep", raw["dstep"])  # device steps so far (exact below 2**53)
        sumsq = tf.cast(raw["sumsq"], tf.float64)
        global_sq = tf.reduce_sum(sumsq[: self.n_variables])
        put(
            "global_norm",
            tf.where(tf.math.is_finite(global_sq), tf.sqrt(global_sq), math.nan),
        )
        if self.var_pos:
            w = len(self.var_pos)
            sq = tf.gather(sumsq, self.var_pos)
            put("norm", tf.sqrt(sq))
            put("nonfinite", tf.gather(raw["nonfinite"], self.var_pos))
            put("gedges", _edges(raw["glohi"][:w], bins))
            put("gcounts", tf.round(raw["ghist"][:w]))
        if self.grad_layers:
            m = self._owner_matrix
            put("layer_norm", tf.sqrt(tf.linalg.matvec(m, sq)))
            if "dot" in raw:
                dot = tf.linalg.matvec(m, raw["dot"])
                denom = tf.sqrt(
                    tf.linalg.matvec(m, raw["prev_sq"])
                    * tf.linalg.matvec(m, raw["cur_sq"])
                )
                ok = (
                    prev_valid & snap & (denom > 0) & tf.math.is_finite(denom)
                )
                put("cosine", dot / tf.where(ok, denom, 1.0))
                put("cosine_ok", tf.cast(ok, tf.float64))
        if self.sites:
            keys = [id(s) for s in self.sites]
            stats = tf.stack([raw[f"stats/{k}"] for k in keys])  # [S, 4]
            saturated, pairs, s1, s2 = (stats[:, i] for i in range(4))
            safe = tf.where(pairs > 0, pairs, 1.0)
            mean = s1 / safe
            put("pairs", pairs)
            put("saturation", saturated / safe)
            put("mean", mean)
            put("std", tf.sqrt(tf.maximum(s2 / safe - mean * mean, 0.0)))
            if self.tracked:
                put(
                    "dead",
                    tf.stack(
                        [
                            tf.reduce_sum(
                                tf.cast(raw[f"alive/{keys[i]}"] <= 0, tf.float64)
                            )
                            for i in self.tracked
                        ]
                    ),
                )
            lohi = tf.stack([raw[f"lohi/{k}"] for k in keys])
            put("aedges", _edges(lohi, bins))
            put("acounts", tf.round(tf.stack([raw[f"hist/{k}"] for k in keys])))
        self.layout = layout
        return tf.concat(parts, axis=0)

    # ---- host ---------------------------------------------------------------

    def unpack(self, flat):
        """`{key: array}` views of a packed vector."""
        out = {}
        for key, (offset, shape) in self.layout.items():
            n = int(np.prod(shape)) if shape else 1
            out[key] = flat[offset : offset + n].reshape(shape)
        return out

    def dead(self, figures):
        """`{layer: (dead fraction, dead units, units)}` of tracked sites."""
        out = {}
        for k, i in enumerate(self.tracked):
            dead = int(round(float(figures["dead"][k])))
            units = self.units[i]
            out[self.site_names[i]] = (dead / units if units else 0.0, dead, units)
        return out

    def layer_values(self, figures):
        """`{layer: {key: value}}` of the per-layer scalars, `None` where a
        figure does not exist (the rules of docs/CONTRACTS.md)."""
        layers = {name: {} for name in self.layer_names}
        for k, name in enumerate(self.grad_layers):
            layers[name]["gradient_norm"] = float(figures["layer_norm"][k])
            ok = "cosine_ok" in figures and figures["cosine_ok"][k] > 0
            layers[name]["gradient_cosine"] = (
                float(figures["cosine"][k]) if ok else None
            )
        dead = self.dead(figures) if self.tracked else {}
        for i, (name, site) in enumerate(zip(self.site_names, self.sites)):
            entry = layers[name]
            entry["units"] = int(self.units[i])
            if name in dead:
                fraction, n_dead, units = dead[name]
                entry["dead_units"] = n_dead
                entry["dead_fraction"] = fraction if units else None
            if figures["pairs"][i] > 0:
                if site.derivative is not None:
                    entry["saturation"] = float(figures["saturation"][i])
                entry["activation_mean"] = float(figures["mean"][i])
                entry["activation_std"] = float(figures["std"][i])
        return layers

    def record(self, flat, *, step, epoch, steps):
        """Unpacks one record (docs/CONTRACTS.md, "GradientMonitor history")."""
        f = self.unpack(flat)
        snap = f["has_snapshot"][0] > 0
        record = {
            "step": int(step),
            "epoch": int(epoch),
            "steps": int(steps),
            "global_norm": float(f["global_norm"][0]),
            "variables": {},
            "layers": {},
        }
        for j, path in enumerate(self.var_paths):
            record["variables"][path] = {
                "norm": float(f["norm"][j]),
                "nonfinite": int(round(float(f["nonfinite"][j]))),
                "size": self.var_sizes[j],
                "histogram": (
                    {
                        "edges": f["gedges"][j].copy(),
                        "counts": np.rint(f["gcounts"][j]).astype(np.int64),
                    }
                    if snap
                    else None
                ),
            }
        values = self.layer_values(f)
        site_index = {name: i for i, name in enumerate(self.site_names)}
        for name in self.layer_names:
            entry = {
                "depth": self.depth[name],
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
            entry.update(values[name])
            i = site_index.get(name)
            if i is not None and snap:
                entry["activation_histogram"] = {
                    "edges": f["aedges"][i].copy(),
                    "counts": np.rint(f["acounts"][i]).astype(np.int64),
                }
            record["layers"][name] = entry
        return record

    def write_events(self, file, encoder, flat, step, image=True):
        """Writes one record's TensorBoard values to an `events.EventFile`."""
        f = self.unpack(flat)
        seen = file.seen
        snap = f["has_snapshot"][0] > 0
        scalar = encoder.scalar
        out = [scalar("gradient_norm/global", f["global_norm"][0], seen)]
        for j, path in enumerate(self.var_paths):
            out.append(scalar(f"gradient_norm/{path}", f["norm"][j], seen))
            out.append(scalar(f"nonfinite_gradients/{path}", f["nonfinite"][j], seen))
        values = self.layer_values(f)
        for name in self.layer_names:
            for key, value in values[name].items():
                if value is not None and key != "units":
                    out.append(scalar(f"{key}/{name}", value, seen))
        if snap:
            for j, path in enumerate(self.var_paths):
                rows = _rows(f["gedges"][j], f["gcounts"][j])
                out.append(encoder.histogram(f"gradients/{path}", rows, seen))
            for i, name in enumerate(self.site_names):
                rows = _rows(f["aedges"][i], f["acounts"][i])
                out.append(encoder.histogram(f"activations/{name}", rows, seen))
        if image:
            layout = plots.depth_profile_layout(
                *[
                    [values[n].get(key) for n in self.layer_names]
                    for key in ("gradient_norm", "dead_fraction", "activation_mean")
                ]
            )
            out.append(
                encoder.image(
                    "depth_profile",
                    plots.draw_indexed(layout),
                    seen,
                    palette=plots.PALETTE,
                )
            )
        file.write(step, out)


def _rows(edges, counts):
    return np.stack([edges[:-1], edges[1:], counts], axis=1)

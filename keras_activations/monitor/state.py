"""Device-side state of one `GradientMonitor`: variables the training step
updates, and the small program that reads them once per record.

Every training step (graph mode, XLA, `steps_per_execution`, any
`tf.distribute` strategy) adds to this state:

- the step count (`count`);
- for the applied gradients (after the loss scale is taken out and after
  the all-reduce): each variable's sum of squares, *of that step* (so a
  record's norms are always of the last step that applied a gradient, and
  `grad_count` says which), and the window's count of NaN/inf elements
  (counted only when a sum of squares is not finite);
- per activation site, over the window: per unit the number of steps in
  which some example's `|f'(x)| > dead_tolerance` (a unit with none is
  dead), and the count of unit-example pairs with
  `|f'(x)| < saturation_tolerance`, the count, sum and sum of squares of
  the outputs. Only comparisons decide: a NaN derivative neither fires nor
  saturates, on every CPU (no `max`, `min`, `sign` or `relu` of a value
  that may be NaN).

Steps that the host flags (`flag`: those that may end a record window)
also take a *snapshot*: a copy of each watched gradient (`cur`) and a
histogram of each site's outputs. `snap_count` says which step it is of.

The record program (`read`, a `tf.function` run in cross-replica context)
reads everything, computes the gradient histograms and cosine dot products
from the snapshot, resets the window sums and keeps the snapshot for the
next record's cosine (`prev`). The host computes the figures (`record`).

Histograms count finite values in `bins` equal-width buckets over their own
finite [min, max], widened a little when that is a single value; bucket
indices are computed in float64, identically in graph mode and under XLA.
"""

import threading

import numpy as np
import tensorflow as tf

from keras_activations.builtin_derivatives import StepOfOutput

_SUM = tf.VariableAggregation.SUM
_FIRST = tf.VariableAggregation.ONLY_FIRST_REPLICA


def _variable(value, aggregation, name):
    return tf.Variable(
        value,
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=aggregation,
        name=name,
    )


def finite_range(flat):
    """`[lo, hi]` (float32) of the finite values of a flat tensor; `[0, 0]`
    when there are none. NaN and inf are masked before the reductions."""
    finite = tf.math.is_finite(flat)
    lo = tf.reduce_min(tf.where(finite, flat, np.inf))
    hi = tf.reduce_max(tf.where(finite, flat, -np.inf))
    some = lo <= hi
    return tf.stack([tf.where(some, lo, 0.0), tf.where(some, hi, 0.0)])


def histogram(flat, bins, lohi=None):
    """Counts of the finite values of a flat float32 tensor in `bins`
    equal-width buckets.

    Args:
        flat: A 1-D float32 tensor.
        bins: Number of buckets.
        lohi: `[lo, hi]` to use, or `None` for the finite range of `flat`.

    Returns:
        `(counts, lohi)`: float64 counts `[bins]` and the float32 edges
        `[left, right]`. A single value `v` gets the range
        `[v, v + max(|v|, 1) * 1e-3]`.
    """
    if lohi is None:
        lohi = finite_range(flat)
    lo, hi = lohi[0], lohi[1]
    hi = tf.where(hi > lo, hi, lo + tf.maximum(tf.abs(lo), 1.0) * 1e-3)
    lo64, hi64 = tf.cast(lo, tf.float64), tf.cast(hi, tf.float64)
    finite = tf.math.is_finite(flat)
    scaled = (tf.cast(tf.where(finite, flat, lo), tf.float64) - lo64) * (
        bins / (hi64 - lo64)
    )
    index = tf.clip_by_value(tf.cast(tf.floor(scaled), tf.int32), 0, bins - 1)
    index = tf.where(finite, index, bins)  # an extra bucket, dropped
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(index, tf.float32), index, bins + 1
    )[:bins]
    return tf.cast(counts, tf.float64), tf.stack([lo, hi])


def _site_step(site, x, y, axes, dead_tolerance, saturation_tolerance):
    """One call's `(fired, saturated)` of a site (`site.track_dead`): per
    unit whether some example's `|f'| > dead_tolerance` (a boolean tensor,
    or `False` when no unit can fire), and the count of pairs with
    `|f'| < saturation_tolerance` (float32)."""
    if site.pieces is not None:  # Maxout: a piece is alive when it wins
        winner = site.layer.winning_piece(x)
        won = [tf.reduce_any(tf.equal(winner, p), axis=axes) for p in range(site.pieces)]
        return tf.reshape(tf.stack(won, axis=-1), [-1]), tf.constant(0.0)
    derivative = site.of_output
    if isinstance(derivative, StepOfOutput):  # |f'| is `above` where y > 0
        fired, saturated = False, tf.constant(0.0)
        for value, side in ((derivative.above, y > 0), (derivative.below, y <= 0)):
            if value > dead_tolerance:
                some = tf.reduce_any(side, axis=axes)
                fired = some if fired is False else tf.logical_or(fired, some)
            if value < saturation_tolerance:
                saturated += tf.reduce_sum(tf.cast(side, tf.float32))
        return fired, saturated
    u = y if derivative is not None else tf.cast(x, tf.float32)
    d = tf.abs(tf.cast((derivative or site.derivative)(u), tf.float32))
    # A derivative may map NaN to a number (`where(x > 0, 1, slope)`):
    # pairs whose input is NaN are masked explicitly.
    valid = tf.logical_not(tf.math.is_nan(u))
    fired = tf.reduce_any(tf.logical_and(d > dead_tolerance, valid), axis=axes)
    saturated = tf.logical_and(d < saturation_tolerance, valid)
    return fired, tf.reduce_sum(tf.cast(saturated, tf.float32))


class _SiteState:
    def __init__(self, site, bins):
        self.site = site
        n = site.units * (site.pieces or 1)
        self.fired = _variable(tf.zeros([n], tf.float32), _SUM, "fired")
        # [saturated pairs, pairs, sum of outputs, sum of squares]
        self.stats = _variable(tf.zeros([4], tf.float64), _SUM, "stats")
        self.hist = _variable(tf.zeros([bins], tf.float64), _SUM, "hist")
        self.lohi = _variable(tf.zeros([2], tf.float32), _FIRST, "lohi")


class State:
    """Accumulators of one monitor on one model.

    Args:
        strategy: The model's `tf.distribute` strategy.
        variables: `(variable, owner name, watched)` triples
            (`sites.select`), in `model.trainable_variables` order.
        sites: Activation sites with `units` set.
        bins: Histogram buckets.
        dead_tolerance: A unit fires when `|f'(x)|` exceeds it.
        saturation_tolerance: A pair is saturated when `|f'(x)|` is below.
        var_key: Maps a variable to the key the gradient hook sees.
    """

    def __init__(self, strategy, variables, sites, bins, dead_tolerance, saturation_tolerance, var_key):
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        self.bins = int(bins)
        self.dead_tolerance = float(dead_tolerance)
        self.saturation_tolerance = float(saturation_tolerance)
        self.variables = variables
        self.var_key = var_key
        self.key_to_pos = {var_key(v): i for i, (v, _, _) in enumerate(variables)}
        self.watched = [i for i, (_, _, w) in enumerate(variables) if w]
        n = max(len(variables), 1)
        with strategy.scope():
            self.flag = tf.Variable(False, trainable=False, name="snapshot_flag")
            self.count = _variable(tf.zeros([], tf.int64), _FIRST, "count")
            self.grad_count = _variable(tf.zeros([], tf.int64), _FIRST, "grad_count")
            self.snap_count = _variable(tf.zeros([], tf.int64), _FIRST, "snap_count")
            self.gsnap_count = _variable(tf.zeros([], tf.int64), _FIRST, "gsnap_count")
            self.kept_count = _variable(tf.zeros([], tf.int64), _FIRST, "kept_count")
            self.sumsq = _variable(tf.zeros([n], tf.float32), _FIRST, "sumsq")
            self.nonfinite = _variable(tf.zeros([n], tf.float64), _FIRST, "nonfinite")
            shapes = [variables[i][0].shape for i in self.watched]
            self.cur = [_variable(tf.zeros(s, tf.float32), _FIRST, "cur") for s in shapes]
            self.prev = [_variable(tf.zeros(s, tf.float32), _FIRST, "prev") for s in shapes]
            self.sites = {id(s.layer): _SiteState(s, self.bins) for s in sites}
        self._flag_value = False
        # Per replica (MirroredStrategy runs each replica's step in a thread
        # of its own): the step's count, and its sites' calls.
        self._local = threading.local()
        self._read = None

    # ---- host ---------------------------------------------------------------

    def set_flag(self, value):
        """Whether the next execution's steps take a snapshot."""
        value = bool(value)
        if value != self._flag_value:
            self.flag.assign(value)
            self._flag_value = value

    def read(self):
        """Reads the window (and resets its sums): a dict of NumPy arrays."""
        if self._read is None:
            fn = tf.function(self._read_and_reset, autograph=False, jit_compile=False)
            with self.strategy.scope():
                self._read = fn.get_concrete_function()
        with self.strategy.scope():
            out = self._read()
        return {k: v.numpy() for k, v in out.items()}

    def _read_and_reset(self):
        out = {
            "count": self.count.read_value(),
            "grad_count": self.grad_count.read_value(),
            "snap_count": self.snap_count.read_value(),
            "gsnap_count": self.gsnap_count.read_value(),
            "kept_count": self.kept_count.read_value(),
            "sumsq": self.sumsq.read_value(),
            "nonfinite": self.nonfinite.read_value(),
        }
        if self.cur:
            cur = [tf.reshape(v.read_value(), [-1]) for v in self.cur]
            prev = [tf.reshape(v.read_value(), [-1]) for v in self.prev]
            hists = [histogram(g, self.bins) for g in cur]
            out["ghist"] = tf.stack([h for h, _ in hists])
            out["glohi"] = tf.stack([r for _, r in hists])
            dots = [tf.reduce_sum(tf.cast(c, tf.float64) * tf.cast(p, tf.float64)) for c, p in zip(cur, prev)]
            prevsq = [tf.reduce_sum(tf.square(tf.cast(p, tf.float64))) for p in prev]
            cursq = [tf.reduce_sum(tf.square(tf.cast(c, tf.float64))) for c in cur]
            out["dots"] = tf.stack([tf.stack(dots), tf.stack(prevsq), tf.stack(cursq)])
        for key, s in self.sites.items():
            out[f"fired/{key}"] = s.fired.read_value()
            out[f"stats/{key}"] = s.stats.read_value()
            out[f"hist/{key}"] = s.hist.read_value()
            out[f"lohi/{key}"] = s.lohi.read_value()
        with tf.control_dependencies(list(out.values())):
            resets = [self.nonfinite.assign(tf.zeros_like(self.nonfinite))]
            for s in self.sites.values():
                resets.append(s.fired.assign(tf.zeros_like(s.fired)))
                resets.append(s.stats.assign(tf.zeros_like(s.stats)))
            if self.cur:
                # The snapshot becomes the next record's `prev`, once.
                new = self.gsnap_count.read_value() > self.kept_count.read_value()
                for c, p in zip(self.cur, self.prev):
                    resets.append(p.assign(tf.where(new, c.read_value(), p.read_value())))
            resets.append(self.kept_count.assign(self.gsnap_count.read_value()))
        with tf.control_dependencies(resets):
            return {k: tf.identity(v) for k, v in out.items()}

    # ---- inside the training step -------------------------------------------

    def begin_step(self, data):
        """Starts a step: its number is the count + 1, read once its batch
        exists (the end of a dataset of unknown length raises in
        `get_next`); `end_step` counts it, so a step that raises is not
        counted."""
        local = self._local
        local.calls = []
        first = [t for t in tf.nest.flatten(data) if t is not None]
        with tf.control_dependencies(first[:1]):
            local.step = self.count.read_value() + 1

    def _this_step(self):
        step = getattr(self._local, "step", None)
        return step if step is not None else self.count.read_value() + 1

    def on_gradients(self, grads_and_vars):
        """Figures of the applied gradients (replica context). Returns ops
        that finish every read of them (`hooks._after`)."""
        grads = {}
        for g, v in grads_and_vars:
            pos = None if g is None else self.key_to_pos.get(self.var_key(v))
            if pos is None:
                continue
            if isinstance(g, tf.IndexedSlices):
                g = tf.convert_to_tensor(g)
            grads[pos] = tf.cast(tf.stop_gradient(g), tf.float32)
        if not grads:
            return []
        n = max(len(self.variables), 1)
        sq = [tf.constant(0.0)] * n
        for i, g in grads.items():
            sq[i] = tf.reduce_sum(tf.square(g))
        sumsq = tf.stack(sq)
        # A sum of squares is not finite exactly when an element is NaN or
        # inf, or the squares overflow (then none is counted).
        finite = tf.math.is_finite(tf.reduce_sum(sumsq))

        def count_nonfinite():
            bad = [tf.constant(0.0, tf.float64)] * n
            for i, g in grads.items():
                bad[i] = tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(g)), tf.float64))
            return tf.stack(bad)

        bad = tf.cond(finite, lambda: tf.zeros([n], tf.float64), count_nonfinite)
        ops = [
            self.sumsq.assign(sumsq, read_value=False),
            self.nonfinite.assign_add(bad, read_value=False),
            self.grad_count.assign(self._this_step(), read_value=False),
        ]
        if self.cur:

            def snapshot():
                for j, i in enumerate(self.watched):
                    g = grads.get(i)
                    if g is not None:
                        self.cur[j].assign(tf.reshape(g, self.cur[j].shape))
                self.gsnap_count.assign(self._this_step())
                return tf.constant(True)

            ops.append(tf.cond(self.flag.read_value(), snapshot, lambda: tf.constant(False)))
        return ops

    def on_site(self, layer, x, y, deferred):
        """Figures of one call of an activation site (replica context).
        `deferred`: whether the call is in the step's own graph, so its
        snapshot histogram can be taken at the end of the step."""
        state = self.sites.get(id(layer))
        if state is None or len(y.shape) < 2:
            return
        site = state.site
        axis = site.unit_axis % len(y.shape)
        axes = [a for a in range(len(y.shape)) if a != axis]
        # Only the output is read where the derivative has an output form:
        # reading the pre-activation `x` would keep TensorFlow from fusing
        # the activation into its layer's matrix product.
        y = tf.stop_gradient(y)
        if site.pieces is not None or site.of_output is None:
            x = tf.stop_gradient(x)
        y32 = tf.cast(y, tf.float32)
        saturated = tf.constant(0.0)
        if site.track_dead:
            fired, saturated = _site_step(
                site, x, y32, axes, self.dead_tolerance, self.saturation_tolerance
            )
            if fired is not False:
                state.fired.assign_add(tf.cast(tf.reshape(fired, [-1]), tf.float32))
        row = tf.stack(
            [
                saturated,
                tf.cast(tf.size(y32), tf.float32),
                tf.reduce_sum(y32),
                tf.reduce_sum(tf.square(y32)),
            ]
        )
        state.stats.assign_add(tf.cast(row, tf.float64))
        calls = getattr(self._local, "calls", None)
        if deferred and calls is not None:
            calls.append((state, tf.reshape(y32, [-1])))

    def end_step(self):
        """Counts the step. On a flagged step, first the snapshot: the
        histograms of this step's site outputs, and `snap_count`. With several replicas the edges span every
        replica's range (an all-reduce), so the counts add up."""
        local = self._local
        calls, step = local.calls, local.step
        local.calls = local.step = None
        by_site = {}
        for state, flat in calls:
            by_site.setdefault(id(state), (state, []))[1].append(flat)
        groups = [(s, tf.concat(f, 0) if len(f) > 1 else f[0]) for s, f in by_site.values()]
        ranges = [finite_range(flat) for _, flat in groups]
        if self.replicas > 1:
            ranges = [self._global_range(flat) for _, flat in groups]

        def snapshot():
            for (state, flat), lohi in zip(groups, ranges):
                counts, lohi = histogram(flat, self.bins, lohi)
                state.hist.assign(counts)
                state.lohi.assign(lohi)
            self.snap_count.assign(step)
            return tf.constant(True)

        done = tf.cond(self.flag.read_value(), snapshot, lambda: tf.constant(False))
        with tf.control_dependencies([done]):
            self.count.assign(step)

    def _global_range(self, flat):
        """`[lo, hi]` of the finite values over every replica (replica
        context): each replica puts its own min and max in its slot of a
        `[2, replicas]` tensor, and a sum all-reduce gathers the slots."""
        ctx = tf.distribute.get_replica_context()
        finite = tf.math.is_finite(flat)
        lo = tf.reduce_min(tf.where(finite, flat, np.inf))
        hi = tf.reduce_max(tf.where(finite, flat, -np.inf))
        slot = tf.one_hot(ctx.replica_id_in_sync_group, self.replicas, dtype=tf.float32)
        mine = slot > 0
        parts = tf.stack([tf.where(mine, lo, 0.0), tf.where(mine, hi, 0.0)])
        parts = ctx.all_reduce(tf.distribute.ReduceOp.SUM, parts)
        lo, hi = tf.reduce_min(parts[0]), tf.reduce_max(parts[1])
        some = lo <= hi
        return tf.stack([tf.where(some, lo, 0.0), tf.where(some, hi, 0.0)])

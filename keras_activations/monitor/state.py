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
  the outputs. A NaN pair neither fires nor saturates, on every CPU: the
  figures use fast float ops (`sign`, `maximum`, `reduce_max`) only when
  the step's sums of the outputs are finite, which proves there is no NaN
  or inf (IEEE addition propagates both); otherwise comparisons and
  explicit masks decide (XLA's `max` may drop a NaN on some CPUs).

Steps that the host flags (`flag`: those that may end a record window)
also take a *snapshot*: a copy of each watched gradient (`cur`), a
histogram of each site's outputs, and a copy of the watched variables as
the step begins (`before`: the step's change is then everything the
optimizer did, weight decay and EMA included). `snap_count` says which
step it is of.

The record program (`read`, a `tf.function` run in cross-replica context)
reads everything (the gradient snapshot included), sums the squares of the
watched variables and of their change since `before` (so neither travels
to the host), and resets the window sums; the host computes the figures (`record`): norms, the gradient
histograms, the cosine with the previous record's snapshot and the update
ratios.

Histograms (`histograms`, and `record.histogram` for the gradients on the
host, the same arithmetic) count finite values in `bins` equal-width
buckets over their own finite [min, max], widened a little when that is a
single value.

Every op added to the step is paid for in a user's first `fit` (its
trace and graph optimization: about 1 ms an op here), so each call and
each variable gets only its reductions; thresholds, ranges and sums are
then applied once, to vectors over every call (`benchmarks/monitor.py`
prints the op counts).
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


def _finite_ranges(flats, oks):
    """`(lo [k], hi [k])`: each flat tensor's finite min and max (NaN and
    inf masked before the reductions; `(inf, -inf)` when there is none)."""
    axis, inf, ninf = tf.constant([0]), tf.constant(np.inf), tf.constant(-np.inf)  # shared
    lo = tf.stack([tf.reduce_min(tf.where(ok, f, inf), axis) for f, ok in zip(flats, oks)])
    hi = tf.stack([tf.reduce_max(tf.where(ok, f, ninf), axis) for f, ok in zip(flats, oks)])
    return lo, hi


def histograms(flats, bins, ranges=None, xla=False):
    """Histograms of flat float32 tensors: `(counts [k, bins] float64,
    ranges [k, 2] float32)`.

    Each tensor's finite values (NaN and inf are masked before every
    reduction) in `bins` equal-width buckets over `ranges` (`(lo [k], hi
    [k])`), by default their own finite [min, max] (a single value `v`:
    `[v, v + max(|v|, 1) * 1e-3]`; none: `[0, 1e-3]`), counted by
    `tf.histogram_fixed_width`, or under XLA with its arithmetic
    (`record.histogram` is the same on the host). The range arithmetic is
    done once for every tensor.
    """
    oks = [tf.math.is_finite(f) for f in flats]
    lo, hi = ranges if ranges is not None else _finite_ranges(flats, oks)
    some = lo <= hi
    zero = tf.zeros_like(lo)
    lo, hi = tf.where(some, lo, zero), tf.where(some, hi, zero)
    hi = tf.where(hi > lo, hi, lo + tf.maximum(tf.abs(lo), 1.0) * 1e-3)
    lohi = tf.stack([lo, hi], axis=1)
    counts, nbins = [], tf.constant(bins)
    for flat, ok, low, high, edges in zip(flats, oks, tf.unstack(lo), tf.unstack(hi), tf.unstack(lohi)):
        values = tf.where(ok, flat, low)  # non-finite: into bucket 0, then out
        if xla:  # XLA has no histogram kernel: its arithmetic, op for op
            lo64 = tf.cast(low, tf.float64)
            step = (tf.cast(high, tf.float64) - lo64) / bins
            scaled = (tf.cast(values, tf.float64) - lo64) / step  # values >= lo
            index = tf.cast(tf.minimum(scaled, bins - 1.0), tf.int32)
            counts.append(tf.math.unsorted_segment_sum(tf.ones_like(index), index, bins))
        else:
            counts.append(tf.histogram_fixed_width(values, edges, nbins=nbins))
    axis = tf.constant([0])
    finite = tf.stack([tf.reduce_sum(tf.cast(ok, tf.int32), axis) for ok in oks])
    bad = tf.stack([tf.size(f) for f in flats]) - finite
    counts = tf.stack(counts) - bad[:, None] * tf.one_hot(0, bins, dtype=tf.int32)
    return tf.cast(counts, tf.float64), lohi


def _step_counts(y, axes, fast, nonnegative=False):
    """For a derivative that is a step in the output's sign
    (`StepOfOutput`): per unit, the counts of outputs `> 0` and `<= 0`; a
    NaN output is in neither. `fast` (outputs known to be finite): float
    ops only, and `None` for the second (it is the pairs less the first);
    `nonnegative` (ReLU's outputs): `sign` alone counts. TensorFlow's
    comparisons are not vectorized on CPU: 3-5x slower. `axes` is a
    tensor, shared by the calls."""
    if fast:
        positive = tf.sign(y) if nonnegative else tf.maximum(tf.sign(y), 0.0)
        return tf.reduce_sum(positive, axis=axes), None
    zero = tf.zeros([], y.dtype)
    return (
        tf.reduce_sum(tf.cast(y > zero, tf.float32), axis=axes),
        tf.reduce_sum(tf.cast(y <= zero, tf.float32), axis=axes),
    )


def _step_figures(positive, rest, below, above, saturation_tolerance):
    """`_unit_figures` from `_step_counts`: `|f'|` is `above` where y > 0
    and `below` where y <= 0 (scalars, or arrays with a value per unit)."""
    below, above = np.asarray(below, np.float32), np.asarray(above, np.float32)
    peak = tf.maximum(above * tf.sign(positive), below * tf.sign(rest))
    low = (above < saturation_tolerance).astype(np.float32) * positive
    return peak, low + (below < saturation_tolerance).astype(np.float32) * rest


def _unit_figures(site, x, y, axes, saturation_tolerance, fast=False):
    """One call of a site (`site.track_dead`): per unit (a Maxout piece)
    the largest `|f'|` and the count of pairs with `|f'| <
    saturation_tolerance` (float32). A NaN pair is in neither; `fast`
    (outputs known to be finite, the derivative has an output form): float
    ops only, no masks."""
    if site.pieces is not None:  # Maxout: a piece is alive when it wins
        winner = site.layer.winning_piece(x)
        won = tf.stack([tf.reduce_any(tf.equal(winner, p), axis=axes) for p in range(site.pieces)], axis=-1)
        peak = tf.where(tf.reshape(won, [-1]), np.float32(np.inf), np.float32(0.0))
        return peak, tf.zeros_like(peak)
    derivative = site.of_output
    if isinstance(derivative, StepOfOutput):
        positive, rest = _step_counts(y, axes, fast=False)
        return _step_figures(positive, rest, derivative.below, derivative.above, saturation_tolerance)
    u = y if derivative is not None else tf.cast(x, tf.float32)
    d = tf.abs(tf.cast((derivative or site.derivative)(u), tf.float32))
    if fast:
        return tf.reduce_max(d, axis=axes), tf.reduce_sum(tf.maximum(tf.sign(saturation_tolerance - d), 0.0), axis=axes)
    # A derivative may map NaN to a number (`where(x > 0, 1, slope)`):
    # pairs whose input is NaN are masked explicitly.
    valid = tf.logical_not(tf.math.is_nan(u))
    low = tf.cast(tf.logical_and(d < saturation_tolerance, valid), tf.float32)
    return tf.reduce_max(tf.where(valid, d, 0.0), axis=axes), tf.reduce_sum(low, axis=axes)


def _site_step(site, x, y, axes, dead_tolerance, saturation_tolerance):
    """One call's `(fired, saturated)` of a site, masked: per unit 1.0 when
    some example's `|f'| > dead_tolerance` (else 0.0), and the count of
    pairs with `|f'| < saturation_tolerance` (float32). A NaN pair neither
    fires nor saturates."""
    peak, low = _unit_figures(site, x, y, axes, saturation_tolerance)
    return tf.cast(tf.reshape(peak, [-1]) > dead_tolerance, tf.float32), tf.reduce_sum(low)


def _cat(parts):
    """The tensors concatenated along axis 0 (no op for one; an empty
    float32 vector for none)."""
    if not parts:
        return tf.zeros([0])
    return tf.concat(parts, 0) if len(parts) > 1 else parts[0]


def site_is_step(site):
    """Whether a site's derivative is a step in its output's sign."""
    return site.pieces is None and isinstance(site.of_output, StepOfOutput)


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
        xla: Whether the training step is XLA-compiled.

    The sites' window figures are packed: `fired` holds every site's units
    (site `k`'s at `offsets[k]`), `stats` a row `[saturated pairs, pairs,
    sum, sum of squares]` per site, `hist` and `lohi` a snapshot histogram
    and its range per site.
    """

    def __init__(self, strategy, variables, sites, bins, dead_tolerance, saturation_tolerance, var_key, xla=False):
        self.strategy = strategy
        self.xla = bool(xla)
        self.replicas = strategy.num_replicas_in_sync
        self.bins = int(bins)
        self.dead_tolerance = float(dead_tolerance)
        self.saturation_tolerance = float(saturation_tolerance)
        self.variables = variables
        self.var_key = var_key
        self.key_to_pos = {var_key(v): i for i, (v, _, _) in enumerate(variables)}
        self.watched = [i for i, (_, _, w) in enumerate(variables) if w]
        self.sites = list(sites)
        self.row = {id(s.layer): k for k, s in enumerate(self.sites)}
        self.sizes = [s.units * (s.pieces or 1) for s in self.sites]
        self.offsets = list(np.cumsum([0] + self.sizes)[:-1])
        n, k = max(len(variables), 1), max(len(self.sites), 1)
        with strategy.scope():
            self.flag = tf.Variable(False, trainable=False, name="snapshot_flag")
            self.count = _variable(tf.zeros([], tf.int64), _FIRST, "count")
            self.grad_count = _variable(tf.zeros([], tf.int64), _FIRST, "grad_count")
            self.snap_count = _variable(tf.zeros([], tf.int64), _FIRST, "snap_count")
            self.gsnap_count = _variable(tf.zeros([], tf.int64), _FIRST, "gsnap_count")
            self.sumsq = _variable(tf.zeros([n], tf.float32), _FIRST, "sumsq")
            self.nonfinite = _variable(tf.zeros([n], tf.float64), _FIRST, "nonfinite")
            # The snapshot of the watched gradients, packed in one vector.
            self.cur_sizes = [int(np.prod(variables[i][0].shape)) for i in self.watched]
            self.cur = _variable(tf.zeros([max(sum(self.cur_sizes), 1)], tf.float32), _FIRST, "cur")
            # The watched variables as the last flagged step began, packed.
            self.before = _variable(tf.zeros([max(sum(self.cur_sizes), 1)], tf.float32), _FIRST, "before")
            self.fired = _variable(tf.zeros([max(sum(self.sizes), 1)], tf.float32), _SUM, "fired")
            self.stats = _variable(tf.zeros([k, 4], tf.float64), _SUM, "stats")
            self.hist = _variable(tf.zeros([k, self.bins], tf.float64), _SUM, "hist")
            self.lohi = _variable(tf.zeros([k, 2], tf.float32), _FIRST, "lohi")
        self._flag_value = False
        # Per replica (MirroredStrategy runs each replica's step in a thread
        # of its own): the step's number, and its sites' calls.
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
            "sumsq": self.sumsq.read_value(),
            "nonfinite": self.nonfinite.read_value(),
            "fired": self.fired.read_value(),
            "stats": self.stats.read_value(),
            "hist": self.hist.read_value(),
            "lohi": self.lohi.read_value(),
        }
        if self.watched:
            out["cur"] = self.cur.read_value()
            # Per watched variable: half the sums of squares of its values
            # and of its change since `before` (`l2_loss`, float32).
            values = self._watched_parts()
            before = tf.split(self.before.read_value(), self.cur_sizes) if len(values) > 1 else [self.before.read_value()]
            out["weight_sq"] = tf.stack([tf.nn.l2_loss(v) for v in values])
            out["update_sq"] = tf.stack([tf.nn.l2_loss(v - b) for v, b in zip(values, before)])
        # The resets run after the reads of the same variables: a
        # `tf.function` orders the ops on one variable as written.
        for v in (self.nonfinite, self.fired, self.stats):
            v.assign(tf.zeros(v.shape, v.dtype), read_value=False)
        return out

    def _watched_parts(self):
        """The watched variables' values, each flat float32."""
        shape = tf.constant([-1])
        return [tf.reshape(tf.cast(self.variables[i][0].value, tf.float32), shape) for i in self.watched]

    def _watched_values(self):
        """The watched variables' values, flat float32, packed like `cur`."""
        return _cat(self._watched_parts())

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
        local.flag = self.flag.read_value()
        if self.watched:  # the variables before the step changes them

            def copy():
                with tf.control_dependencies([self.before.assign(self._watched_values(), read_value=False)]):
                    return tf.constant(True)

            tf.cond(local.flag, copy, lambda: tf.constant(False))

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
            grads[pos] = g if g.dtype == tf.float32 else tf.cast(g, tf.float32)
        if not grads:
            return []
        step, flag = self._local.step, self._local.flag  # from `begin_step`
        n = max(len(self.variables), 1)
        zero = tf.zeros([])
        # Half the sums of squares (`l2_loss`: one fused reduction each).
        sumsq = tf.stack([tf.nn.l2_loss(grads[i]) if i in grads else zero for i in range(n)])
        # A sum of squares is not finite exactly when an element is NaN or
        # inf, or the squares overflow (then none is counted).
        finite = tf.math.is_finite(tf.reduce_sum(sumsq))
        order = sorted(grads)

        def flagged_or_not_finite():
            # One flat copy of the gradients, for the snapshot (`cur`) and
            # the NaN/inf count per variable.
            flat_shape = tf.constant([-1])
            parts = {i: tf.reshape(grads[i], flat_shape) for i in order}
            flat = _cat([parts[i] for i in order])

            def count_nonfinite():
                bad = tf.cast(tf.logical_not(tf.math.is_finite(flat)), tf.float64)
                # Each element's variable, found at run time: a constant
                # of one id per element would put the model's size into
                # the graph.
                ends = np.cumsum([int(np.prod(grads[i].shape)) for i in order]).astype(np.int64)
                positions = tf.range(ends[-1], dtype=tf.int64)[None]
                local = tf.raw_ops.UpperBound(sorted_inputs=ends[None], values=positions, out_type=tf.int32)
                segment = tf.gather(np.asarray(order, np.int32), local[0])
                counts = tf.math.unsorted_segment_sum(bad, segment, n)
                with tf.control_dependencies([self.nonfinite.assign_add(counts, read_value=False)]):
                    return tf.constant(True)

            def snapshot():
                cur = flat
                if self.watched != order:
                    pieces = [
                        parts[i] if i in parts else tf.zeros([size])
                        for i, size in zip(self.watched, self.cur_sizes)
                    ]
                    cur = _cat(pieces)
                copies = [self.cur.assign(cur, read_value=False), self.gsnap_count.assign(step, read_value=False)]
                with tf.control_dependencies(copies):
                    return tf.constant(True)

            ops = [tf.cond(finite, lambda: tf.constant(False), count_nonfinite)]
            if self.watched:
                ops.append(tf.cond(flag, snapshot, lambda: tf.constant(False)))
            with tf.control_dependencies(ops):
                return tf.constant(True)

        return [
            self.sumsq.assign(sumsq, read_value=False),
            self.grad_count.assign(step, read_value=False),
            tf.cond(tf.logical_or(flag, tf.logical_not(finite)), flagged_or_not_finite, lambda: tf.constant(False)),
        ]

    def on_site(self, layer, x, y, deferred):
        """One call of an activation site (replica context). A call in the
        step's own graph (`deferred`) is handled with the step's other calls
        in `end_step`; a call in a nested graph at once, masked."""
        k = self.row.get(id(layer))
        if k is None or len(y.shape) < 2:
            return
        site = self.sites[k]
        axis = site.unit_axis % len(y.shape)
        axes = [a for a in range(len(y.shape)) if a != axis]
        # Only the output is read where the derivative has an output form:
        # reading the pre-activation `x` would keep TensorFlow from fusing
        # the activation into its layer's matrix product.
        y32 = tf.cast(tf.stop_gradient(y), tf.float32)
        x = tf.stop_gradient(x) if site.pieces is not None or site.of_output is None else None
        calls = getattr(self._local, "calls", None)
        if deferred and calls is not None:
            calls.append((k, x, y32, axes))
        else:
            self._add_figures([(k, x, y32, axes)], masked_only=True)

    def _add_figures(self, calls, masked_only=False):
        """Adds site calls' window figures: per unit whether it fired, per
        site `[saturated pairs, pairs, sum, sum of squares]`. Each call's
        per-unit figures (`_unit_figures`) use float ops when every output
        sum is finite, which proves there is no NaN or inf, else masked
        comparisons; the thresholds and sums are applied once for every
        call."""
        ys = [y for _, _, y, _ in calls]
        s1 = tf.stack([tf.reduce_sum(y) for y in ys])
        half_s2 = tf.stack([tf.nn.l2_loss(y) for y in ys])
        pairs = tf.cast(tf.stack([tf.size(y) for y in ys]), tf.float32)
        sites = [self.sites[k] for k, _, _, _ in calls]
        tracked = [c for c, site in enumerate(sites) if site.track_dead]
        step = [c for c in tracked if site_is_step(sites[c])]
        other = [c for c in tracked if not site_is_step(sites[c])]
        saturated = tf.zeros([len(calls)], tf.float64)
        if tracked:
            sizes = [self.sizes[k] for k, _, _, _ in calls]
            per_unit = lambda cs: np.repeat(cs, [sizes[c] for c in cs]).astype(np.int32)  # noqa: E731
            tol = self.saturation_tolerance

            def figures(fast):
                def fn():
                    axes = {}  # one constant per distinct reduction
                    for c in step:
                        axes.setdefault(tuple(calls[c][3]), tf.constant(calls[c][3], tf.int32))
                    counts = [
                        _step_counts(calls[c][2], axes[tuple(calls[c][3])], fast, sites[c].of_output.below == 0)
                        for c in step
                    ]
                    positive = _cat([p for p, _ in counts])
                    if fast:  # the pairs of a unit less its positive outputs
                        rest = tf.gather(pairs / np.float32(sizes), per_unit(step)) - positive
                    else:
                        rest = _cat([r for _, r in counts])
                    figs = [
                        _unit_figures(sites[c], *calls[c][1:], tol, fast and sites[c].of_output is not None)
                        for c in other
                    ]
                    peak = _cat([tf.reshape(p, [-1]) for p, _ in figs])
                    low = _cat([tf.reshape(q, [-1]) for _, q in figs])
                    return positive, rest, peak, low

                return fn

            if masked_only:
                positive, rest, peak, low = figures(False)()
            else:
                finite = tf.reduce_all(tf.math.is_finite(tf.concat([s1, half_s2], 0)))
                positive, rest, peak, low = tf.cond(finite, figures(True), figures(False))
            below = np.repeat([sites[c].of_output.below for c in step], [sizes[c] for c in step])
            above = np.repeat([sites[c].of_output.above for c in step], [sizes[c] for c in step])
            step_peak, step_low = _step_figures(positive, rest, below, above, tol)
            peak, low = tf.concat([step_peak, peak], 0), tf.concat([step_low, low], 0)
            fired = tf.cast(peak > self.dead_tolerance, tf.float32)
            order = step + other
            units = np.concatenate([np.arange(sizes[c]) + self.offsets[calls[c][0]] for c in order])
            self.fired.assign_add(
                tf.math.unsorted_segment_sum(fired, units, int(self.fired.shape[0])), read_value=False
            )
            saturated = tf.math.unsorted_segment_sum(tf.cast(low, tf.float64), per_unit(order), len(calls))
        rows = tf.stack([saturated] + [tf.cast(v, tf.float64) for v in (pairs, s1, 2.0 * half_s2)], axis=1)
        rows = tf.math.unsorted_segment_sum(rows, [k for k, _, _, _ in calls], int(self.stats.shape[0]))
        self.stats.assign_add(rows, read_value=False)

    def end_step(self):
        """Ends a step: the window figures of its site calls
        (`_add_figures`), then, on a flagged step, the snapshot (the
        histograms of the step's site outputs and `snap_count`), then the
        step's count. With several replicas the histogram edges span every
        replica's range (an all-reduce), so the counts add up."""
        local = self._local
        calls, step, flag = local.calls, local.step, local.flag
        local.calls = local.step = None
        if calls:
            self._add_figures(calls)

        by_site, flat_shape = {}, tf.constant([-1])
        for k, _, y, _ in calls:
            by_site.setdefault(k, []).append(tf.reshape(y, flat_shape))
        present = sorted(by_site)
        flats = [_cat(by_site[k]) for k in present]
        ranges = None
        if self.replicas > 1 and flats:  # an all-reduce: outside the conditional
            ranges = self._global_ranges(flats)

        def snapshot():
            ops = [self.snap_count.assign(step, read_value=False)]
            if flats:
                hists, lohis = histograms(flats, self.bins, ranges, self.xla)
                rows = [[k] for k in present]
                ops.append(self.hist.assign(tf.tensor_scatter_nd_update(self.hist.read_value(), rows, hists)))
                ops.append(self.lohi.assign(tf.tensor_scatter_nd_update(self.lohi.read_value(), rows, lohis)))
            with tf.control_dependencies(ops):
                return tf.constant(True)

        done = tf.cond(flag, snapshot, lambda: tf.constant(False))
        with tf.control_dependencies([done]):
            self.count.assign(step)

    def _global_ranges(self, flats):
        """`(lo [k], hi [k])` of the finite values over every replica
        (replica context): each replica puts its own mins and maxes in its
        slot of a `[2, k, replicas]` tensor, and one sum all-reduce gathers
        the slots."""
        ctx = tf.distribute.get_replica_context()
        lo, hi = _finite_ranges(flats, [tf.math.is_finite(f) for f in flats])
        slot = tf.one_hot(ctx.replica_id_in_sync_group, self.replicas, dtype=tf.float32)
        mine = slot > 0
        parts = tf.stack([tf.where(mine, lo[:, None], 0.0), tf.where(mine, hi[:, None], 0.0)])
        parts = ctx.all_reduce(tf.distribute.ReduceOp.SUM, parts)
        return tf.reduce_min(parts[0], axis=1), tf.reduce_max(parts[1], axis=1)

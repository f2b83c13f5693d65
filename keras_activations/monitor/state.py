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
reads everything (the gradient snapshot and the watched variables' values
included) and resets the window sums; the host computes the figures
(`record`): norms, the gradient histograms, the cosine with the previous
record's snapshot and the update ratios.

Histograms (`histograms`, and `record.histogram` for the gradients on the
host, the same arithmetic) count finite values in `bins` equal-width
buckets over their own finite [min, max], widened a little when that is a
single value.
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


def _finite_min_max(flat, ok):
    """Min and max of the values where `ok` (NaN and inf masked before the
    reductions): `(inf, -inf)` when there are none."""
    return tf.reduce_min(tf.where(ok, flat, np.inf)), tf.reduce_max(tf.where(ok, flat, -np.inf))


def _range(lo, hi):
    """`[lo, hi]`, or `[0, 0]` when `_finite_min_max` found no value."""
    some = lo <= hi
    return tf.stack([tf.where(some, lo, 0.0), tf.where(some, hi, 0.0)])


def _histogram(flat, bins, lohi, xla):
    """`(counts [bins] int32, [lo, hi])` of one flat float32 tensor's finite
    values (see `histograms`)."""
    ok = tf.math.is_finite(flat)
    if lohi is None:
        lohi = _range(*_finite_min_max(flat, ok))
    lo, hi = lohi[0], lohi[1]
    hi = tf.where(hi > lo, hi, lo + tf.maximum(tf.abs(lo), 1.0) * 1e-3)
    values = tf.where(ok, flat, lo)  # non-finite: into bucket 0, then out
    if xla:  # XLA has no histogram kernel: its arithmetic, op for op
        lo64 = tf.cast(lo, tf.float64)
        step = (tf.cast(hi, tf.float64) - lo64) / bins
        scaled = (tf.cast(tf.maximum(values, lo), tf.float64) - lo64) / step
        index = tf.cast(tf.minimum(scaled, bins - 1.0), tf.int32)
        counts = tf.math.unsorted_segment_sum(tf.ones_like(index), index, bins)
    else:
        counts = tf.histogram_fixed_width(values, tf.stack([lo, hi]), nbins=bins)
    bad = tf.size(flat) - tf.reduce_sum(tf.cast(ok, tf.int32))
    return counts - tf.one_hot(0, bins, dtype=tf.int32) * bad, tf.stack([lo, hi])


def histograms(flats, bins, ranges=None, xla=False):
    """Histograms of flat float32 tensors: `(counts [k, bins] float64,
    ranges [k, 2] float32)`.

    Each tensor's finite values (NaN and inf are masked before every
    reduction) in `bins` equal-width buckets over `ranges[i]`, by default
    their own [min, max] (a single value `v`: `[v, v + max(|v|, 1) *
    1e-3]`; none: `[0, 1e-3]`), counted by `tf.histogram_fixed_width`, or
    under XLA with its arithmetic (`record.histogram` is the same on the
    host).
    """
    ranges = ranges or [None] * len(flats)
    pairs = [_histogram(f, bins, r, xla) for f, r in zip(flats, ranges)]
    return tf.cast(tf.stack([c for c, _ in pairs]), tf.float64), tf.stack([r for _, r in pairs])


def _fast_site_step(site, y, axes, dead_tolerance, saturation_tolerance):
    """`_site_step` for outputs known to be finite, with float ops only
    (TensorFlow's comparison ops are not vectorized on CPU: 3-5x slower)."""
    derivative = site.of_output
    if isinstance(derivative, StepOfOutput):  # |f'| is `above` where y > 0
        positive = tf.reduce_sum(tf.maximum(tf.sign(y), 0.0), axis=axes)
        total = tf.reduce_sum(positive)
        pairs = tf.cast(tf.size(y), tf.float32)
        fired = tf.zeros_like(positive)
        if derivative.above > dead_tolerance:
            fired = tf.sign(positive)
        if derivative.below > dead_tolerance:
            fired = tf.sign(pairs / tf.cast(tf.size(positive), tf.float32) - positive) + fired
        saturated = tf.constant(0.0)
        if derivative.below < saturation_tolerance:
            saturated += pairs - total
        if derivative.above < saturation_tolerance:
            saturated += total
        return tf.sign(fired), saturated
    d = tf.abs(tf.cast(derivative(y), tf.float32))
    fired = tf.sign(tf.maximum(tf.reduce_max(d, axis=axes) - dead_tolerance, 0.0))
    saturated = tf.reduce_sum(tf.maximum(tf.sign(saturation_tolerance - d), 0.0))
    return fired, saturated


def _site_step(site, x, y, axes, dead_tolerance, saturation_tolerance):
    """One call's `(fired, saturated)` of a site (`site.track_dead`), with
    explicit masks: per unit 1.0 when some example's
    `|f'| > dead_tolerance` (else 0.0), and the count of pairs with
    `|f'| < saturation_tolerance` (float32). A NaN pair neither fires nor
    saturates."""
    if site.pieces is not None:  # Maxout: a piece is alive when it wins
        winner = site.layer.winning_piece(x)
        won = [tf.reduce_any(tf.equal(winner, p), axis=axes) for p in range(site.pieces)]
        return tf.cast(tf.reshape(tf.stack(won, axis=-1), [-1]), tf.float32), tf.constant(0.0)
    derivative = site.of_output
    if isinstance(derivative, StepOfOutput):  # |f'| is `above` where y > 0
        fired, saturated = None, tf.constant(0.0)
        for value, side in ((derivative.above, y > 0), (derivative.below, y <= 0)):
            if value > dead_tolerance:
                some = tf.reduce_any(side, axis=axes)
                fired = some if fired is None else tf.logical_or(fired, some)
            if value < saturation_tolerance:
                saturated += tf.reduce_sum(tf.cast(side, tf.float32))
        if fired is None:  # no unit can fire
            fired = tf.reduce_any(tf.zeros_like(y, tf.bool), axis=axes)
        return tf.cast(fired, tf.float32), saturated
    u = y if derivative is not None else tf.cast(x, tf.float32)
    d = tf.abs(tf.cast((derivative or site.derivative)(u), tf.float32))
    # A derivative may map NaN to a number (`where(x > 0, 1, slope)`):
    # pairs whose input is NaN are masked explicitly.
    valid = tf.logical_not(tf.math.is_nan(u))
    fired = tf.reduce_any(tf.logical_and(d > dead_tolerance, valid), axis=axes)
    saturated = tf.logical_and(d < saturation_tolerance, valid)
    return tf.cast(fired, tf.float32), tf.reduce_sum(tf.cast(saturated, tf.float32))


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
            out["before"] = self.before.read_value()
            out["weights"] = self._watched_values()
        with tf.control_dependencies(list(out.values())):
            resets = [v.assign(tf.zeros_like(v)) for v in (self.nonfinite, self.fired, self.stats)]
        with tf.control_dependencies(resets):
            return {k: tf.identity(v) for k, v in out.items()}

    def _watched_values(self):
        """The watched variables' values, flat float32, packed like `cur`."""
        parts = [tf.reshape(tf.cast(self.variables[i][0].value, tf.float32), [-1]) for i in self.watched]
        return tf.concat(parts, 0) if len(parts) > 1 else parts[0]

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

        def count_nonfinite():  # one pass over all gradients
            flat = tf.concat([tf.reshape(g, [-1]) for g in grads.values()], 0)
            segment = tf.repeat(list(grads), [int(np.prod(g.shape)) for g in grads.values()])
            bad = tf.cast(tf.logical_not(tf.math.is_finite(flat)), tf.float64)
            counts = tf.math.unsorted_segment_sum(bad, segment, n)
            with tf.control_dependencies([self.nonfinite.assign_add(counts, read_value=False)]):
                return tf.constant(True)

        ops = [
            self.sumsq.assign(sumsq, read_value=False),
            self.grad_count.assign(step, read_value=False),
            tf.cond(finite, lambda: tf.constant(False), count_nonfinite),
        ]
        if self.watched:

            def snapshot():
                parts = [
                    tf.reshape(grads[i], [-1]) if i in grads else tf.zeros([size])
                    for i, size in zip(self.watched, self.cur_sizes)
                ]
                copies = [
                    self.cur.assign(tf.concat(parts, 0) if len(parts) > 1 else parts[0], read_value=False),
                    self.gsnap_count.assign(step, read_value=False),
                ]
                with tf.control_dependencies(copies):
                    return tf.constant(True)

            ops.append(tf.cond(flag, snapshot, lambda: tf.constant(False)))
        return ops

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
            return
        fired, saturated = self._figures(k, x, y32, axes, fast=False)
        total = int(self.fired.shape[0])
        start, size = int(self.offsets[k]), self.sizes[k]
        if fired is not None:
            self.fired.assign_add(tf.pad(fired, [[start, total - start - size]]))
        row = self._row(saturated, y32, tf.reduce_sum(y32), tf.nn.l2_loss(y32))
        self.stats.assign_add(tf.scatter_nd([[k]], row[None], self.stats.shape))

    def _figures(self, k, x, y, axes, fast):
        site = self.sites[k]
        if not site.track_dead:
            return None, tf.constant(0.0)
        args = (axes, self.dead_tolerance, self.saturation_tolerance)
        if fast and site.pieces is None and site.of_output is not None:
            fired, saturated = _fast_site_step(site, y, *args)
        else:
            fired, saturated = _site_step(site, x, y, *args)
        return tf.reshape(fired, [-1]), saturated

    @staticmethod
    def _row(saturated, y32, s1, half_s2):
        return tf.cast(
            tf.stack([saturated, tf.cast(tf.size(y32), tf.float32), s1, 2.0 * half_s2]), tf.float64
        )

    def end_step(self):
        """Ends a step: the figures of its site calls (float ops when every
        output sum is finite, else masked), then, on a flagged step, the
        snapshot (the histograms of the step's site outputs and
        `snap_count`), then the step's count. With several replicas the
        histogram edges span every replica's range (an all-reduce), so the
        counts add up."""
        local = self._local
        calls, step, flag = local.calls, local.step, local.flag
        local.calls = local.step = None
        sums = [(tf.reduce_sum(y), tf.nn.l2_loss(y)) for _, _, y, _ in calls]
        finite = tf.constant(True)
        if sums:
            finite = tf.reduce_all(tf.math.is_finite(tf.stack([v for pair in sums for v in pair])))

        def figures(fast):
            def fn():
                fired = [tf.zeros([n]) for n in self.sizes]
                saturated = [tf.constant(0.0)] * len(calls)
                for c, (k, x, y, axes) in enumerate(calls):
                    f, saturated[c] = self._figures(k, x, y, axes, fast)
                    if f is not None:
                        fired[k] = fired[k] + f
                return (tf.concat(fired, 0) if fired else tf.zeros([1])), tf.stack(saturated)

            return fn

        if calls:
            fired, saturated = tf.cond(finite, figures(True), figures(False))
            rows = [tf.zeros([4], tf.float64)] * max(len(self.sites), 1)
            for c, ((k, _, y, _), (s1, half_s2)) in enumerate(zip(calls, sums)):
                rows[k] = rows[k] + self._row(saturated[c], y, s1, half_s2)
            self.fired.assign_add(fired)
            self.stats.assign_add(tf.stack(rows))

        by_site = {}
        for k, _, y, _ in calls:
            by_site.setdefault(k, []).append(tf.reshape(y, [-1]))
        present = sorted(by_site)
        flats = [tf.concat(by_site[k], 0) if len(by_site[k]) > 1 else by_site[k][0] for k in present]
        ranges = None
        if self.replicas > 1 and flats:  # an all-reduce: outside the conditional
            ranges = [self._global_range(flat) for flat in flats]

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

    def _global_range(self, flat):
        """`[lo, hi]` of the finite values over every replica (replica
        context): each replica puts its own min and max in its slot of a
        `[2, replicas]` tensor, and a sum all-reduce gathers the slots."""
        ctx = tf.distribute.get_replica_context()
        lo, hi = _finite_min_max(flat, tf.math.is_finite(flat))
        slot = tf.one_hot(ctx.replica_id_in_sync_group, self.replicas, dtype=tf.float32)
        mine = slot > 0
        parts = tf.stack([tf.where(mine, lo, 0.0), tf.where(mine, hi, 0.0)])
        parts = ctx.all_reduce(tf.distribute.ReduceOp.SUM, parts)
        return _range(tf.reduce_min(parts[0]), tf.reduce_max(parts[1]))

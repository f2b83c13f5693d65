"""`GradientMonitor`: gradient, dead-unit and activation records during fit."""

import functools
import numbers
import os
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_activations.monitor import accumulators
from keras_activations.monitor import events
from keras_activations.monitor import figures
from keras_activations.monitor import history as history_lib
from keras_activations.monitor import sites as sites_lib
from keras_activations.monitor import writer as writer_lib
from keras_activations.monitor.patches import Patches

_ENDS_OF_DATA = (StopIteration, tf.errors.OutOfRangeError)


class GradientMonitor(keras.callbacks.Callback):
    """Records gradients, dead units and activations during `fit`.

    Everything is measured inside the compiled training step from the
    gradients the optimizer applies and the activations the forward pass
    computes: no second forward or backward pass. Once per record the
    window's accumulators (bin counts and scalars) come to the host as one
    vector, handed over by the window's last step or read by a small
    compiled function. The host queues these vectors and computes the
    figures, writes the TensorBoard events and checks for dead units of up
    to 64 queued records at once (every 2 seconds at most, at once with one
    record per epoch, at the end of `fit`, and whenever `history` is read).

    One record per window (`update_freq`) holds, for every watched layer
    (TensorBoard tag in brackets):

    - a histogram of the applied gradient of each watched trainable variable
      [`gradients/<variable path>`], of the window's last step: after the
      loss scale is taken out (mixed precision) and after the all-reduce
      (`tf.distribute`);
    - the L2 norm of each variable's gradient, each layer's and the global
      norm, of the window's last step [`gradient_norm/...`];
    - the count of NaN/inf gradient elements per variable over the window
      [`nonfinite_gradients/...`]; they are left out of the histograms;
    - the cosine between this record's gradient of a layer and the previous
      record's [`gradient_cosine/<layer>`];
    - per activation site: dead units over the window (units whose
      derivative's absolute value was <= `dead_tolerance` for every example)
      [`dead_units/<layer>`, `dead_fraction/<layer>`], the share of
      unit-example pairs with |derivative| < `saturation_tolerance`
      [`saturation/<layer>`], the mean and standard deviation of the outputs
      over the window [`activation_mean/<layer>`, `activation_std/<layer>`]
      and a histogram of the outputs of the window's last step
      [`activations/<layer>`];
    - a picture of gradient norm, dead fraction and activation mean against
      depth [`depth_profile`].

    Args:
        log_dir: Directory for TensorBoard event files, or `None` to keep
            the records in memory only (`monitor.history`). Defaults to
            `None`.
        update_freq: `"epoch"` for one record per epoch, or an integer `N`
            for one record every `N` training steps (counted over the
            whole fit, like `keras.callbacks.TensorBoard`). Defaults to
            `"epoch"`.
        bins: Number of histogram buckets. Defaults to `30`.
        dead_tolerance: A unit is dead in a window when its activation's
            derivative was <= this for every example. Defaults to `0.0`.
        saturation_tolerance: A unit-example pair is saturated when the
            derivative is below this. Defaults to `1e-3`.
        layers: `None` to watch every layer with trainable weights and every
            activation site, or a list of layer names or layer objects.
            Defaults to `None`.
        dead_warning_threshold: Warn once per layer when its dead fraction
            reaches this. `None` disables the warning. Defaults to `0.1`.
        write_images: Whether to write the depth-profile picture with each
            record. Defaults to `True`.

    Example:

    ```python
    monitor = keras_activations.GradientMonitor(log_dir="logs/run1")
    model.fit(x, y, epochs=5, callbacks=[monitor])
    print(monitor.table())
    monitor.to_csv("logs/run1/monitor.csv")
    ```

    Then `tensorboard --logdir logs`.
    """

    def __init__(
        self,
        log_dir=None,
        update_freq="epoch",
        bins: int = 30,
        dead_tolerance: float = 0.0,
        saturation_tolerance: float = 1e-3,
        layers=None,
        dead_warning_threshold=0.1,
        write_images: bool = True,
    ):
        super().__init__()
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(
                "GradientMonitor: argument `log_dir` must be a path (str or "
                f"os.PathLike) or None. Received: log_dir={log_dir!r}"
            )
        if update_freq != "epoch" and (
            isinstance(update_freq, bool)
            or not isinstance(update_freq, numbers.Integral)
            or update_freq < 1
        ):
            raise ValueError(
                "GradientMonitor: argument `update_freq` must be 'epoch' or "
                f"an integer >= 1. Received: update_freq={update_freq!r}"
            )
        if (
            isinstance(bins, bool)
            or not isinstance(bins, numbers.Integral)
            or bins < 1
        ):
            raise ValueError(
                "GradientMonitor: argument `bins` must be an integer >= 1. "
                f"Received: bins={bins!r}"
            )
        for arg, value in (
            ("dead_tolerance", dead_tolerance),
            ("saturation_tolerance", saturation_tolerance),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not value >= 0
                or not np.isfinite(value)
            ):
                raise ValueError(
                    f"GradientMonitor: argument `{arg}` must be a finite "
                    f"number >= 0. Received: {arg}={value!r}"
                )
        if dead_warning_threshold is not None and (
            isinstance(dead_warning_threshold, bool)
            or not isinstance(dead_warning_threshold, numbers.Real)
            or not 0 < dead_warning_threshold <= 1
        ):
            raise ValueError(
                "GradientMonitor: argument `dead_warning_threshold` must be "
                "a number in (0, 1] or None. Received: "
                f"dead_warning_threshold={dead_warning_threshold!r}"
            )
        if layers is not None:
            if isinstance(layers, (str, keras.layers.Layer)):
                layers = [layers]
            layers = list(layers)
            for item in layers:
                if not isinstance(item, (str, keras.layers.Layer)):
                    raise TypeError(
                        "GradientMonitor: argument `layers` must be None or "
                        "a list of layer names or layers. Received an item "
                        f"{item!r} of type {type(item).__name__}."
                    )
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.update_freq = update_freq
        self.bins = int(bins)
        self.dead_tolerance = float(dead_tolerance)
        self.saturation_tolerance = float(saturation_tolerance)
        self.layers = layers
        self.dead_warning_threshold = dead_warning_threshold
        self.write_images = bool(write_images)
        self._records = []  # built records
        self._packed = []  # (packed figures, program, window) not yet unpacked
        self._pending = []  # raw records whose figures are not computed yet
        self._flushed = 0.0
        self._raw = None
        self._program = None
        self._events = None
        self._encoder = events.Encoder()
        self._step = 0
        self._patches = Patches()
        self._state = None
        self._active = False
        self._warned = set()

    # ---- public helpers ---------------------------------------------------

    @property
    def history(self):
        """Every record so far, oldest first, as plain Python/NumPy data
        (docs/CONTRACTS.md, "GradientMonitor history"). Records are unpacked
        from the device's vectors when this is read, not during training."""
        self._flush()
        if self._packed:
            for flat, program, window in self._packed:
                self._records.append(program.record(flat, **window))
            self._packed = []
        return self._records

    @history.setter
    def history(self, records):
        self._flush()
        self._packed = []
        self._records = list(records)

    def to_rows(self):
        """One flat dict per (record, layer); see `history.ROW_KEYS`."""
        return history_lib.to_rows(self.history)

    def to_csv(self, path):
        """Writes `to_rows()` to `path` as CSV; returns the row count."""
        return history_lib.to_csv(self.history, path)

    def table(self, last=True):
        """The last record (or, with `last=False`, all) as a text table."""
        records = self.history[-1:] if last else self.history
        return history_lib.format_table(history_lib.to_rows(records))

    def close(self):
        """Flushes and closes the event files and undoes every patch.

        Called by `fit` at the end of training and when a training step
        raises; call it yourself if an exception ended `fit` elsewhere.
        """
        self._active = False
        try:
            self._flush()
        finally:
            self._close_files()

    def _close_files(self):
        try:
            if self._events is not None:
                self._events.close()
        finally:
            self._events = None
            self._program = None
            self._patches.undo()
            model = getattr(self, "_model", None)
            if model is not None and getattr(self, "_patched_model", False):
                # The traced step holds the hooks: make fit build a clean one.
                model.train_function = None
                self._patched_model = False

    # ---- Keras hooks --------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.close()  # a fit that ended by an exception elsewhere
        model = self.model
        if not getattr(model, "compiled", False) or model.optimizer is None:
            raise RuntimeError(
                "GradientMonitor: the model must be compiled with an "
                "optimizer before `fit`. Call `model.compile(optimizer=..., "
                "loss=...)` first."
            )
        if not model.built:
            raise RuntimeError(
                "GradientMonitor: the model is not built. Build it (call it "
                "on a batch, or give it an Input) before `fit`."
            )
        optimizer = model.optimizer
        while getattr(optimizer, "inner_optimizer", None) is not None:
            optimizer = optimizer.inner_optimizer
        if not hasattr(optimizer, "_all_reduce_sum_gradients"):
            raise RuntimeError(
                "GradientMonitor needs the TensorFlow backend (got optimizer "
                f"{type(optimizer).__name__} without TF gradient hooks)."
            )
        self._watched, sites, self._variables = sites_lib.select(
            model, self.layers
        )
        self._sites = sites
        if self.log_dir is not None:
            writer_lib.check_writable(self.log_dir)
        self._program = None
        self._optimizer = optimizer
        self._state = None
        self._mode = None
        self._order = [name for name, _ in self._watched]
        self._fit_started = False
        self._window_steps = 0
        self._dstep = 0
        self._window_start_dstep = 0
        self._snap = False  # the next execution ends a window (int freq)
        self._epoch_calls = 0
        self._executions = 0  # train function calls since the last record
        self._prev_valid = False
        self._raw = None  # accumulators the last snapshot step read and reset
        self._epoch = 0
        self._install(model, optimizer, sites)
        self._active = True

    @property
    def async_safe(self):
        """With one record per epoch the monitor needs no batch hook, so
        Keras may run its batch-end callbacks in a thread and keep
        dispatching steps (`keras.callbacks.CallbackList`)."""
        return self.update_freq == "epoch"

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_calls = 0
        if self._fit_started:
            return
        self._fit_started = True
        steps = self._epoch_steps()
        if epoch > 0 and steps:
            self._step = epoch * steps  # resumed (BackupAndRestore) fit
        if self._step > 0:
            self.history = [r for r in self.history if r["step"] <= self._step]
            if self.log_dir is not None:
                writer_lib.truncate_after(self.log_dir, self._step)

    def on_train_batch_begin(self, batch, logs=None):
        if self.update_freq == "epoch":
            return
        self._batch_begin = batch
        steps, per_execution = self._epoch_steps(), self._steps_per_execution()
        count = per_execution if not steps else min(per_execution, steps - batch)
        self._snap = self._window_steps + count >= self.update_freq

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch":
            return  # may run in Keras's callback thread: touch nothing
        done = batch - getattr(self, "_batch_begin", batch) + 1
        self._dstep += done
        self._step += done
        self._window_steps += done
        if self.update_freq != "epoch" and self._window_steps >= self.update_freq:
            self._record()

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch" and self._state is not None:
            self._record()

    def on_train_end(self, logs=None):
        try:
            if self._window_open():
                self._record()
        finally:
            self.close()

    # ---- patching -----------------------------------------------------------

    def _install(self, model, optimizer, sites):
        patches = self._patches
        monitor = self

        original_reduce = optimizer._all_reduce_sum_gradients

        def all_reduce_sum_gradients(grads_and_vars):
            reduced = original_reduce(grads_and_vars)
            if monitor._mode == "train" and monitor._state is not None:
                done = monitor._state.record_gradients(reduced)
                if done:
                    reduced = _after(done, reduced)
            return reduced

        patches.set(optimizer, "_all_reduce_sum_gradients", all_reduce_sum_gradients)

        for site in sites:
            self._install_site(site)

        original_step = model.train_step

        def train_step(data):
            previous = monitor._mode
            monitor._mode = "train"
            try:
                if monitor._state is not None:
                    # Count the step only once its batch exists: the end of
                    # a dataset of unknown length raises in `get_next`, and
                    # nothing else orders the count after it.
                    first = [t for t in tf.nest.flatten(data) if t is not None]
                    with tf.control_dependencies(first[:1]):
                        monitor._state.begin_step()
                    result = original_step(data)
                    state = monitor._state
                    state.end_step()
                    if state.finalizes and isinstance(result, dict):
                        result = dict(result)
                        result[_RECORD_KEY] = state.read_packed()
                    return result
                return original_step(data)
            finally:
                monitor._mode = previous

        patches.set(model, "train_step", train_step)
        # Two compiled functions (each traced on its first call): snapshot
        # steps (`DeviceState.snapshot`) and the others.
        model.make_train_function(force=True)
        plain = model.train_function
        model.make_train_function(force=True)
        snapshot = model.train_function

        def train_function(iterator):
            if monitor._state is None:
                monitor._setup(iterator)
            state = monitor._state
            state.snapshot = monitor._snapshot_next()
            monitor._executions += 1
            try:
                logs = (snapshot if state.snapshot else plain)(iterator)
                if isinstance(logs, dict) and _RECORD_KEY in logs:
                    logs = dict(logs)  # Keras and other callbacks never see it
                    monitor._raw = logs.pop(_RECORD_KEY)
                return logs
            except _ENDS_OF_DATA:
                raise
            except BaseException:
                monitor._abort()
                raise
            finally:
                state.snapshot = False

        object.__setattr__(model, "train_function", train_function)
        self._patched_model = True

    def _install_site(self, site):
        monitor = self
        layer = site.layer

        def hook(x, y):
            if monitor._mode == "train" and monitor._state is not None:
                monitor._state.record_site(site, x, y)
            elif monitor._mode == "discover":
                monitor._discovered[id(site)] = y.shape

        if site.kind == "attribute":
            original = vars(layer)["activation"]

            def activation(x, *args, **kwargs):
                y = original(x, *args, **kwargs)
                hook(x, y)
                return y

            try:
                activation = functools.wraps(original)(activation)
            except (AttributeError, TypeError):
                pass
            self._patches.set(layer, "activation", activation)
            self._patches.register_name(activation, original)
        else:
            original = layer.call

            def call(*args, **kwargs):
                y = original(*args, **kwargs)
                x = args[0] if args else kwargs.get("inputs")
                if x is not None:
                    hook(x, y)
                return y

            self._patches.set(layer, "call", call)

    def _discover(self, iterator):
        """Traces the forward pass symbolically once to learn the shape of
        every site (and the call order of layers): no data is computed."""
        from keras.src import tree
        from keras.src.trainers.data_adapters import data_adapter_utils

        spec = getattr(iterator, "element_spec", None)
        if spec is None:
            return False
        if hasattr(spec, "_value_specs"):
            spec = spec._value_specs[0]
        x_spec, _, _ = data_adapter_utils.unpack_x_y_sample_weight(spec)

        def to_keras(s):
            if s is None:
                return None
            if hasattr(s, "_value_specs"):  # PerReplicaSpec (tf.distribute)
                s = s._value_specs[0]
            shape = getattr(s, "shape", None)
            return keras.KerasTensor(
                tuple(shape), keras.backend.standardize_dtype(s.dtype)
            )

        x = tree.map_structure(to_keras, x_spec)
        order = []
        temp = Patches()
        for name, layer in self._watched:
            original = layer.call

            def call(*args, _name=name, _original=original, **kwargs):
                if _name not in order:
                    order.append(_name)
                return _original(*args, **kwargs)

            temp.set(layer, "call", call)
        self._mode = "discover"
        try:
            keras.src.backend.compute_output_spec(
                self.model, x, training=True
            )
        except Exception as e:  # pragma: no cover - exotic models
            warnings.warn(
                "GradientMonitor: could not trace the model symbolically to "
                f"size its activation sites ({type(e).__name__}: {e}); they "
                "are not recorded.",
                stacklevel=3,
            )
            return False
        finally:
            self._mode = None
            temp.undo()
        rest = [name for name, _ in self._watched if name not in order]
        self._order = order + rest
        return True

    def _setup(self, iterator):
        self._discovered = {}
        self._discover(iterator)
        ready = []
        for site in self._sites:
            shape = self._discovered.get(id(site))
            units = None
            if shape is not None and len(shape) >= 2:
                units = shape[site.unit_axis % len(shape)]
            if units is None:
                self._warn_once(
                    ("size", site.name),
                    f"GradientMonitor: cannot tell the units of the "
                    f"activation of layer {site.name!r}; it is not recorded.",
                )
                continue
            site.units = int(units)
            if site.derivative is None and site.pieces is None:
                self._warn_once(
                    ("derivative", site.name),
                    "GradientMonitor: no derivative known for activation "
                    f"{site.activation_name!r} of layer {site.name!r}; its "
                    "dead units and saturation are not recorded (its mean, "
                    "std and histogram are). Supported: "
                    + ", ".join(
                        sites_lib.builtin_derivatives.SUPPORTED_ACTIVATIONS
                    )
                    + " and this package's activations.",
                )
            ready.append(site)
        self._ready_sites = {site.name: site for site in ready}
        self._state = accumulators.DeviceState(
            self.model.distribute_strategy,
            self._variables,
            ready,
            self.bins,
            self.dead_tolerance,
            self.saturation_tolerance,
            use_segment_sum=bool(getattr(self.model, "jit_compile", False)),
            var_key=self._optimizer._var_key,
            one_snapshot=self._steps_per_execution() == 1
            and (self.update_freq != "epoch" or bool(self._epoch_steps())),
        )
        self._program = figures.RecordProgram(
            self._state,
            self._variables,
            self._watched,
            self._ready_sites,
            self._order,
            self.bins,
        )
        if self.log_dir is not None:
            self._events = events.EventFile(self.log_dir)

    def _snapshot_next(self):
        """Whether the next execution takes the window's snapshot: it holds
        the window's last step (with one record per epoch, the epoch's last
        step; every step when the epoch's length is unknown)."""
        if self.update_freq != "epoch":
            return self._snap
        self._epoch_calls += 1
        steps = self._epoch_steps()
        if not steps:
            return True
        return self._epoch_calls * self._steps_per_execution() >= steps

    def _epoch_steps(self):
        """Steps in an epoch, or None when the data's length is unknown."""
        return self.params.get("steps") if self.params else None

    def _steps_per_execution(self):
        return int(getattr(self.model, "steps_per_execution", 1) or 1)

    def _abort(self):
        """A training step raised: keep what was measured, close files."""
        try:
            if self._window_open():
                self._record()
        except Exception:  # the device may be unusable: keep the rest
            pass
        finally:
            self.close()

    # ---- records ------------------------------------------------------------

    def _window_open(self):
        """Whether the current window may hold unrecorded steps. With one
        record per epoch the host does not count steps (the device does),
        only the train function's calls since the last record: after the
        epoch's own record none may be open, and reading would trace the
        record program for nothing (about 60 ms at the end of every fit)."""
        if self._state is None:
            return False
        if self.update_freq == "epoch":
            return self._executions > 0
        return self._window_steps > 0

    def _record(self):
        """Ends a window: takes its raw accumulators (handed over by its
        snapshot step, or read by the record program) and queues them. The
        figures and events of queued records are made together
        (`_flush`)."""
        program = self._program
        self._executions = 0
        raw, self._raw = self._raw, None  # from the snapshot step, if it read them
        raw = program.read(raw)
        start = self._window_start_dstep
        dstep = int(program.raw_value(raw, "dstep"))
        steps = dstep - start
        self._window_steps = 0
        self._window_start_dstep = self._dstep = dstep
        if steps <= 0:
            return
        if self.update_freq == "epoch":
            self._step += steps  # no batch hook counted them
        window = dict(step=self._step, epoch=self._epoch, steps=steps)
        self._pending.append((raw, start, self._prev_valid, window, time.time()))
        if program.raw_value(raw, "snap_dstep") > start:
            self._prev_valid = True
        if (
            self.update_freq == "epoch"
            or len(self._pending) >= _FLUSH_RECORDS
            or time.monotonic() - self._flushed >= _FLUSH_SECONDS
        ):
            self._flush()

    def _flush(self):
        """Computes the figures of the queued records, writes their events
        and checks their dead units, for all of them at once."""
        pending, self._pending = self._pending, []
        self._flushed = time.monotonic()
        if not pending:
            return
        program = self._program
        raws, starts, prev_valids, windows, wall_times = zip(*pending)
        flats = program.figures(np.stack(raws), starts, prev_valids)
        self._packed += [(flat, program, w) for flat, w in zip(flats, windows)]
        steps = [w["step"] for w in windows]
        if self._events is not None:
            program.write_events(
                self._events, self._encoder, flats, steps, wall_times, self.write_images
            )
        self._check_dead(flats, program, steps)

    def _check_dead(self, flats, program, steps):
        if self.dead_warning_threshold is None or not program.tracked:
            return
        for name, (fraction, dead, units) in program.dead(flats).items():
            over = np.flatnonzero(fraction >= self.dead_warning_threshold)
            if over.size:
                i = over[0]
                self._warn_once(
                    ("dead", name),
                    f"GradientMonitor: {fraction[i]:.0%} of the units of layer "
                    f"{name!r} are dead ({int(dead[i])} of {units}) at step "
                    f"{steps[i]}.",
                )

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)


# Queued records are flushed (figures, events, dead-unit warnings) when this
# many are queued or this many seconds passed since the last flush, and at
# the end of fit; with one record per epoch, at once.
_FLUSH_RECORDS = 64
_FLUSH_SECONDS = 2.0

# The key of the raw accumulators in a finalizing step's logs (popped by the
# callback's train function before Keras sees the logs).
_RECORD_KEY = "__gradient_monitor_record__"


def _after(done, grads_and_vars):
    """`grads_and_vars` with each dense gradient read only after `done`.

    The monitor's reads of a gradient then finish before the optimizer's,
    so the optimizer's update can reuse the gradient's buffer in place
    (TensorFlow forwards a buffer only to its last reader): without this
    every update allocated a fresh buffer, which cost more than the
    monitor's own reductions.
    """
    out = []
    with tf.control_dependencies(done):
        for g, v in grads_and_vars:
            if isinstance(g, tf.Tensor):
                g = tf.identity(g)
            out.append((g, v))
    return out

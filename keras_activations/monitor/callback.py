"""`GradientMonitor`: gradient, dead-unit and activation records during fit."""

import numbers
import os
import warnings
from typing import List
from typing import Optional

import keras
import numpy as np

from keras_activations.monitor import compat
from keras_activations.monitor import diagnosis as diagnosis_lib
from keras_activations.monitor import events
from keras_activations.monitor import history as history_lib
from keras_activations.monitor import hooks as hooks_lib
from keras_activations.monitor import plots
from keras_activations.monitor import record as record_lib
from keras_activations.monitor import sites as sites_lib
from keras_activations.monitor import state as state_lib
from keras_activations.monitor import writer as writer_lib
from keras_activations.monitor.patches import Patches


# Pictures a fit writes at most with `write_images=True`: the images per tag
# TensorBoard keeps by default (`--samples_per_plugin images=10`).
MAX_PICTURES = 10


class GradientMonitor(keras.callbacks.Callback):
    """Records gradients, dead units and activations during `fit`.

    Everything is measured inside the compiled training step from the
    gradients the optimizer applies and the activations the forward pass
    computes: no second forward or backward pass, and one trace of the
    step. Once per record a small compiled function reads the window's
    accumulators; the host computes the figures and writes the events.
    Any number of monitors can watch one `fit`.

    One record per window (`update_freq`) holds, for every watched layer
    (TensorBoard tag in brackets):

    - a histogram of the applied gradient of each watched trainable variable
      [`gradients/<variable path>`], of the window's last step: after the
      loss scale is taken out (mixed precision) and after the all-reduce
      (`tf.distribute`);
    - the L2 norm of each variable's gradient, each layer's and the global
      norm, of the window's last step that applied a gradient (the
      record's `gradient_step`: the window's last step, except under
      `gradient_accumulation_steps` or when the loss scale skipped it)
      [`gradient_norm/...`];
    - the count of NaN/inf gradient elements per variable over the window
      [`nonfinite_gradients/...`]; they are left out of the histograms;
    - the cosine between this record's gradient of a layer and the previous
      record's [`gradient_cosine/<layer>`];
    - the update ratio `||Δθ|| / ||θ||` of each watched variable and layer:
      the change the window's last step made to the weights (everything
      the optimizer did: momentum, Adam's scaling, weight decay, after the
      loss scale is taken out) over their norm after it
      [`update_ratio/...`], and that norm [`weight_norm/...`];
    - per activation site: dead units over the window (units whose
      derivative's absolute value was <= `dead_tolerance` for every example)
      [`dead_units/<layer>`, `dead_fraction/<layer>`], the share of
      unit-example pairs with |derivative| < `saturation_tolerance`: the
      `inactive_fraction` of a rectifier (ReLU, leaky, PReLU, abs: its
      derivative is a step, the pairs are switched off)
      [`inactive_fraction/<layer>`], the `saturation` of an activation
      whose derivative tends to 0 (sigmoid, tanh, softplus, the ELU family)
      [`saturation/<layer>`]; the mean and standard deviation of the outputs
      over the window [`activation_mean/<layer>`, `activation_std/<layer>`]
      and a histogram of the outputs of the window's last step
      [`activations/<layer>`];
    - a picture of gradient norm, dead fraction and activation mean
      against depth, one row per layer [`depth_profile`];
    - at step 0, a custom-scalars layout with one chart per figure holding
      every layer (`dashboard.py`; TensorBoard's Custom Scalars tab).

    Event files go where `keras.callbacks.TensorBoard(log_dir=...)` writes
    its training curves, `<log_dir>/train`, so the monitor's charts are in
    the same run. Their step is Keras's: the epoch (from 0) for
    `update_freq="epoch"`, as Keras's `epoch_*` curves; the training step
    (from 1) for an integer `update_freq`, as Keras's `batch_*` curves.
    `monitor.history` keeps the training step in either case.

    From the records the monitor also says what is wrong (`diagnose()`):
    dying units, vanishing or exploding gradients, saturated units, update
    ratios far from about 1e-3, and the layer and step where the gradients
    turned NaN/inf. Each finding is reported when it begins and when it
    ends, as a `UserWarning`, as TensorBoard text [`diagnosis`] and in
    `table()`; a healthy run reports nothing (`monitor.diagnosis` module
    docstring for the rules).

    Args:
        log_dir: The run's directory, as for `keras.callbacks.TensorBoard`
            (event files in its `subdir`), or `None` to keep the records in
            memory only (`monitor.history`). Defaults to `None`.
        update_freq: `"epoch"` for one record per epoch, or an integer `N`
            for one record every `N` training steps (counted over the
            whole fit, like `keras.callbacks.TensorBoard`). Defaults to
            `"epoch"`.
        bins: Number of histogram buckets. Defaults to `30`.
        dead_tolerance: A unit is dead in a window when its activation's
            derivative was <= this for every example. Defaults to `0.0`.
        saturation_tolerance: A unit-example pair is saturated (a
            rectifier's: inactive) when the derivative's absolute value is
            below this. Defaults to `1e-3`.
        layers: `None` to watch every layer with trainable weights and every
            activation site, or a list of layer names or layer objects.
            Defaults to `None`.
        dead_warning_threshold: The dead fraction at which a layer's units
            are dying: the `"dying_units"` finding, once it held for
            `diagnosis_thresholds["records"]` consecutive records. `None`
            turns that finding off. Defaults to `0.1`.
        write_images: Which records get the depth-profile picture: `True`
            for pictures spread evenly over each fit, at most 10 (the
            number of images per tag TensorBoard keeps by default), one
            of them with the fit's last record; an integer `N` for every
            `N`-th record of a fit and its last; `False` for none. With
            an integer `update_freq` and data of unknown length, `True`
            means every record. Defaults to `True`.
        diagnosis_thresholds: A dict overriding some of the diagnosis'
            thresholds, or `None` for the defaults; a threshold set to
            `None` turns its finding off. Names and defaults:
            `records=2` (consecutive records a condition must hold before
            it is reported; non-finite and exploding gradients are reported
            at once), `vanishing_ratio=1e-3` (first layer's gradient norm
            over the last's), `exploding_norm=1e3` (global gradient norm),
            `exploding_growth=1e3` (global norm over the first record's),
            `saturation=0.25` (share of saturated pairs), `update_ratio_high
            =0.1` and `update_ratio_low=1e-5` (a decade beyond the usual
            [1e-4, 1e-2]), `dead_fraction` (= `dead_warning_threshold`).
        subdir: Subdirectory of `log_dir` for the event files: `"train"`,
            Keras's training run, or `None` for `log_dir` itself. Defaults
            to `"train"`.

    Example:

    ```python
    monitor = keras_activations.GradientMonitor(log_dir="logs/run1")
    model.fit(x, y, epochs=5, callbacks=[monitor])
    print(monitor.table())
    monitor.to_csv("logs/run1/monitor.csv")
    ```

    With `keras.callbacks.TensorBoard(log_dir="logs/run1")` beside it, its
    curves and the monitor's charts are one run, `run1/train`. Then
    `tensorboard --logdir logs`.
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
        write_images: bool | int = True,
        diagnosis_thresholds: Optional[dict] = None,
        subdir: str | None = "train",
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
        if not isinstance(write_images, (bool, numbers.Integral)) or (
            not isinstance(write_images, bool) and write_images < 1
        ):
            raise ValueError(
                "GradientMonitor: argument `write_images` must be True, False "
                f"or an integer >= 1. Received: write_images={write_images!r}"
            )
        if subdir is not None and (
            not isinstance(subdir, str) or not subdir or os.path.isabs(subdir)
        ):
            raise ValueError(
                "GradientMonitor: argument `subdir` must be a relative path "
                f"(str) or None. Received: subdir={subdir!r}"
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
        self.write_images = write_images if isinstance(write_images, bool) else int(write_images)
        self.diagnosis_thresholds = diagnosis_thresholds
        self._thresholds = diagnosis_lib.resolve_thresholds(diagnosis_thresholds, dead_warning_threshold)
        self._diagnosis = diagnosis_lib.Diagnosis(self._thresholds)
        self.subdir = subdir
        self._records = []
        self._state = None  # `state.State`, kept across fits of one model
        self._state_key = None
        self._layout = None
        self._events = None
        self._unpictured = None  # the fit's last record, when it has no picture
        self._fit_records = 0  # records of this fit
        self._image_every = 1  # a picture every this many records of a fit
        self._hooks = None
        self._step = 0  # step label of the last recorded step
        self._count = 0  # the state's step count at the last record
        self._prev = None  # the last record's gradient snapshot (cosine)
        self._epoch = 0
        self._warned = set()

    # ---- public helpers ---------------------------------------------------

    @property
    def events_dir(self):
        """Where the event files go: `log_dir`'s `subdir`, or `None` without
        a `log_dir`."""
        if self.log_dir is None:
            return None
        return self.log_dir if self.subdir is None else os.path.join(self.log_dir, self.subdir)

    @property
    def history(self):
        """Every record so far, oldest first, as plain Python/NumPy data
        (docs/CONTRACTS.md, "GradientMonitor history")."""
        return self._records

    @history.setter
    def history(self, records):
        self._records = list(records)
        self._diagnosis = diagnosis_lib.Diagnosis(self._thresholds)
        for record in self._records:  # silently: they were reported
            self._diagnosis.update(record)

    def diagnose(self) -> List[diagnosis_lib.Finding]:
        """What the records say is wrong, as a list of `Finding` (kind,
        layer, first_step, last_step (`None` while it holds), evidence,
        message), in the order they began; empty for a healthy run.

        Example:

        >>> for finding in monitor.diagnose():
        ...     print(finding.kind, finding.layer, finding.first_step, finding.message)
        """
        return diagnosis_lib.diagnose(self.history, self._thresholds)

    def to_rows(self):
        """One flat dict per (record, layer); see `history.ROW_KEYS`."""
        return history_lib.to_rows(self.history)

    def to_csv(self, path):
        """Writes `to_rows()` to `path` as CSV; returns the row count."""
        return history_lib.to_csv(self.history, path)

    def table(self, last=True):
        """The last record (or, with `last=False`, all) as a text table,
        followed by the diagnosis' findings, if any (`diagnose()`)."""
        records = self.history[-1:] if last else self.history
        table = history_lib.format_table(history_lib.to_rows(records))
        findings = self.diagnose()
        if findings:
            table += "\n\nDiagnosis:\n" + diagnosis_lib.format_findings(findings)
        return table

    def close(self):
        """Closes the event file and detaches the monitor from the model.

        Called by `fit` at the end of training and when a training step
        raises; call it yourself if an exception ended `fit` elsewhere.
        """
        try:
            if self._events is not None:
                try:
                    if self._unpictured is not None:  # the fit's last record
                        record = self._unpictured
                        self._events.write_image(record, step=self._event_step(record), rows=self._profile_rows())
                finally:
                    self._events.close()
        finally:
            self._events = None
            self._unpictured = None
            if self._hooks is not None:
                self._hooks.detach(self)
                self._hooks = None

    @property
    def async_safe(self):
        """With one record per epoch the monitor needs no batch hook, so
        Keras may run its batch-end callbacks in a thread and keep
        dispatching steps (`keras.callbacks.CallbackList`)."""
        return self.update_freq == "epoch"

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
        owner = compat.gradient_hook_owner(model.optimizer)
        watched, sites, variables = sites_lib.select(model, self.layers)
        if self.log_dir is not None:
            writer_lib.check_writable(self.events_dir)
        key = (
            id(model),
            id(owner),
            tuple(id(v) for v, _, w in variables if w),
            tuple(id(v) for v, _, _ in variables),
            tuple(id(s.layer) for s in sites),
        )
        if key != self._state_key:
            self._state = None  # made at the first call of the train function
            self._state_key = key
        self._owner = owner
        self._watched, self._sites, self._variables = watched, sites, variables
        self._fit_started = False
        self._fit_records = 0
        self._window_steps = 0
        self._executions = 0  # train function calls since the last record
        self._epoch_calls = 0
        self._writes = self.log_dir is not None and compat.is_chief(
            model.distribute_strategy
        )
        self._hooks = hooks_lib.for_model(model)
        self._hooks.attach(self, sites)
        self._hooks.select_function()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_calls = 0
        if self._fit_started:
            return
        self._fit_started = True
        steps = self._epoch_steps()
        self._image_every = self._picture_spacing(epoch, steps)
        if epoch > 0 and steps:  # a resumed (BackupAndRestore) fit
            self._step = epoch * steps
            self.history = [r for r in self.history if r["step"] <= self._step]
            if self._writes:  # the steps after the backup are written again
                writer_lib.truncate_after(
                    self.events_dir, epoch - 1 if self.update_freq == "epoch" else self._step
                )

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch":
            return  # may run in Keras's callback thread: touch nothing
        self._window_steps += self._execution_steps
        if self._window_steps >= self.update_freq:
            self._record()

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch" and self._executions:
            self._record()

    def on_train_end(self, logs=None):
        try:
            if self._executions:
                self._record()
        finally:
            self.close()

    # ---- called by the hooks ------------------------------------------------

    def _before_execution(self, iterator):
        """Before each call of the train function: makes the state on the
        first call, and flags the call when it may hold the window's last
        step (its steps then take the snapshot). Returns whether a state
        was made (the step must be traced with it)."""
        created = self._state is None
        if created:
            self._make_state(iterator)
        steps, per_execution = self._epoch_steps(), self._steps_per_execution()
        begin = self._epoch_calls * per_execution
        self._epoch_calls += 1
        self._executions += 1
        if steps:
            self._execution_steps = max(min(per_execution, steps - begin), 0)
            ends_epoch = begin + per_execution >= steps
            if self.update_freq == "epoch":
                flag = ends_epoch
            else:
                last_epoch = self._epoch >= (self.params or {}).get("epochs", 1) - 1
                flag = (
                    self._window_steps + self._execution_steps >= self.update_freq
                    or (ends_epoch and last_epoch)
                )
        else:  # unknown length: any step may be the epoch's or fit's last
            self._execution_steps = per_execution
            flag = True
        self._state.set_flag(flag)
        return created

    def _abort(self):
        """A training step raised: keep what was measured, close files."""
        try:
            if self._executions:
                self._record()
        except Exception:  # the device may be unusable: keep the rest
            pass
        finally:
            self.close()

    # ---- setup --------------------------------------------------------------

    def _make_state(self, iterator):
        order, shapes = self._discover(iterator)
        ready = []
        for site in self._sites:
            shape = shapes.get(id(site.layer))
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
            site.track_dead = site.pieces is not None or site.derivative is not None
            if not site.track_dead:
                self._warn_once(
                    ("derivative", site.name),
                    "GradientMonitor: no derivative known for activation "
                    f"{site.activation_name!r} of layer {site.name!r}; its "
                    "dead units and saturation are not recorded (its mean, "
                    "std and histogram are). Supported: "
                    + ", ".join(sites_lib.builtin_derivatives.SUPPORTED_ACTIVATIONS)
                    + " and this package's activations.",
                )
            ready.append(site)
        owner = self._owner
        self._state = state_lib.State(
            self.model.distribute_strategy,
            self._variables,
            ready,
            self.bins,
            self.dead_tolerance,
            self.saturation_tolerance,
            var_key=lambda v: compat.variable_key(owner, v),
            xla=bool(getattr(self.model, "jit_compile", False)),
        )
        self._layout = record_lib.Layout(self._state, self._watched, order)
        self._count = 0
        self._prev = None

    def _discover(self, iterator):
        """Calls the model symbolically once on the data's spec to learn the
        output shape of every site and the call order of the watched layers
        (no data is computed). Returns `(order, {id(layer): shape})`."""
        order = [name for name, _ in self._watched]
        spec = getattr(iterator, "element_spec", None)
        if spec is None:
            return order, {}
        x_spec = compat.unpack_x(compat.per_replica_spec(spec))

        def to_keras(s):
            s = compat.per_replica_spec(s)
            return keras.KerasTensor(tuple(s.shape), keras.backend.standardize_dtype(s.dtype))

        x = keras.tree.map_structure(to_keras, x_spec)
        called = []
        temp = Patches()
        for name, layer in self._watched:
            original = layer.call

            def call(*args, _name=name, _original=original, **kwargs):
                if _name not in called:
                    called.append(_name)
                return _original(*args, **kwargs)

            temp.set(layer, "call", call)
        shapes = {}
        self._hooks.discovering = shapes
        try:
            compat.symbolic_call(self.model, x)
        except Exception as e:  # pragma: no cover - exotic models
            warnings.warn(
                "GradientMonitor: could not trace the model symbolically to "
                f"size its activation sites ({type(e).__name__}: {e}); they "
                "are not recorded.",
                stacklevel=3,
            )
            return order, {}
        finally:
            self._hooks.discovering = None
            temp.undo()
        return called + [name for name in order if name not in called], shapes

    def _epoch_steps(self):
        """Steps in an epoch, or None when the data's length is unknown."""
        return self.params.get("steps") if self.params else None

    def _steps_per_execution(self):
        return int(getattr(self.model, "steps_per_execution", 1) or 1)

    # ---- records ------------------------------------------------------------

    def _record(self):
        """Ends a window: reads its accumulators and appends its record."""
        raw = self._state.read()
        self._window_steps = 0
        self._executions = 0
        count = int(raw["count"])
        steps = count - self._count
        if steps <= 0:
            return
        self._step += steps
        record, snapshot = self._layout.record(
            raw,
            step=self._step,
            epoch=self._epoch,
            steps=steps,
            start=self._count,
            prev=self._prev,
        )
        if snapshot is not None:
            self._prev = snapshot
        self._count = count
        self._records.append(record)
        self._fit_records += 1
        if self._writes:
            if self._events is None:
                self._events = events.EventFile(self.events_dir)
            picture = bool(self.write_images) and self._fit_records % self._image_every == 0
            self._events.write_record(
                record, image=picture, step=self._event_step(record), rows=self._profile_rows()
            )
            self._unpictured = None if picture or not self.write_images else record
        self._report(record)

    def _report(self, record):
        """Reports the findings that began or ended with `record`: one
        `UserWarning` each, and one TensorBoard text for the record."""
        lines = []
        for finding, event in self._diagnosis.update(record):
            line = finding.describe(event)
            warnings.warn(line, UserWarning, stacklevel=4)
            lines.append(f"- **{event}**: {line[len('GradientMonitor: '):]}")
        if lines and self._writes:
            self._events.write_text(
                "diagnosis", "\n".join(lines), self._event_step(record), diagnosis_lib.DESCRIPTION
            )

    def _event_step(self, record):
        """A record's step in the event files: Keras's for its summaries,
        the epoch (`update_freq="epoch"`) or the training step."""
        return record["epoch"] if self.update_freq == "epoch" else record["step"]

    def _picture_spacing(self, epoch, steps):
        """Every how many records of this fit a picture is written
        (`write_images`; the fit's last record gets one too, at `close`)."""
        if not isinstance(self.write_images, bool):
            return self.write_images
        epochs = max(int((self.params or {}).get("epochs", 1)) - epoch, 1)
        if self.update_freq == "epoch":
            records = epochs
        elif steps:
            records = -(-epochs * steps // self.update_freq)
        else:
            return 1
        return max(-(-records // MAX_PICTURES), 1)

    def _profile_rows(self):
        """The depth profile's rows (`plots.depth_rows`) of the watched
        layers: each layer with watched weights with its activation site."""
        layout = self._layout
        weighted = {owner for *_, owner, _ in layout.variables}
        sites = {name for *_, name in layout.sites}
        return plots.depth_rows(layout.layer_names, weighted, sites)

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

"""Training one activation: the model, `GradientMonitor`, TensorBoard, timings."""

import dataclasses
import math
import re
import time

import keras
import numpy as np

from keras_activations.compare import models


@dataclasses.dataclass
class TrainConfig:
    """What every activation of a comparison is trained with.

    Attributes:
        model: `"mlp"` or `"cnn"`.
        depth: Hidden layers.
        width: Units or filters per hidden layer.
        epochs: Training epochs.
        optimizer: `"sgd"` (with momentum) or `"adam"`.
        learning_rate: Learning rate.
        momentum: SGD momentum (ignored by Adam).
        seed: Seed of the initializers and of the data order.
        target_accuracy: Validation accuracy whose first epoch is reported.
        maxout_pieces: Pieces per maxout unit.
        keep_init: Start every candidate from the given model's weights (the
            builder's own initialization) instead of the candidate's.
        loss: Loss overriding the model's compile settings or the inferred one.
        metrics: Metrics overriding them likewise.
        optimizer_given: Whether `optimizer`/`learning_rate` were chosen by the
            user, so that they override a compiled model's optimizer.
    """

    model: str = "mlp"
    depth: int = 10
    width: int = 64
    epochs: int = 12
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    seed: int = 0
    target_accuracy: float = 0.9
    maxout_pieces: int = 2
    keep_init: bool = False
    loss: object = None
    metrics: object = None
    optimizer_given: bool = False

    def to_dict(self):
        """The settings as plain JSON-able values (losses/metrics by name)."""
        out = dataclasses.asdict(self)
        out["loss"] = _name_of(self.loss)
        out["metrics"] = None if self.metrics is None else [_name_of(m) for m in self.metrics]
        return out


def _name_of(obj):
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return getattr(obj, "name", None) or getattr(obj, "__name__", None) or type(obj).__name__


@dataclasses.dataclass
class RunResult:
    """The outcome of training one activation.

    Attributes:
        activation: Activation name.
        initializer: Initializer used for the hidden layers.
        params: Number of trainable parameters.
        history: Keras history: metric name -> list, one value per epoch.
        epoch_seconds: Wall time of each epoch.
        monitor_history: `GradientMonitor.history` (see docs/CONTRACTS.md).
        model: The trained model.
        log_dir: Where its TensorBoard run is, or None.
        sites: The given model's activations and what was swapped
            (`swap.Site` dicts; empty for builders and the built-in networks).
        hidden: Layer name -> hidden-layer index (None: the built-in names).
        optimizer: Name of the optimizer used.
        learning_rate: Its initial learning rate (None for a schedule).
        error: Why the run failed (e.g. a NaN loss), or None.
        monitor_rows: `GradientMonitor.to_rows()` (flat, JSON-able).
        diagnosis: `GradientMonitor.diagnose()`'s findings as JSON-able
            dicts (`Finding.to_dict`, non-finite figures as None).
    """

    activation: str
    initializer: str
    params: int
    history: dict
    epoch_seconds: list
    monitor_history: list
    model: object = dataclasses.field(repr=False, default=None)
    log_dir: str = None
    sites: list = dataclasses.field(default_factory=list)
    hidden: dict = None
    optimizer: str = None
    learning_rate: float = None
    error: str = None
    monitor_rows: list = dataclasses.field(default_factory=list)
    diagnosis: list = dataclasses.field(default_factory=list)

    def final(self, metric):
        """Last value of a Keras metric, e.g. `final("val_accuracy")`."""
        values = self.history.get(metric) or [float("nan")]
        return float(values[-1])

    def epochs_to(self, target):
        """First epoch (1-based) with validation accuracy >= target, or None."""
        for epoch, acc in enumerate(self.history.get("val_accuracy", []), 1):
            if acc >= target:
                return epoch
        return None

    def seconds_per_epoch(self):
        """Median epoch wall time (the first epoch also compiles the model)."""
        if not self.epoch_seconds:
            return float("nan")
        return float(np.median(self.epoch_seconds))


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of each epoch in `seconds`."""

    def __init__(self):
        super().__init__()
        self.seconds = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class OneLineProgress(keras.callbacks.Callback):
    """Prints one line per run, updated in place per epoch (for `--quiet`)."""

    def __init__(self, name, epochs, stream):
        super().__init__()
        self.name = name
        self.epochs = epochs
        self.stream = stream

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        last = epoch + 1 == self.epochs
        interactive = getattr(self.stream, "isatty", lambda: False)()
        if not (last or interactive):
            return
        shown = ["loss"] + [k for k in logs if k.startswith("val_")][:2]
        self.stream.write(
            f"  {self.name:<14} epoch {epoch + 1}/{self.epochs}  "
            + "  ".join(f"{k} {float(logs.get(k, math.nan)):.4f}" for k in shown)
            + ("\n" if last else "\r")
        )
        self.stream.flush()


def default_monitor(log_dir, layers=None):
    """A `keras_activations.GradientMonitor` watching `layers`, writing to `log_dir`'s `train`
    run, where `keras.callbacks.TensorBoard(log_dir)` writes its training curves."""
    from keras_activations import GradientMonitor

    return GradientMonitor(log_dir=log_dir, layers=layers)


def make_optimizer(config):
    """The optimizer named by `config.optimizer`."""
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(
            learning_rate=config.learning_rate, momentum=config.momentum
        )
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=config.learning_rate)
    raise ValueError(
        f"--optimizer must be 'sgd' or 'adam', got {config.optimizer!r}."
    )


def train_one(
    choice,
    data,
    config,
    log_dir=None,
    monitor_factory=default_monitor,
    verbose=1,
    progress_stream=None,
    extra_callbacks=(),
    source=None,
    fit_kwargs=None,
):
    """Trains one activation's model on `data` and returns a `RunResult`.

    Seeds are reset first, so every activation starts from the same random
    state and sees the same batches in the same order. Training stops at the
    first NaN loss (`keras.callbacks.TerminateOnNaN`); the result's `error`
    then says so.

    Args:
        choice: A `models.ActivationChoice`.
        data: A `data.Data`.
        config: A `TrainConfig`.
        log_dir: TensorBoard run directory, or None for no TensorBoard logs:
            `keras.callbacks.TensorBoard(log_dir)` writes `log_dir/train` and
            `log_dir/validation`, and the default monitor joins `log_dir/train`.
        monitor_factory: Callable `(log_dir, layers) -> callback` with a
            `history` attribute following docs/CONTRACTS.md, `layers` being
            the names of the hidden layers to watch; defaults to
            `GradientMonitor`. None trains without a monitor.
        verbose: Keras `fit` verbosity (1: progress bar, 0: silent).
        progress_stream: If given (and `verbose=0`), a one-line progress per
            run is written to it.
        extra_callbacks: More Keras callbacks.
        source: Where the model comes from (`sources.resolve_source`);
            defaults to the built-in network `config.model`.
        fit_kwargs: More keyword arguments for `model.fit` (e.g.
            `class_weight`).

    Returns:
        A `RunResult`.
    """
    from keras_activations.compare import sources

    source = source or sources.BuiltinSource(config.model)
    keras.utils.set_random_seed(config.seed)
    built = source.build(choice, data, config)
    keras.utils.set_random_seed(config.seed)
    model = sources.compile_model(built, data, config, make_optimizer)
    timer = EpochTimer()
    callbacks = [timer, keras.callbacks.TerminateOnNaN()]
    monitor = None
    if monitor_factory is not None:
        if built.hidden is None:
            hidden = [l.name for l in model.layers if hidden_index(l.name) is not None]
        else:
            hidden = [l.name for l in model.layers if l.name in built.hidden]
        monitor = monitor_factory(log_dir, layers=hidden)
        callbacks.append(monitor)
    if log_dir is not None:
        callbacks.append(
            keras.callbacks.TensorBoard(
                log_dir=log_dir, write_graph=False, update_freq="epoch"
            )
        )
    if progress_stream is not None and not verbose:
        callbacks.append(
            OneLineProgress(choice.label, config.epochs, progress_stream)
        )
    callbacks.extend(extra_callbacks)
    fit_kwargs = dict(fit_kwargs or {})
    callbacks.extend(fit_kwargs.pop("callbacks", None) or [])
    try:
        history = model.fit(
            data.train_dataset(),
            validation_data=data.validation_dataset(),
            epochs=config.epochs,
            shuffle=False,  # the dataset is already shuffled, in a seeded order
            callbacks=callbacks,
            verbose=verbose,
            **fit_kwargs,
        )
    except BaseException:
        if monitor is not None and hasattr(monitor, "close"):
            monitor.close()  # fit ended by an exception: flush its event files
        raise
    values = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    losses = values.get("loss", [])
    error = None
    if len(losses) < config.epochs or not all(math.isfinite(v) for v in losses):
        bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
        error = f"the loss became NaN or inf in epoch {bad + 1}; training stopped there"
    optimizer = model.optimizer
    rate = getattr(optimizer, "learning_rate", None)
    try:
        rate = float(f"{float(rate):.7g}")  # a float32 variable: 0.003, not 0.0030000000261
    except (TypeError, ValueError):
        rate = None
    monitor_history = list(monitor.history) if monitor is not None else []
    rows, findings = [], []
    if monitor is not None:
        rows = monitor.to_rows() if hasattr(monitor, "to_rows") else []
        findings = [f.to_dict() for f in monitor.diagnose()] if hasattr(monitor, "diagnose") else []
    return RunResult(
        activation=choice.label,
        initializer="kept" if (config.keep_init and not isinstance(source, sources.BuiltinSource))
        else choice.initializer,
        params=int(model.count_params()),
        history=values,
        epoch_seconds=list(timer.seconds),
        monitor_history=monitor_history,
        model=model,
        log_dir=log_dir,
        sites=built.sites,
        hidden=built.hidden,
        optimizer=type(optimizer).__name__.lower(),
        learning_rate=rate,
        error=error,
        monitor_rows=[_plain(r) for r in rows],
        diagnosis=[_json_safe(f) for f in findings],
    )


def _json_safe(value):
    """`value` with NumPy scalars as Python's and non-finite floats as None,
    in nested dicts and lists."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain(row):
    out = {}
    for k, v in row.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


_HIDDEN = re.compile(r"^(dense|conv|act)_(\d+)$")

# Per-layer monitor fields, and which hidden layer of a pair reports them:
# the Dense/Conv2D layer has the weights (gradients), the activation layer
# the units (dead fraction, inactive fraction or saturation, activation
# statistics).
FIELDS = (
    "gradient_norm",
    "gradient_cosine",
    "dead_fraction",
    "inactive_fraction",
    "saturation",
    "activation_mean",
    "activation_std",
)


def hidden_index(layer_name):
    """Index of the hidden layer a monitored layer belongs to, or None.

    `build_model` names hidden layer i's weights `dense_i`/`conv_i` and its
    activation `act_i`; other layers (input, flatten, pooling, the softmax
    output) are not hidden layers.

    Example:

    >>> hidden_index("dense_03"), hidden_index("act_03"), hidden_index("output")
    (3, 3, None)
    """
    match = _HIDDEN.match(layer_name)
    return int(match.group(2)) if match else None


def hidden_series(monitor_history, field, index_of=None):
    """Values of one monitor field per hidden layer, across records.

    Args:
        monitor_history: `GradientMonitor.history` (docs/CONTRACTS.md).
        field: A per-layer field, e.g. `"gradient_norm"`.
        index_of: Layer name -> hidden-layer index or None; defaults to
            `hidden_index` (the built-in networks' names).

    Returns:
        A dict hidden-layer index -> list of the finite values of `field`
        reported by that hidden layer's Dense/Conv2D or activation layer, in
        record order. Hidden layers that never report `field` are left out.
    """
    index_of = index_of or hidden_index
    series = {}
    for record in monitor_history:
        for name, stats in record.get("layers", {}).items():
            index = index_of(name)
            value = stats.get(field)
            if index is None or value is None or not np.isfinite(value):
                continue
            series.setdefault(index, []).append(float(value))
    return series


def _mean(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def summarize_monitor(monitor_history, index_of=None):
    """Reduces `GradientMonitor.history` to the numbers `compare` reports.

    Only hidden layers count (see `hidden_index`); depth is the hidden
    layer's index, 0 next to the input.

    Args:
        monitor_history: `GradientMonitor.history` (docs/CONTRACTS.md).
        index_of: See `hidden_series`.

    Returns:
        A dict:
        - `grad_ratio`: median over records of the first hidden layer's
          gradient norm over the last one's (well below 1: gradients vanish
          on their way to the input; well above 1: they explode).
        - `dead_fraction`: mean dead fraction over records and hidden layers
          (None when the monitor reports none, e.g. for sigmoid).
        - `activation_mean`, `gradient_cosine`, `inactive_fraction` (the
          rectifiers' off pairs), `saturation` (sigmoid, tanh, the ELU
          family): likewise means over records and hidden layers.
        - `by_depth`: a list of dicts, one per hidden layer in depth order,
          with `depth` and the mean over records of each of `FIELDS`
          (None where not reported).

    Example:

    >>> history = [{"layers": {
    ...     "dense_00": {"depth": 0, "gradient_norm": 0.01},
    ...     "act_00": {"depth": 1, "dead_fraction": 0.5},
    ...     "dense_01": {"depth": 2, "gradient_norm": 1.0},
    ...     "output": {"depth": 4, "gradient_norm": 9.0}}}]
    >>> summary = summarize_monitor(history)
    >>> summary["grad_ratio"], summary["dead_fraction"]
    (0.01, 0.5)
    """
    index_of = index_of or hidden_index
    series = {field: hidden_series(monitor_history, field, index_of) for field in FIELDS}
    depths = sorted({d for per_depth in series.values() for d in per_depth})
    by_depth = [
        {"depth": d, **{f: _mean(series[f].get(d, [])) for f in FIELDS}}
        for d in depths
    ]

    ratios = []
    for record in monitor_history:
        norms = {}
        for name, stats in record.get("layers", {}).items():
            index = index_of(name)
            norm = stats.get("gradient_norm")
            if index is not None and norm is not None and np.isfinite(norm):
                norms[index] = float(norm)
        if len(norms) >= 2 and norms[max(norms)] > 0:
            ratios.append(norms[min(norms)] / norms[max(norms)])

    def overall(field):
        return _mean([v for values in series[field].values() for v in values])

    return {
        "grad_ratio": float(np.median(ratios)) if ratios else None,
        "dead_fraction": overall("dead_fraction"),
        "activation_mean": overall("activation_mean"),
        "gradient_cosine": overall("gradient_cosine"),
        "inactive_fraction": overall("inactive_fraction"),
        "saturation": overall("saturation"),
        "by_depth": by_depth,
    }

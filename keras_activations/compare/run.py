"""Training one activation: the model, `GradientMonitor`, TensorBoard, timings."""

import dataclasses
import math
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
    """

    activation: str
    initializer: str
    params: int
    history: dict
    epoch_seconds: list
    monitor_history: list
    model: object = dataclasses.field(repr=False, default=None)
    log_dir: str = None

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
        self.stream.write(
            f"  {self.name:<14} epoch {epoch + 1}/{self.epochs}  "
            f"loss {logs.get('loss', math.nan):.4f}  "
            f"val_accuracy {logs.get('val_accuracy', math.nan):.4f}"
            + ("\n" if last else "\r")
        )
        self.stream.flush()


def default_monitor(log_dir):
    """A `keras_activations.GradientMonitor` writing to `log_dir`."""
    from keras_activations import GradientMonitor

    return GradientMonitor(log_dir=log_dir)


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
):
    """Trains one activation's model on `data` and returns a `RunResult`.

    Seeds are reset first, so every activation starts from the same random
    state and sees the same batches in the same order.

    Args:
        choice: A `models.ActivationChoice`.
        data: A `data.Data`.
        config: A `TrainConfig`.
        log_dir: TensorBoard run directory, or None for no TensorBoard logs.
        monitor_factory: Callable `log_dir -> callback` with a `history`
            attribute following docs/CONTRACTS.md; defaults to
            `GradientMonitor`. None trains without a monitor.
        verbose: Keras `fit` verbosity (1: progress bar, 0: silent).
        progress_stream: If given (and `verbose=0`), a one-line progress per
            run is written to it.
        extra_callbacks: More Keras callbacks.

    Returns:
        A `RunResult`.
    """
    keras.utils.set_random_seed(config.seed)
    model = models.build_model(
        choice,
        data.input_shape,
        data.num_classes,
        model=config.model,
        depth=config.depth,
        width=config.width,
        maxout_pieces=config.maxout_pieces,
        seed=config.seed,
    )
    model.compile(
        optimizer=make_optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    timer = EpochTimer()
    callbacks = [timer]
    monitor = None
    if monitor_factory is not None:
        monitor = monitor_factory(log_dir)
        callbacks.append(monitor)
    if log_dir is not None:
        callbacks.append(
            keras.callbacks.TensorBoard(
                log_dir=log_dir, write_graph=False, update_freq="epoch"
            )
        )
    if progress_stream is not None and not verbose:
        callbacks.append(
            OneLineProgress(choice.name, config.epochs, progress_stream)
        )
    callbacks.extend(extra_callbacks)
    history = model.fit(
        data.train_dataset(),
        validation_data=data.validation_dataset(),
        epochs=config.epochs,
        shuffle=False,  # the dataset is already shuffled, in a seeded order
        callbacks=callbacks,
        verbose=verbose,
    )
    return RunResult(
        activation=choice.name,
        initializer=choice.initializer,
        params=int(model.count_params()),
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        epoch_seconds=list(timer.seconds),
        monitor_history=list(monitor.history) if monitor is not None else [],
        model=model,
        log_dir=log_dir,
    )


def layer_series(monitor_history, field):
    """Per-layer values of one monitor field across records.

    Args:
        monitor_history: `GradientMonitor.history`.
        field: A per-layer field, e.g. `"gradient_norm"`.

    Returns:
        A list of `(depth, layer_name, values)` sorted by depth, `values`
        being the non-None values of `field` in record order; layers that
        never report `field` are left out.
    """
    series = {}
    for record in monitor_history:
        for name, stats in record.get("layers", {}).items():
            value = stats.get(field)
            if value is None or not np.isfinite(value):
                continue
            depth, values = series.setdefault(name, (stats["depth"], []))
            values.append(float(value))
    return sorted(
        ((depth, name, values) for name, (depth, values) in series.items()),
        key=lambda item: item[0],
    )


def _mean(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def summarize_monitor(monitor_history):
    """Reduces `GradientMonitor.history` to the numbers `compare` reports.

    Args:
        monitor_history: `GradientMonitor.history` (docs/CONTRACTS.md).

    Returns:
        A dict:
        - `grad_ratio`: median over records of the first watched layer's
          gradient norm over the last one's (well below 1: gradients vanish
          toward the input; well above 1: they explode).
        - `dead_fraction`: mean dead fraction over records and layers (None
          when the activation cannot die, e.g. leaky ReLU or ELU).
        - `activation_mean`: mean activation over records and hidden layers.
        - `gradient_cosine`: mean gradient cosine over records and layers.
        - `saturation`: mean saturated fraction over records and layers.
        - `by_depth`: a list of dicts, one per watched layer in depth order,
          with `depth`, `layer` and the time-averaged `gradient_norm`,
          `dead_fraction`, `activation_mean`, `activation_std`,
          `gradient_cosine`, `saturation`.
    """
    fields = (
        "gradient_norm",
        "dead_fraction",
        "activation_mean",
        "activation_std",
        "gradient_cosine",
        "saturation",
    )
    by_layer = {}
    for field in fields:
        for depth, name, values in layer_series(monitor_history, field):
            entry = by_layer.setdefault(name, {"depth": depth, "layer": name})
            entry[field] = _mean(values)
    by_depth = sorted(by_layer.values(), key=lambda e: e["depth"])
    for entry in by_depth:
        for field in fields:
            entry.setdefault(field, None)

    ratios = []
    for record in monitor_history:
        norms = sorted(
            (stats["depth"], stats.get("gradient_norm"))
            for stats in record.get("layers", {}).values()
            if stats.get("gradient_norm") is not None
        )
        if len(norms) >= 2 and norms[-1][1] > 0:
            ratios.append(norms[0][1] / norms[-1][1])

    def overall(field):
        return _mean(
            [v for _, _, vs in layer_series(monitor_history, field) for v in vs]
        )

    return {
        "grad_ratio": float(np.median(ratios)) if ratios else None,
        "dead_fraction": overall("dead_fraction"),
        "activation_mean": overall("activation_mean"),
        "gradient_cosine": overall("gradient_cosine"),
        "saturation": overall("saturation"),
        "by_depth": by_depth,
    }

"""`keras_activations.compare`: activations side by side on your model and data, from Python."""

import json
import os
import sys
from typing import Any, Callable, Optional, Sequence, TextIO, Tuple, Union

from keras_activations.compare import data as data_lib
from keras_activations.compare import models
from keras_activations.compare import pipeline
from keras_activations.compare import report as report_lib
from keras_activations.compare import run as run_lib
from keras_activations.compare import sources
from keras_activations.compare.errors import CompareError

DEFAULT_ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "maxout", "sigmoid", "tanh")


class ComparisonResult(dict):
    """What `compare` found: the report dict (as in `report.json`), with accessors.

    It is a `dict`, so `json.dumps(result)` works and gives `report.json`'s content. Keys:
    `runs` (one row per activation: `status`, final `train_<metric>`/`val_<metric>`, the
    monitor's summary and `monitor` rows, `swaps`, `history`, timings), `best`, `best_by`,
    `partial`, `config`, `data`, `model`, `files`. The trained models and the full
    `GradientMonitor.history` of each run (with histograms) are kept as attributes, out of the
    dict.

    Example:

    ```python
    result = keras_activations.compare(model, (x, y), activations=["relu", "elu", "selu"],
                                       epochs=5, out="runs/mine")
    print(result.table())
    result.best                          # "elu": the lowest final validation loss
    result.histories["elu"]["val_loss"]  # per epoch
    ```
    """

    def __init__(self, report, models_=None, monitor_histories=None):
        super().__init__(report)
        self.models = dict(models_ or {})
        self.monitor_histories = dict(monitor_histories or {})

    @property
    def best(self):
        """The best finished activation by `best_by` (default the lowest validation loss)."""
        return self["best"]

    @property
    def partial(self):
        """True when the comparison was interrupted before every activation finished."""
        return bool(self["partial"])

    @property
    def runs(self):
        """One row per activation (finished or failed), in order."""
        return self["runs"]

    @property
    def histories(self):
        """Activation -> Keras history (metric -> one value per epoch)."""
        return {r["activation"]: r["history"] for r in self["runs"]}

    @property
    def paths(self):
        """What was written: name -> path (empty without `out`)."""
        return dict(self["files"])

    def best_by(self, metric):
        """The best finished activation by another row key, e.g. `"val_accuracy"`."""
        row = report_lib.best_row(self["runs"], metric)
        return row["activation"] if row else None

    def table(self, print_=True):
        """The report's per-activation table (Markdown); printed unless `print_=False`."""
        text = report_lib.markdown_table(self["runs"], self["config"]["target_accuracy"])
        if print_:
            print(text)
        return text

    def to_json(self, **kwargs):
        """`report.json`'s text."""
        return json.dumps(self, default=report_lib._jsonable, **kwargs)


def parse_activations(activations):
    """Resolves candidates: a comma-separated string or a list of names (`"celu:alpha=0.5"`).

    Raises:
        CompareError: Empty, repeated, unknown (the message lists the known names) or
            invalid options.
    """
    items = activations.split(",") if isinstance(activations, str) else list(activations)
    items = [i.strip() if isinstance(i, str) else i for i in items]
    items = [i for i in items if i != ""]
    if not items:
        raise CompareError(f"--activations is empty ({activations!r}); give at least one name.")
    choices = []
    for item in items:
        if isinstance(item, models.ActivationChoice):
            choices.append(item)
            continue
        try:
            choices.append(models.parse(item))
        except models.UnknownActivationError as e:
            raise CompareError(str(e)) from None
        except (TypeError, ValueError) as e:
            raise CompareError(f"--activations: {e}") from None
    for choice in choices:
        if choice.options:  # Let the layer itself check its arguments, now.
            try:
                models.activation_layer(choice, "check")
            except (TypeError, ValueError) as e:
                raise CompareError(f"--activations: {choice.label} is not valid: {e}") from None
    labels = [choice.label for choice in choices]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise CompareError(f"--activations repeats {', '.join(repeated)}.")
    return choices


def compare(
    model_or_builder: Union[str, os.PathLike, "keras.Model", Callable] = "mlp",
    data: Any = "digits",
    activations: Union[str, Sequence[str]] = DEFAULT_ACTIVATIONS,
    *,
    epochs: int = 12,
    out: Optional[Union[str, os.PathLike]] = None,
    batch_size: int = 32,
    optimizer: Optional[str] = None,
    learning_rate: Optional[float] = None,
    momentum: float = 0.9,
    loss: Any = None,
    metrics: Optional[Sequence[Any]] = None,
    best_by: str = "val_loss",
    keep_init: bool = False,
    exclude: Sequence[str] = (),
    seed: int = 0,
    target: Optional[str] = None,
    task: Optional[str] = None,
    image_size: Optional[Tuple[int, int]] = None,
    rescale: bool = True,
    max_examples: Optional[int] = None,
    validation_fraction: float = 0.2,
    data_dir: Optional[str] = None,
    depth: int = 10,
    width: int = 64,
    maxout_pieces: int = 2,
    target_accuracy: float = 0.9,
    resume: bool = False,
    overwrite: bool = False,
    export: bool = True,
    monitor: Union[bool, Callable] = True,
    verbose: int = 1,
    stream: Optional[TextIO] = None,
    announce: Optional[Callable] = None,
    **fit_kwargs: Any,
) -> ComparisonResult:
    """Trains `model_or_builder` once per activation on `data` and reports why each trains
    well or badly.

    Every candidate gets the same seed and the same batches in the same order, under
    `GradientMonitor`. A given model has every elementwise activation swapped (the
    `activation` argument of `Dense`/`Conv*` layers and activation layers; never the output
    layer's or a recurrent layer's) through `keras.models.clone_model`, and its hidden kernels
    re-initialized as the candidate calls for (He normal for rectifiers and the ELU family,
    LeCun normal for SELU and maxout, Glorot uniform for sigmoid/tanh) unless `keep_init`.

    Args:
        model_or_builder: `"mlp"` or `"cnn"` (the built-in networks, see `depth`/`width`), a
            `keras.Model` (compiled or not; Functional or Sequential), a `.keras` path, a
            builder `build(activation)` called per candidate with its name (e.g. `"elu"`,
            `"celu:alpha=0.5"`; `keras_activations.compare.activation_layer(name)` makes the
            layer) or `build()` whose model is swapped, or `"module:function"`.
        data: See `keras_activations.compare.data.load`: `(x, y)` or `(x, y, x_val, y_val)`
            arrays, a dict of them, an `.npz`/`.csv`/image-directory path, a
            `tf.data.Dataset`, `"digits"` or a tensorflow-datasets name.
        activations: Candidate names, a list or a comma-separated string (`keras-activations
            list` shows them). Maxout needs a builder or a built-in network.
        epochs: Epochs per candidate. Defaults to 12.
        out: Output directory (TensorBoard runs with HParams, report.json/md, figures, each
            run's model, the best model), or None to write nothing. Defaults to None.
        batch_size: Defaults to 32.
        optimizer: `"sgd"` (with `momentum`) or `"adam"`; overrides a compiled model's
            optimizer when given. Defaults to the model's own, else SGD.
        learning_rate: Defaults to the model's own, else 0.01.
        momentum: SGD momentum. Defaults to 0.9.
        loss: Loss overriding the compiled or inferred one (integer labels: sparse
            categorical cross-entropy, from logits unless the output is a softmax; float
            targets: mean squared error).
        metrics: Metrics overriding the compiled or inferred ones (accuracy; mean absolute
            error for a regression). The report shows every one of them.
        best_by: Row key naming the best run: `"val_loss"` (default), `"val_accuracy"`, any
            `val_<metric>` or `train_<metric>`; higher is better for accuracy-like metrics.
        keep_init: Start every candidate from the given model's weights (a builder's own
            initialization) instead of re-initializing. Defaults to False.
        exclude: Layer names whose activations are kept.
        seed: Seed of the weights, the validation split and the data order. Defaults to 0.
        target: The CSV column to predict.
        task: `"classification"` or `"regression"`; defaults to what the targets say.
        image_size: `(height, width)` for an image directory; defaults to the model's input
            size, else (256, 256).
        rescale: Scale directory images to [0, 1]. Defaults to True.
        max_examples: Train on at most this many examples (and a quarter as many for
            validation).
        validation_fraction: Held out when the data has no validation part. Defaults to 0.2.
        data_dir: tensorflow-datasets' data directory.
        depth, width, maxout_pieces: The built-in networks' hidden layers, their width and
            maxout's pieces.
        target_accuracy: The report's "epochs to" column. Defaults to 0.9.
        resume: Continue an interrupted comparison in `out`, keeping its finished runs.
        overwrite: Replace an earlier comparison in `out`.
        export: Save each finished run's model and the best one (`.keras`, SavedModel).
        monitor: Train under `GradientMonitor` (True), without (False), or a factory
            `(log_dir, layers) -> callback`.
        verbose: 1 for Keras's progress bar, 0 for one line per activation.
        stream: Where progress goes. Defaults to stdout.
        announce: Called as `announce(data, config, model_info)` once the data is loaded
            (the command line prints a summary line).
        **fit_kwargs: More `model.fit` arguments (`class_weight`, `callbacks`,
            `validation_data`, ...).

    Returns:
        A `ComparisonResult` (`partial` when interrupted with Ctrl-C; the finished runs'
        report and figures are written then).

    Raises:
        CompareError: Bad input (the message is one line saying what would do): an unknown
            activation, unreadable data, a model without activations to swap, maxout on a
            given model, an unusable `out`, ...

    Example:

    ```python
    import keras, keras_activations
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    result = keras_activations.compare(model, (x, y), activations="relu,elu,selu",
                                       epochs=5, out="runs/mine")
    result.table()
    ```
    """
    stream = stream or sys.stdout
    choices = parse_activations(activations)
    _check_number("epochs", epochs, integer=True)
    _check_number("batch_size", batch_size, integer=True)
    if learning_rate is not None:
        _check_number("learning_rate", learning_rate)
    if optimizer not in (None, "sgd", "adam"):
        raise CompareError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}.")
    if out is not None:
        pipeline.check_out_dir(os.fspath(out), overwrite=overwrite, resume=resume)
    source = sources.resolve_source(model_or_builder, exclude)
    validation_data = fit_kwargs.pop("validation_data", None)
    if "validation_split" in fit_kwargs:
        validation_fraction = fit_kwargs.pop("validation_split")
    owned = sorted(set(fit_kwargs) & {"x", "y", "epochs", "batch_size", "shuffle", "verbose",
                                      "initial_epoch"})
    if owned:
        raise CompareError(
            f"fit argument {owned[0]!r} is compare's own (every activation gets the same "
            f"epochs, batches and order); pass epochs=, batch_size=, verbose= to compare."
        )
    if image_size is None and isinstance(source, sources.ModelSource):
        shape = source.model.inputs[0].shape if getattr(source.model, "inputs", None) else None
        if shape is not None and len(shape) == 4 and shape[1] and shape[2]:
            image_size = (int(shape[1]), int(shape[2]))
    loaded = data_lib.load(
        data, target=target, validation_data=validation_data, image_size=image_size,
        rescale=rescale, task=task, data_dir=data_dir, batch_size=batch_size, seed=seed,
        validation_fraction=validation_fraction, max_examples=max_examples,
    )
    if isinstance(source, sources.BuiltinSource) and loaded.task == "classification" \
            and loaded.num_classes is None:
        raise CompareError("the built-in networks need class labels or float targets.")
    source.check(choices, loaded)
    config = run_lib.TrainConfig(
        model=source.kind if isinstance(source, sources.BuiltinSource) else "given",
        depth=depth, width=width, epochs=epochs, optimizer=optimizer or "sgd",
        learning_rate=0.01 if learning_rate is None else float(learning_rate),
        momentum=momentum, seed=seed, target_accuracy=target_accuracy,
        maxout_pieces=maxout_pieces, keep_init=keep_init, loss=loss,
        metrics=None if metrics is None else list(metrics),
        optimizer_given=optimizer is not None or learning_rate is not None,
    )
    model_info = {
        "kind": "builtin" if isinstance(source, sources.BuiltinSource) else
        ("builder" if isinstance(source, sources.BuilderSource) else "model"),
        "description": source.description,
    }
    if out is not None:
        pipeline.prepare_out_dir(os.fspath(out), overwrite=overwrite, resume=resume)
    if announce is not None:
        announce(loaded, config, model_info)
    trained = {}
    report = pipeline.run_comparison(
        choices, loaded, config, None if out is None else os.fspath(out),
        verbose=verbose, stream=stream, monitor_factory=_monitor_factory(monitor),
        export=export, source=source, best_by=best_by, resume=resume,
        fit_kwargs=fit_kwargs, model_info=model_info, trained=trained,
    )
    return ComparisonResult(
        report, {k: r.model for k, r in trained.items()},
        {k: r.monitor_history for k, r in trained.items()},
    )


def _monitor_factory(monitor):
    if monitor is True:
        return run_lib.default_monitor
    if monitor in (False, None):
        return None
    if callable(monitor):
        return monitor
    raise CompareError(f"monitor must be True, False or a factory, got {monitor!r}.")


def _check_number(name, value, integer=False):
    import math
    import numbers

    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and \
        math.isfinite(value) and value > 0
    if integer:
        ok = ok and isinstance(value, numbers.Integral)
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise CompareError(f"{name} must be {kind}, got {value!r}.")

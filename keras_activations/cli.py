"""The `keras-activations` command (also `python -m keras_activations`).

    keras-activations compare --activations relu,elu,selu,sigmoid --depth 12 --out runs/compare
    keras-activations list
"""

import argparse
import os
import sys

PROG = "keras-activations"

DEFAULT_ACTIVATIONS = "relu,leaky_relu,prelu,elu,selu,maxout,sigmoid,tanh"
DEFAULTS = {
    "depth": 10,
    "width": 64,
    "epochs": 12,
    "batch_size": 32,
    "optimizer": "sgd",
    "learning_rate": 0.01,
    "momentum": 0.9,
    "seed": 0,
    "target_accuracy": 0.9,
    "maxout_pieces": 2,
    "out": os.path.join("runs", "compare"),
}


class UsageError(ValueError):
    """Bad command-line input; printed as one line, exit status 2."""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return value


def build_parser():
    """The argument parser of the `keras-activations` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Activation functions for Keras, and a comparison of how "
        "networks train with them.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    compare = sub.add_parser(
        "compare",
        help="train the same network once per activation and report why each "
        "trains well or badly",
        description="Train the same deep MLP (or small CNN) once per "
        "activation, with the initialization each calls for, the same seed "
        "and the same data order, under GradientMonitor; write TensorBoard "
        "logs, report.json, report.md, PNG figures and the best model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    compare.add_argument(
        "--activations",
        default=DEFAULT_ACTIVATIONS,
        help="comma-separated activation names (`keras-activations list` "
        "shows them); arguments of the package's layers after colons, e.g. "
        "celu:alpha=0.5",
    )
    compare.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                         help="network type")
    compare.add_argument("--depth", type=_positive_int, default=DEFAULTS["depth"],
                         help="hidden layers")
    compare.add_argument("--width", type=_positive_int, default=DEFAULTS["width"],
                         help="units (mlp) or filters (cnn) per hidden layer")
    compare.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"],
                         help="training epochs per activation")
    compare.add_argument("--batch-size", type=_positive_int,
                         default=DEFAULTS["batch_size"], help="batch size")
    compare.add_argument("--optimizer", choices=("sgd", "adam"),
                         default=DEFAULTS["optimizer"],
                         help="sgd uses --momentum")
    compare.add_argument("--learning-rate", type=_positive_float,
                         default=DEFAULTS["learning_rate"], help="learning rate")
    compare.add_argument("--momentum", type=float, default=DEFAULTS["momentum"],
                         help="SGD momentum")
    compare.add_argument("--maxout-pieces", type=_positive_int,
                         default=DEFAULTS["maxout_pieces"],
                         help="pieces k per maxout unit")
    compare.add_argument("--target-accuracy", type=_fraction,
                         default=DEFAULTS["target_accuracy"],
                         help="report the first epoch reaching this validation "
                         "accuracy")
    compare.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                         help="seed of the weights, the split and the data order")
    compare.add_argument(
        "--dataset",
        default="digits",
        help="'digits' (scikit-learn's bundled 8x8 digits) or any "
        "tensorflow-datasets image classification name (mnist, "
        "fashion_mnist, cifar10, ...), prepared in --data-dir",
    )
    compare.add_argument("--data-dir", default=None,
                         help="tensorflow-datasets data directory")
    compare.add_argument("--max-examples", type=_positive_int, default=None,
                         help="use at most this many training examples")
    compare.add_argument("--out", default=DEFAULTS["out"],
                         help="output directory")
    compare.add_argument("--overwrite", action="store_true",
                         help="replace the outputs of a previous comparison "
                         "in --out")
    compare.add_argument("--quiet", action="store_true",
                         help="one progress line per activation instead of "
                         "Keras's progress bar")
    compare.add_argument("--no-export", action="store_true",
                         help="do not save the best model")

    sub.add_parser("list", help="list the activations `compare` accepts")
    return parser


def parse_activations(text):
    """Splits and resolves `--activations`.

    Args:
        text: Comma-separated names, e.g. `"relu,elu"`.

    Returns:
        A list of `models.ActivationChoice`, in the given order.

    Raises:
        UsageError: Empty list, a repeated name or an unknown name (the
            message lists the known ones).
    """
    from keras_activations.compare import models

    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"--activations is empty ({text!r}); give at least one name.")
    try:
        choices = [models.resolve(name, **options)
                   for name, options in map(_name_and_options, items)]
    except UsageError:
        raise
    except models.UnknownActivationError as e:
        raise UsageError(str(e)) from None
    except (TypeError, ValueError) as e:
        raise UsageError(f"--activations: {e}") from None
    for choice in choices:
        if choice.options:  # Let the layer itself check its arguments, now.
            try:
                models.activation_layer(choice, "check")
            except (TypeError, ValueError) as e:
                raise UsageError(
                    f"--activations: {choice.label} is not valid: {e}"
                ) from None
    labels = [choice.label for choice in choices]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UsageError(f"--activations repeats {', '.join(repeated)}.")
    return choices


def _name_and_options(item):
    """`"celu:alpha=0.5"` -> `("celu", {"alpha": 0.5})`."""
    name, _, rest = item.partition(":")
    options = {}
    for pair in filter(None, (p.strip() for p in rest.split(":"))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"--activations: bad option {pair!r} in {item!r}; write "
                f"name:argument=value, e.g. celu:alpha=0.5."
            )
        try:
            options[key.strip()] = float(value)
        except ValueError:
            raise UsageError(
                f"--activations: option {key.strip()!r} of {name!r} must be a "
                f"number, got {value!r}."
            ) from None
    return name.strip(), options


def _compare(args, stream):
    from keras_activations.compare import data as data_lib
    from keras_activations.compare import pipeline
    from keras_activations.compare import report as report_lib
    from keras_activations.compare import run as run_lib

    choices = parse_activations(args.activations)
    try:
        pipeline.check_out_dir(args.out, overwrite=args.overwrite)
    except pipeline.OutputExistsError as e:
        raise UsageError(str(e)) from None
    try:
        data = data_lib.load_data(
            args.dataset,
            data_dir=args.data_dir,
            batch_size=args.batch_size,
            seed=args.seed,
            max_examples=args.max_examples,
        )
    except data_lib.DataError as e:
        raise UsageError(str(e)) from None
    pipeline.prepare_out_dir(args.out, overwrite=args.overwrite)
    config = run_lib.TrainConfig(
        model=args.model,
        depth=args.depth,
        width=args.width,
        epochs=args.epochs,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        momentum=args.momentum,
        seed=args.seed,
        target_accuracy=args.target_accuracy,
        maxout_pieces=args.maxout_pieces,
    )
    stream.write(
        f"{data.name}: {data.num_train} train / {data.num_validation} "
        f"validation, input {data.input_shape}, {data.num_classes} classes; "
        f"{config.model} depth {config.depth} width {config.width}, "
        f"{config.epochs} epochs.\n"
    )
    report = pipeline.run_comparison(
        choices,
        data,
        config,
        args.out,
        verbose=0 if args.quiet else 1,
        stream=stream,
        monitor_factory=_monitor_factory(),
        export=not args.no_export,
    )
    stream.write("\n" + report_lib.markdown_table(report["runs"], config.target_accuracy) + "\n\n")
    stream.write(f"Best validation accuracy: {report['best']}.\n")
    files = report["files"]
    stream.write(f"Report:      {files['report_md']} (and {files['report_json']})\n")
    figures = [files[k] for k in ("loss_curves", "gradient_norm_by_depth",
                                  "dead_fraction_by_depth")]
    stream.write(f"Figures:     {', '.join(figures)}\n")
    if "best_model_keras" in files:
        stream.write(f"Best model:  {files['best_model_keras']}, "
                     f"{files['best_model_savedmodel']}\n")
        stream.write(report["load"] + "\n")
    stream.write(f"Next:        tensorboard --logdir {files['tensorboard']}\n")
    return 0


def _monitor_factory():
    # Indirection so tests can swap the monitor (see tests/test_cli.py).
    from keras_activations.compare import run as run_lib

    return run_lib.default_monitor


def _list(stream):
    from keras_activations.compare import models

    for name in models.known_activations():
        choice = models.resolve(name)
        stream.write(
            f"{name:<14} {choice.source:<18} init {choice.initializer}\n"
        )
    return 0


def main(argv=None):
    """Runs the `keras-activations` command.

    Args:
        argv: Arguments without the program name. Defaults to `sys.argv[1:]`.

    Returns:
        The exit status: 0 on success, 2 on bad input (after one line on
        stderr saying what is wrong and what would be valid).

    Example:

    >>> main(["compare", "--activations", "relu,elu", "--epochs", "2",
    ...       "--out", "runs/try"])  # doctest: +SKIP
    0
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed the message.
        return int(e.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "compare":
            return _compare(args, sys.stdout)
        return _list(sys.stdout)
    except UsageError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 2

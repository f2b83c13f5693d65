"""The `keras-activations` command (also `python -m keras_activations`).

    keras-activations compare --activations relu,elu,selu,sigmoid --depth 12 --out runs/compare
    keras-activations compare --model my_project.models:build --data train.npz --resume
    keras-activations list
"""

import argparse
import math
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


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line (no usage block).

    argparse prints the whole usage before a bad value's message; here the
    message becomes a `UsageError`, which `main` prints as one line. The
    subcommands' parsers are of this class too (argparse makes them of the
    parent's class).
    """

    def error(self, message):
        raise UsageError(message)


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
    if not (value > 0 and math.isfinite(value)):
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


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _image_size(text):
    parts = text.lower().replace(",", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 64x64, got {text!r}")
    return size


def build_parser():
    """The argument parser of the `keras-activations` command."""
    parser = _Parser(
        prog=PROG,
        description="Activation functions for Keras, and a comparison of how "
        "networks train with them.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    compare = sub.add_parser(
        "compare",
        help="train the same network once per activation and report why each "
        "trains well or badly",
        description="Train the same network (the built-in deep MLP or small "
        "CNN, or your own model or builder) once per activation, with the "
        "initialization each calls for, the same seed and the same data "
        "order, under GradientMonitor; write TensorBoard logs (with HParams), "
        "report.json, report.md, PNG figures and the best model. Ctrl-C "
        "writes what is finished; --resume continues.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    compare.add_argument(
        "--activations",
        default=DEFAULT_ACTIVATIONS,
        help="comma-separated activation names (`keras-activations list` "
        "shows them); arguments of the package's layers after colons, e.g. "
        "celu:alpha=0.5",
    )
    compare.add_argument("--model", default="mlp",
                         help="'mlp' or 'cnn' (built-in), a .keras file, or "
                         "module:function, a builder called as build(activation) "
                         "or build()")
    compare.add_argument("--depth", type=_positive_int, default=DEFAULTS["depth"],
                         help="hidden layers (built-in networks)")
    compare.add_argument("--width", type=_positive_int, default=DEFAULTS["width"],
                         help="units (mlp) or filters (cnn) per hidden layer")
    compare.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"],
                         help="training epochs per activation")
    compare.add_argument("--batch-size", type=_positive_int,
                         default=DEFAULTS["batch_size"], help="batch size")
    compare.add_argument("--optimizer", choices=("sgd", "adam"), default=None,
                         help="sgd uses --momentum (default: a compiled model's "
                         "own, else sgd)")
    compare.add_argument("--learning-rate", type=_positive_float, default=None,
                         help="learning rate (default: a compiled model's own, "
                         "else 0.01)")
    compare.add_argument("--momentum", type=_finite_float, default=DEFAULTS["momentum"],
                         help="SGD momentum")
    compare.add_argument("--loss", default=None,
                         help="Keras loss name (default: the compiled one, else "
                         "inferred: sparse categorical cross-entropy for labels, "
                         "mean squared error for float targets)")
    compare.add_argument("--metrics", default=None,
                         help="comma-separated Keras metric names (default: the "
                         "compiled ones, else accuracy or mean absolute error)")
    compare.add_argument("--best-by", default="val_loss",
                         help="report key naming the best activation, e.g. "
                         "val_loss, val_accuracy, val_mean_absolute_error")
    compare.add_argument("--keep-init", action="store_true",
                         help="start every candidate from the given model's "
                         "weights instead of the initialization it calls for")
    compare.add_argument("--exclude", default="",
                         help="comma-separated layer names whose activations are "
                         "kept")
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
        "--data",
        default=None,
        help="your data: an .npz file (x, y, optional x_val, y_val), a .csv "
        "file (with --target) or a directory of images, one sub-directory "
        "per class",
    )
    compare.add_argument("--target", default=None,
                         help="the CSV column to predict")
    compare.add_argument("--task", choices=("classification", "regression"),
                         default=None, help="default: what the targets say")
    compare.add_argument("--image-size", type=_image_size, default=None,
                         help="HEIGHTxWIDTH for an image directory (default: "
                         "the model's input size, else 256x256)")
    compare.add_argument("--no-rescale", action="store_true",
                         help="keep directory images' pixels in [0, 255] (for a "
                         "model with its own Rescaling layer)")
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
    compare.add_argument("--resume", action="store_true",
                         help="continue an interrupted comparison in --out, "
                         "keeping its finished activations")
    compare.add_argument("--quiet", action="store_true",
                         help="one progress line per activation instead of "
                         "Keras's progress bar")
    compare.add_argument("--no-export", action="store_true",
                         help="do not save the models")

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
    from keras_activations.compare import api

    try:
        return api.parse_activations(text)
    except api.CompareError as e:
        raise UsageError(str(e)) from None


def _compare(args, stream):
    from keras_activations.compare import api

    parse_activations(args.activations)  # bad names before anything is loaded
    names = [n.strip() for n in (args.metrics or "").split(",") if n.strip()]
    try:
        result = api.compare(
            args.model,
            args.data if args.data is not None else args.dataset,
            args.activations,
            epochs=args.epochs, out=args.out, batch_size=args.batch_size,
            optimizer=args.optimizer, learning_rate=args.learning_rate,
            momentum=args.momentum, loss=args.loss,
            metrics=names or None, best_by=args.best_by,
            keep_init=args.keep_init,
            exclude=[n.strip() for n in args.exclude.split(",") if n.strip()],
            seed=args.seed, target=args.target, task=args.task,
            image_size=args.image_size, rescale=not args.no_rescale,
            max_examples=args.max_examples, data_dir=args.data_dir,
            depth=args.depth, width=args.width, maxout_pieces=args.maxout_pieces,
            target_accuracy=args.target_accuracy, resume=args.resume,
            overwrite=args.overwrite, export=not args.no_export,
            monitor=_monitor_factory(), verbose=0 if args.quiet else 1,
            stream=stream, announce=_announce(stream),
        )
    except api.CompareError as e:
        raise UsageError(str(e)) from None
    files = result.paths
    if result.partial:
        sys.stderr.write(
            f"{PROG}: interrupted: {len(result.runs)} of "
            f"{len(result['activations'])} activations finished; partial report "
            f"in {files['report_md']}; --resume continues.\n"
        )
        return 130
    stream.write("\n" + result.table(print_=False) + "\n\n")
    stream.write(f"Best by {result['best_by'].replace('_', ' ')}: {result.best}.\n")
    stream.write(f"Report:      {files['report_md']} (and {files['report_json']})\n")
    figures = [files[k] for k in ("loss_curves", "gradient_norm_by_depth",
                                  "dead_fraction_by_depth")]
    stream.write(f"Figures:     {', '.join(figures)}\n")
    if "best_model_keras" in files:
        stream.write(f"Best model:  {files['best_model_keras']}, "
                     f"{files['best_model_savedmodel']}\n")
        stream.write(result["load"] + "\n")
    stream.write(f"Next:        tensorboard --logdir {files['tensorboard']}\n")
    return 0


def _announce(stream):
    def announce(data, config, model_info):
        if model_info["kind"] == "builtin":
            model = f"{config.model} depth {config.depth} width {config.width}"
        else:
            model = model_info["description"]
        classes = f"{data.num_classes} classes" if data.num_classes else "regression"
        stream.write(
            f"{data.name}: {data.num_train} train / {data.num_validation} "
            f"validation, input {data.input_shape}, {classes}; "
            f"{model}, {config.epochs} epochs.\n"
        )
    return announce


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
    except SystemExit as e:  # --help: argparse printed it.
        return int(e.code or 0)
    except UsageError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 2
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
    except KeyboardInterrupt:  # before the first activation started: nothing to write
        sys.stderr.write(f"{PROG}: interrupted before any activation finished.\n")
        return 130

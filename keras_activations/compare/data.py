"""Datasets for `keras-activations compare`: scikit-learn's digits and tensorflow-datasets.

Every loader returns a `Data` with a training and a validation `tf.data.Dataset` whose order
is fixed by a seed, so that every activation in a comparison sees exactly the same batches in
exactly the same order.
"""

import dataclasses

import numpy as np
import tensorflow as tf

DEFAULT_DATASET = "digits"


class DataError(ValueError):
    """A dataset that cannot be loaded; the message says why and what to do."""


@dataclasses.dataclass
class Data:
    """A classification dataset ready for training.

    Attributes:
        name: Dataset name (`"digits"` or a tensorflow-datasets name).
        input_shape: Shape of one image, e.g. `(8, 8, 1)`.
        num_classes: Number of labels.
        num_train: Number of training examples.
        num_validation: Number of validation examples.
        batch_size: Batch size of both datasets.
        seed: Seed of the split and of the shuffle order.
        source: One line describing where the data came from.
    """

    name: str
    input_shape: tuple
    num_classes: int
    num_train: int
    num_validation: int
    batch_size: int
    seed: int
    source: str
    _train_images: np.ndarray = dataclasses.field(repr=False, default=None)
    _train_labels: np.ndarray = dataclasses.field(repr=False, default=None)
    _val_images: np.ndarray = dataclasses.field(repr=False, default=None)
    _val_labels: np.ndarray = dataclasses.field(repr=False, default=None)

    def train_dataset(self, flatten=False):
        """Training batches, shuffled each epoch in an order fixed by `seed`.

        Two datasets made by two calls yield the same batches in the same order, epoch
        after epoch, whatever happened to TensorFlow's global random state in between.

        Args:
            flatten: If True, images are flattened to vectors (for MLPs).

        Returns:
            A `tf.data.Dataset` of `(images, labels)` batches.
        """
        ds = tf.data.Dataset.from_tensor_slices(
            (self._prepare(self._train_images, flatten), self._train_labels)
        )
        # The op-level seed fixes the order, epoch after epoch, for a given
        # global seed (`keras.utils.set_random_seed`, set once per run).
        ds = ds.shuffle(
            self.num_train,
            seed=self.seed,
            reshuffle_each_iteration=True,
        )
        return ds.batch(self.batch_size).prefetch(2)

    def validation_dataset(self, flatten=False):
        """Validation batches in a fixed order (not shuffled).

        Args:
            flatten: If True, images are flattened to vectors (for MLPs).

        Returns:
            A `tf.data.Dataset` of `(images, labels)` batches.
        """
        ds = tf.data.Dataset.from_tensor_slices(
            (self._prepare(self._val_images, flatten), self._val_labels)
        )
        return ds.batch(self.batch_size).prefetch(2)

    def train_arrays(self, flatten=False):
        """The training set as NumPy arrays `(images, labels)`, unshuffled."""
        return self._prepare(self._train_images, flatten), self._train_labels

    def validation_arrays(self, flatten=False):
        """The validation set as NumPy arrays `(images, labels)`."""
        return self._prepare(self._val_images, flatten), self._val_labels

    def _prepare(self, images, flatten):
        if flatten:
            return images.reshape((images.shape[0], -1))
        return images


def load_data(
    name=DEFAULT_DATASET,
    data_dir=None,
    batch_size=32,
    seed=0,
    validation_fraction=0.2,
    max_examples=None,
):
    """Loads a dataset for `compare` and the examples.

    Args:
        name: `"digits"` (scikit-learn's bundled 8x8 handwritten digits, 1,797
            images, no download) or the name of any image classification
            dataset of tensorflow-datasets (`"mnist"`, `"fashion_mnist"`,
            `"cifar10"`, ...), which must already be prepared in `data_dir`.
        data_dir: Where tensorflow-datasets looks for prepared data. Defaults
            to tensorflow-datasets' own default (`~/tensorflow_datasets`).
        batch_size: Batch size. Defaults to 32.
        seed: Seed of the train/validation split and of the shuffle order.
            Defaults to 0.
        validation_fraction: For digits, and for tfds datasets without a
            `test`/`validation` split, the fraction held out. Defaults to 0.2.
        max_examples: If set, use at most this many training examples (and
            at most a quarter of it, at least 1, for validation). Defaults to
            None (all).

    Returns:
        A `Data`.

    Raises:
        DataError: The dataset is unknown or not prepared offline; the message
            says how to download it.

    Example:

    >>> data = load_data("digits", seed=0)
    >>> data.input_shape, data.num_classes, data.num_train
    ((8, 8, 1), 10, 1437)
    """
    if batch_size < 1:
        raise DataError(f"--batch-size must be a positive integer, got {batch_size}.")
    if not 0.0 < validation_fraction < 1.0:
        raise DataError(
            f"validation_fraction must be in (0, 1), got {validation_fraction}."
        )
    if max_examples is not None and max_examples < 1:
        raise DataError(
            f"--max-examples must be a positive integer, got {max_examples}."
        )
    if name == "digits":
        arrays = _load_digits(seed, validation_fraction)
        source = "scikit-learn load_digits (bundled, 8x8 grey images scaled to [0, 1])"
        num_classes = 10
    else:
        arrays, num_classes, source = _load_tfds(
            name, data_dir, seed, validation_fraction, max_examples
        )
    x_train, y_train, x_val, y_val = arrays
    if max_examples is not None:
        x_train, y_train = x_train[:max_examples], y_train[:max_examples]
        n_val = max(1, max_examples // 4)
        x_val, y_val = x_val[:n_val], y_val[:n_val]
    return Data(
        name=name,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        num_classes=int(num_classes),
        num_train=int(x_train.shape[0]),
        num_validation=int(x_val.shape[0]),
        batch_size=int(batch_size),
        seed=int(seed),
        source=source,
        _train_images=x_train,
        _train_labels=y_train,
        _val_images=x_val,
        _val_labels=y_val,
    )


def _load_digits(seed, validation_fraction):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., np.newaxis]
    labels = digits.target.astype("int32")
    x_train, x_val, y_train, y_val = train_test_split(
        images,
        labels,
        test_size=validation_fraction,
        random_state=seed,
        stratify=labels,
    )
    return x_train, y_train, x_val, y_val


def download_hint(name, data_dir=None):
    """One line saying how to prepare a tensorflow-datasets dataset for offline use."""
    target = data_dir or "~/tensorflow_datasets"
    return (
        f"on a machine with internet access run `tfds build {name} "
        f"--data_dir {target}` (or `tfds.load('{name}', data_dir='{target}', "
        f"download=True)` in Python), copy that directory here and pass "
        f"--data-dir {target}"
    )


def _load_tfds(name, data_dir, seed, validation_fraction, max_examples):
    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends.
        raise DataError(
            f"--dataset {name!r} is neither 'digits' nor a tensorflow-datasets "
            f"dataset ({type(e).__name__}); see `tfds.list_builders()` for the "
            f"names."
        ) from None
    info = builder.info
    features = info.features
    if "image" not in features or "label" not in features:
        raise DataError(
            f"--dataset {name!r} is not an image classification dataset "
            f"(its features are {sorted(features.keys())}; 'image' and "
            f"'label' are needed)."
        )
    num_classes = features["label"].num_classes
    split_names = set(info.splits.keys())
    if split_names and "train" not in split_names:
        raise DataError(
            f"--dataset {name!r} has no 'train' split (it has "
            f"{sorted(split_names)})."
        )
    held_out = next(
        (s for s in ("validation", "test") if s in split_names), None
    )
    if held_out is None:
        percent = int(round(100 * (1 - validation_fraction)))
        splits = [f"train[:{percent}%]", f"train[{percent}%:]"]
    else:
        splits = ["train", held_out]
    try:
        train_ds, val_ds = tfds.load(
            name,
            split=splits,
            data_dir=data_dir,
            as_supervised=True,
            download=False,
        )
    except Exception as e:  # AssertionError / DatasetNotFoundError when not prepared.
        raise DataError(
            f"--dataset {name!r} is not prepared in "
            f"{data_dir or '~/tensorflow_datasets'} and cannot be downloaded "
            f"here ({type(e).__name__}): {download_hint(name, data_dir)}."
        ) from None
    n_val = None if max_examples is None else max(1, max_examples // 4)
    x_train, y_train = _to_arrays(train_ds, max_examples)
    x_val, y_val = _to_arrays(val_ds, n_val)
    source = (
        f"tensorflow-datasets {name!r} (splits {splits[0]!r} / {splits[1]!r}, "
        f"data_dir={data_dir or 'default'}), images scaled to [0, 1]"
    )
    return (x_train, y_train, x_val, y_val), num_classes, source


def _to_arrays(ds, limit):
    if limit is not None:
        ds = ds.take(limit)
    images, labels = [], []
    for image, label in ds.batch(1024).as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        raise DataError("the dataset split is empty.")
    x = np.concatenate(images).astype("float32")
    if np.issubdtype(images[0].dtype, np.integer):
        x = x / 255.0
    if x.ndim == 3:
        x = x[..., np.newaxis]
    return x, np.concatenate(labels).astype("int32")

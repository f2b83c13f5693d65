"""Tests of keras_activations.compare.data: digits and tensorflow-datasets loading."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from keras_activations.compare import data as data_lib  # noqa: E402


def _labels_per_epoch(data, epochs=2, seed=0):
    keras.utils.set_random_seed(seed)
    ds = data.train_dataset()
    return [
        np.concatenate([y for _, y in ds.as_numpy_iterator()]) for _ in range(epochs)
    ]


def test_digits_shapes_scale_and_split():
    data = data_lib.load_data("digits", batch_size=50)
    assert data.input_shape == (8, 8, 1)
    assert data.num_classes == 10
    assert (data.num_train, data.num_validation) == (1437, 360)
    x, y = data.train_arrays()
    assert x.dtype == np.float32 and 0.0 == x.min() and x.max() == 1.0
    # Stratified: every class has 35 or 36 validation examples.
    _, y_val = data.validation_arrays()
    assert set(np.bincount(y_val)) <= {35, 36, 37}
    batch_x, batch_y = next(iter(data.train_dataset()))
    assert batch_x.shape == (50, 8, 8, 1) and batch_y.shape == (50,)
    flat, _ = data.train_arrays(flatten=True)
    assert flat.shape == (1437, 64)


def test_digits_split_is_fixed_by_seed():
    a = data_lib.load_data("digits", seed=0).validation_arrays()[1]
    b = data_lib.load_data("digits", seed=0).validation_arrays()[1]
    c = data_lib.load_data("digits", seed=1).validation_arrays()[1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_same_data_order_for_every_run():
    data = data_lib.load_data("digits", max_examples=200)
    first = _labels_per_epoch(data)
    tf.random.uniform([5])  # Whatever happens in between...
    keras.layers.Dense(3).build((None, 4))
    second = _labels_per_epoch(data)
    # ...every run sees the same order, epoch by epoch,
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    # reshuffled between epochs, over the same examples.
    assert not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(np.sort(first[0]), np.sort(first[1]))
    # Another seed, another order.
    other = data_lib.load_data("digits", max_examples=200, seed=3)
    assert not np.array_equal(_labels_per_epoch(other, seed=3)[0], first[0])


def test_max_examples_limits_both_splits():
    data = data_lib.load_data("digits", max_examples=100)
    assert (data.num_train, data.num_validation) == (100, 25)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "--batch-size must be a positive integer, got 0"),
        ({"max_examples": -3}, "--max-examples must be a positive integer, got -3"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(data_lib.DataError, match=match):
        data_lib.load_data("digits", **kwargs)


def test_tfds_loading_through_the_real_code_path(tmp_path):
    with tfds.testing.mock_data(num_examples=40):
        data = data_lib.load_data(
            "mnist", data_dir=str(tmp_path), batch_size=8, seed=0
        )
    assert data.name == "mnist"
    assert data.input_shape == (28, 28, 1)
    assert data.num_classes == 10
    # mock_data yields num_examples for every split it is asked for.
    assert (data.num_train, data.num_validation) == (40, 40)
    x, y = data.train_arrays()
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert x.max() > 0.5  # uint8 pixels were scaled by 1/255, not clipped.
    assert set(np.unique(y)) <= set(range(10))
    assert "tensorflow-datasets 'mnist'" in data.source
    batch_x, _ = next(iter(data.train_dataset()))
    assert batch_x.shape == (8, 28, 28, 1)


def test_tfds_color_images_and_max_examples(tmp_path):
    with tfds.testing.mock_data(num_examples=30):
        data = data_lib.load_data(
            "cifar10", data_dir=str(tmp_path), max_examples=12
        )
    assert data.input_shape == (32, 32, 3)
    assert (data.num_train, data.num_validation) == (12, 3)


def test_unprepared_tfds_dataset_says_how_to_download(tmp_path):
    with pytest.raises(data_lib.DataError) as info:
        data_lib.load_data("mnist", data_dir=str(tmp_path))
    message = str(info.value)
    assert "not prepared" in message
    assert f"tfds build mnist --data_dir {tmp_path}" in message
    assert "download=True" in message and "--data-dir" in message
    assert "\n" not in message


def test_unknown_dataset_is_one_clear_line():
    with pytest.raises(data_lib.DataError, match="'no_such_dataset' is neither 'digits' nor"):
        data_lib.load_data("no_such_dataset")

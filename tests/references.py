"""Independent NumPy (float64) closed forms of every activation, its derivative and kink values.

Written from the papers' formulas, not from the package's code, so that the tests compare two
independent implementations. `CASES` gives, per registry name, keyword arguments to test with.
"""

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _np(x):
    return np.asarray(x, dtype=np.float64)


def _where(cond, a, b):
    with np.errstate(all="ignore"):
        return np.where(cond, a, b)


def elu(x, alpha=1.0, **_):
    x = _np(x)
    with np.errstate(all="ignore"):
        return _where(x > 0, x, alpha * np.expm1(x))


def d_elu(x, alpha=1.0, **_):
    x = _np(x)
    with np.errstate(all="ignore"):
        return _where(x > 0, 1.0, alpha * np.exp(x))


def selu(x, **_):
    return SELU_SCALE * elu(x, SELU_ALPHA)


def d_selu(x, **_):
    return SELU_SCALE * d_elu(x, SELU_ALPHA)


def celu(x, alpha=1.0, **_):
    x = _np(x)
    with np.errstate(all="ignore"):
        return np.maximum(0, x) + np.minimum(0, alpha * np.expm1(x / alpha))


def d_celu(x, alpha=1.0, **_):
    x = _np(x)
    with np.errstate(all="ignore"):
        return _where(x > 0, 1.0, np.exp(x / alpha))


def pelu(x, a=1.0, b=1.0, **_):
    x = _np(x)
    with np.errstate(all="ignore"):
        return _where(x >= 0, (a / b) * x, a * np.expm1(x / b))


def d_pelu(x, a=1.0, b=1.0, **_):
    x = _np(x)
    with np.errstate(all="ignore"):
        return _where(x >= 0, a / b, (a / b) * np.exp(x / b))


def isrlu(x, alpha=1.0, **_):
    x = _np(x)
    with np.errstate(all="ignore"):
        neg = _where(np.isinf(x), -1 / np.sqrt(alpha), x / np.sqrt(1 + alpha * x * x))
        return _where(x >= 0, x, neg)


def d_isrlu(x, alpha=1.0, **_):
    x = _np(x)
    with np.errstate(all="ignore"):
        return _where(x >= 0, 1.0, (1 + alpha * x * x) ** -1.5)


def leaky_relu(x, negative_slope=0.01, **_):
    x = _np(x)
    with np.errstate(all="ignore"):
        # A zero slope gives 0 on the whole negative half-line, -inf included (as tf.nn.relu).
        negative = 0.0 if negative_slope == 0 else negative_slope * np.minimum(0, x)
        return np.maximum(0, x) + negative


def d_leaky_relu(x, negative_slope=0.01, **_):
    return _where(_np(x) > 0, 1.0, negative_slope)


def abs_rectifier(x, **_):
    return np.abs(_np(x))


def d_abs_rectifier(x, **_):
    return _where(_np(x) > 0, 1.0, -1.0)


def prelu(x, alpha=0.25, **_):
    return leaky_relu(x, alpha)


def d_prelu(x, alpha=0.25, **_):
    return d_leaky_relu(x, alpha)


def rrelu(x, lower=1 / 8, upper=1 / 3, **_):
    return leaky_relu(x, (lower + upper) / 2)


def d_rrelu(x, lower=1 / 8, upper=1 / 3, **_):
    return d_leaky_relu(x, (lower + upper) / 2)


def maxout(x, num_units=1, **_):
    x = _np(x)
    return x.reshape(x.shape[:-1] + (num_units, -1)).max(-1)


def d_maxout(x, num_units=1, **_):
    x = _np(x)
    groups = x.reshape(x.shape[:-1] + (num_units, -1))
    first = np.argmax(groups, axis=-1)
    mask = np.zeros_like(groups)
    np.put_along_axis(mask, first[..., None], 1.0, axis=-1)
    return mask.reshape(x.shape)


# name -> (forward, derivative, list of keyword-argument cases)
REFERENCES = {
    "elu": (elu, d_elu, [{}, {"alpha": 0.5}, {"alpha": 2.0}]),
    "selu": (selu, d_selu, [{}]),
    "celu": (celu, d_celu, [{}, {"alpha": 0.5}, {"alpha": 0.01}]),
    "pelu": (pelu, d_pelu, [{"a": 1.0, "b": 1.0}, {"a": 1.5, "b": 0.5}]),
    "isrlu": (isrlu, d_isrlu, [{}, {"alpha": 3.0}]),
    "leaky_relu": (leaky_relu, d_leaky_relu, [{}, {"negative_slope": 0.3}, {"negative_slope": 0.0},
                                              {"negative_slope": -0.5}]),
    "abs_rectifier": (abs_rectifier, d_abs_rectifier, [{}]),
    "prelu": (prelu, d_prelu, [{"alpha": 0.25}, {"alpha": -0.1}]),
    "rrelu": (rrelu, d_rrelu, [{}, {"lower": 0.1, "upper": 0.3}]),
    "maxout": (maxout, d_maxout, [{"num_units": 1}]),
}

# name -> (left derivative at 0, right derivative at 0, default value at 0) given the case's kwargs
def kink(name, kwargs):
    slope = {
        "elu": kwargs.get("alpha", 1.0),
        "selu": SELU_SCALE * SELU_ALPHA,
        "leaky_relu": kwargs.get("negative_slope", 0.01),
        "abs_rectifier": -1.0,
        "prelu": kwargs.get("alpha", 0.25),
        "rrelu": (kwargs.get("lower", 1 / 8) + kwargs.get("upper", 1 / 3)) / 2,
    }[name]
    right = SELU_SCALE if name == "selu" else 1.0
    default = {"elu": right, "selu": right, "leaky_relu": slope, "abs_rectifier": 0.0,
               "prelu": 0.0, "rrelu": slope}[name]
    return slope, right, default


GRID = np.array([0.0, 1e-7, -1e-7, 1e-30, -1e-30, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, -20.0, 20.0,
                 1e4, -1e4, np.inf, -np.inf, np.nan])

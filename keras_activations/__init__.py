"""keras-activations: activations with hand-written gradients for Keras 3, and a training monitor.

Public API:

- functions: `elu`, `selu`, `celu`, `pelu`, `isrlu`, `leaky_relu`, `abs_rectifier`, `prelu`, `rrelu`,
  `maxout`, and the registry: `get`, `serialize`, `deserialize`, `available`, `get_spec`;
- layers: `ELU`, `SELU`, `CELU`, `PELU`, `ISRLU`, `LeakyReLU`, `AbsRectifier`, `PReLU`, `RReLU`,
  `Maxout`; the constraint `MinValue`;
- `GradientMonitor`, and `compare(model_or_builder, data, activations=[...], ...)`.
"""

from keras_activations import _backend  # noqa: F401  (raises a helpful ImportError without TensorFlow)
from keras_activations.activations import (
    abs_rectifier,
    available,
    celu,
    deserialize,
    elu,
    get,
    get_spec,
    isrlu,
    leaky_relu,
    maxout,
    pelu,
    prelu,
    rrelu,
    selu,
    serialize,
)
from keras_activations.constraints import MinValue
from keras_activations.layers import (
    CELU,
    ELU,
    ISRLU,
    PELU,
    SELU,
    AbsRectifier,
    LeakyReLU,
    Maxout,
    PReLU,
    RReLU,
)

__version__ = "0.1.0"
from keras_activations.monitor import GradientMonitor  # noqa: E402
from keras_activations import compare  # noqa: E402  (callable: keras_activations.compare(...))

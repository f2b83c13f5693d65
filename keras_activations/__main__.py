"""`python -m keras_activations ...`, the same as the `keras-activations` command."""

import sys

from keras_activations.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""README stays in sync with the specs; every public object is documented."""

import inspect
import os

import keras_activations as ka
from keras_activations.docs import activation_table

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_readme_activation_table_is_generated_from_the_specs():
    text = open(README, encoding="utf-8").read()
    start = text.index("-->", text.index("<!-- activation-table:start")) + len("-->\n")
    end = text.index("<!-- activation-table:end -->")
    assert text[start:end] == activation_table(), "run `python -m keras_activations.docs` and paste"
    assert all(f"| `{name}` |" in text for name in ka.available())


def test_every_public_function_and_layer_has_a_docstring_with_an_example_and_type_hints():
    public = [getattr(ka, name) for name in dir(ka) if not name.startswith("_")]
    checked = 0
    for obj in public:
        if inspect.isfunction(obj) and obj.__module__.startswith("keras_activations.activations"):
            doc = obj.__doc__ or ""
            assert "Args:" in doc or obj.__name__ in {"available", "specs"}, obj
            assert "Example" in doc, obj
            checked += 1
        elif inspect.isclass(obj) and obj.__module__.startswith("keras_activations.layers"):
            assert "Args:" in (obj.__doc__ or "") and "Example" in obj.__doc__, obj
            assert obj.get_config is not None
            checked += 1
    assert checked >= 20


def test_import_without_tensorflow_names_the_extra_to_install():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "try:\n    import keras_activations\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "keras-activations[cpu]" in out and "keras-activations[gpu]" in out

"""The real entry point, in a subprocess: `python -m keras_activations`."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "keras_activations", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )


def test_module_entry_point_help_and_error(tmp_path):
    help_ = _run("compare", "--help")
    assert help_.returncode == 0
    for option in ("--activations", "--depth", "--dataset", "--data-dir",
                   "--out", "--overwrite", "--quiet", "--model"):
        assert option in help_.stdout

    bad = _run("compare", "--activations", "relu,nope", "--out", str(tmp_path / "o"))
    assert bad.returncode == 2
    errors = [l for l in bad.stderr.splitlines() if l.startswith("keras-activations:")]
    assert len(errors) == 1, bad.stderr
    assert errors[0].startswith("keras-activations: error: unknown activation 'nope'")
    assert "prelu" in errors[0]  # the known names are listed
    assert not (tmp_path / "o").exists()

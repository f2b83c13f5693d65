"""The README's activation table, generated from the specs (`python -m keras_activations.docs`)."""

from __future__ import annotations

from keras_activations.activations.registry import specs


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _kink(spec) -> str:
    if not spec.elementwise:
        return "no kink choice: ties send the gradient to the first piece"
    if spec.grad_at_zero is None:
        return "continuous at 0"
    return f"`{spec.grad_at_zero!r}` (as {spec.builtin})"


def activation_table() -> str:
    """Returns the Markdown table of every activation: formula, derivative, defaults, kink choice."""
    lines = [
        "| function | layer | f(x) | f'(x) | parameters | f'(0) by default (`grad_at_zero`) | backward keeps |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in specs():
        lines.append(
            f"| `{spec.name}` | `{spec.layer}` | {_cell(spec.formula)} | {_cell(spec.derivative_formula)} | "
            f"{_cell(spec.parameters)} | {_kink(spec)} | {spec.saves} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(activation_table(), end="")

"""What an executed notebook must not show: return values nobody meant to display (used by several test files)."""

import ast
import re

# A cell whose last line calls one of these shows the call's return value: a count of characters written,
# a path, a tuple of saved files, the whole course state. None of them is meant for the learner.
SIDE_EFFECTS = re.compile(r"^(write\w*|atomic_write_text|update_state|save_pretrained)$")
STATE_DUMP = re.compile(r"^\{'profile': .*'base_model': ", re.S)


def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def last_call(code: str) -> str:
    """The name of the function a cell's last statement calls, when that statement is a bare call; else ''."""
    body = ast.parse(code).body
    if not body or not isinstance(body[-1], ast.Expr) or not isinstance(body[-1].value, ast.Call):
        return ""
    func = body[-1].value.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def side_effect_cells(book: dict) -> dict[int, str]:
    """Code cells (index: name) whose last statement is a bare call of a side effect, so Jupyter shows its value."""
    return {i: name for i, cell in enumerate(book["cells"])
            if cell["cell_type"] == "code" and SIDE_EFFECTS.match(name := last_call(source(cell)))}


def stray_outputs(book: dict) -> list[str]:
    """Values an executed notebook displays that nobody meant to show: side-effect results, bare numbers, the state."""
    ends, found = side_effect_cells(book), []
    for i, cell in enumerate(book["cells"]):
        for out in cell.get("outputs", []):
            text = "".join(out["data"].get("text/plain", "")) if out["output_type"] == "execute_result" else None
            if text is None:
                continue
            if i in ends:
                found.append(f"cell {i} shows the value of {ends[i]}(): {text[:60]!r}")
            elif re.fullmatch(r"\s*\d+\s*", text):
                found.append(f"cell {i} shows a bare number {text.strip()} (the return value of a write?)")
            elif STATE_DUMP.match(text):
                found.append(f"cell {i} dumps the course state: {text[:60]!r}...")
    return found

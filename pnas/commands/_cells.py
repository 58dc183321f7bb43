"""The CELL argument shared by commands: a built-in name, a JSON file or a JSON string."""

from __future__ import annotations

from pathlib import Path

from shared.errors import UserError
from shared.space import BUILTIN_CELLS, KNOWN_OPS, Cell

CELL_HELP = (
    "A built-in cell (" + ", ".join(BUILTIN_CELLS) + "), a JSON file, or a JSON list of blocks "
    "like '[[-2, \"sep3x3\", -1, \"identity\"]]' (inputs: -2 = H[c-2], -1 = H[c-1], 0.. = earlier blocks)."
)


def parse_cell_arg(text: str) -> Cell:
    """``pnasnet5``, ``cell.json`` or ``[[-2, "sep3x3", -1, "max3x3"], ...]`` -> a `Cell`.

    Raises `UserError` with one line for an unknown name, a missing file, bad JSON, a bad
    wiring or an unknown operator.
    """
    text = (text or "").strip()
    if not text:
        raise UserError("--cell is empty; " + CELL_HELP)
    if text.lower() in BUILTIN_CELLS:
        return BUILTIN_CELLS[text.lower()]
    if text[0] in "[{":
        cell = Cell.from_json(text)
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise UserError(
                f"cell {text!r} is neither a built-in cell ({', '.join(BUILTIN_CELLS)}), "
                "an existing JSON file, nor a JSON list of blocks"
            )
        try:
            content = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read cell file {path}: {exc}") from None
        try:
            cell = Cell.from_json(content)
        except UserError as exc:
            raise UserError(f"cell file {path}: {exc}") from None
    unknown = sorted(cell.ops - KNOWN_OPS)
    if unknown:
        raise UserError(f"unknown operator {unknown[0]!r}; valid names: {', '.join(sorted(KNOWN_OPS))}")
    return cell

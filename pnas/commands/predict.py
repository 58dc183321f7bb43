"""`pnas predict RUN --cell CELL ...`: score cells with a run's latest predictor ensemble.

CELL is what `pnas model` takes (a built-in name, a JSON string, a JSON file holding one
cell) or a file with one cell per line. A file is read line by line when its first
non-blank line is a complete JSON value; otherwise the whole file is one cell, so a
pretty-printed cell still works. In a file of lines, blank lines and lines starting with
``#`` are skipped, and each line is a list of blocks or an object with ``blocks``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, List

import typer
from rich.markup import escape  # help text is Rich markup: keep H[c-1] visible

from pnas.commands._cells import CELL_HELP, parse_cell_arg
from shared.errors import UserError
from shared.settings import get_settings
from shared.space import BUILTIN_CELLS, Cell, SearchSpace
from shared.space.network import network_id

if TYPE_CHECKING:
    from shared.jobs import RunView
    from shared.store import Store


@dataclass(frozen=True)
class NamedCell:
    """A cell and where it came from, to name it in messages (``cells.jsonl:3``)."""

    label: str
    cell: Cell

    @property
    def short(self) -> str:
        return short_label(self.label)


def short_label(label: str) -> str:
    """The label for a message: a long JSON cell cut to 60 characters; paths kept whole."""
    if label[:1] in "[{" and len(label) > 60:
        return label[:57] + "..."
    return label


def read_cells(arg: str) -> list[NamedCell]:
    """One ``--cell`` argument -> its cells (several for a file of one cell per line)."""
    text = (arg or "").strip()
    path = Path(text).expanduser()
    if text and text.lower() not in BUILTIN_CELLS and text[0] not in "[{" and path.is_file():
        lines = _cell_lines(path)
        if lines and _is_json(lines[0][1]):
            out = []
            for number, line in lines:
                label = f"{path}:{number}"
                try:
                    out.append(NamedCell(label, Cell.from_json(line)))
                except UserError as exc:
                    raise UserError(f"cell {label}: {exc}") from None
            return out
        label = str(path)
    else:
        label = text
    try:
        return [NamedCell(label, parse_cell_arg(text))]
    except UserError as exc:
        if repr(label) in str(exc) or str(path) in str(exc):
            raise  # the message names the cell already
        raise UserError(f"cell {short_label(label)}: {exc}") from None


def _cell_lines(path: Path) -> list[tuple[int, str]]:
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read cell file {path}: {exc}") from None
    return [
        (number, line.strip())
        for number, line in enumerate(content.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def fit_to_space(cells: list[NamedCell], space: SearchSpace, run_name: str) -> list[NamedCell]:
    """The cells in the space's canonical order; `UserError` naming the first that does not fit."""
    out = []
    for c in cells:
        try:
            out.append(NamedCell(c.label, space.validate(c.cell)))
        except UserError as exc:
            raise UserError(
                f"cell {c.short} does not fit the search space of run {run_name!r} "
                f"({', '.join(space.ops)}; B={space.blocks}): {exc}"
            ) from None
    return out


def load_predictor(store: Store, run: RunView):
    """(level, Ensemble) of the run's newest stored predictor; `UserError` when there is none."""
    from controller.predictor import Ensemble

    stored = store.latest_predictor(run.id)
    if stored is None:
        if run.config.get("strategy") in ("random", "evolution"):
            raise UserError(
                f"run {run.name!r} uses the {run.config['strategy']} strategy, which fits no predictor; "
                "score cells with a run of the pnas strategy"
            )
        raise UserError(
            f"run {run.name!r} has no stored predictor yet (it is {run.state}, at level {run.level}); "
            "the first one is fitted when every child of level 1 has finished"
        )
    level, blob = stored
    return level, Ensemble.from_bytes(blob)


def score(ens, space: SearchSpace, cells: list[NamedCell], *, run_name: str, level: int) -> list[dict]:
    """One dict per cell: the ensemble's mean prediction and its members' spread."""
    if tuple(ens.ops) != tuple(space.ops) or ens.blocks != space.blocks:
        raise UserError(
            f"the stored predictor of run {run_name!r} was fitted on {', '.join(ens.ops)} with B={ens.blocks}, "
            f"but the run's config says {', '.join(space.ops)} with B={space.blocks}"
        )
    per_member = ens.predict([space.tokens(c.cell) for c in cells], return_members=True)  # (members, N)
    rows = []
    for c, m in zip(cells, per_member.T):
        m = m.astype(float)
        rows.append(
            {
                "cell": c.cell.readable(),
                "blocks": c.cell.to_list(),
                "arch_id": c.cell.arch_id,
                "network_id": network_id(c.cell),
                "source": c.label,
                "predicted": round(float(m.mean()), 6),
                "std": round(float(m.std()), 6),  # spread of the members (population std)
                "min": round(float(m.min()), 6),
                "max": round(float(m.max()), 6),
                "members": [round(float(x), 6) for x in m],
                "level": level,
            }
        )
    return rows


def render(rows: list[dict], *, run: RunView, level: int, ens) -> str:
    fitted = ens.info.get("rows")
    lines = [
        f"run {run.name!r} (id {run.id}): {ens.kind} predictor of level {level}, "
        f"{ens.members} member{'s' if ens.members > 1 else ''}"
        + (f", fitted on {fitted} children" if fitted else "")
    ]
    lines.append(f"  {'arch_id':<16} {'predicted':>9} {'std':>7} {'min':>7} {'max':>7}  cell")
    for r in rows:
        lines.append(
            f"  {r['arch_id']:<16} {r['predicted']:>9.4f} {r['std']:>7.4f} {r['min']:>7.4f} {r['max']:>7.4f}  {r['cell']}"
        )
        t = r.get("trained")
        if t:
            acc = "-" if t["accuracy"] is None else f"{t['accuracy']:.4f}"
            lines.append(
                f"  {'':<16} network {r['network_id']}: the run trained it as job {t['job']} ({t['state']}, accuracy {acc})"
            )
    longest = max(len(r["blocks"]) for r in rows)
    if longest > level + 1:
        lines.append(
            f"  note: this predictor has seen cells of up to {level} block{'s' if level > 1 else ''}; "
            f"scores for cells of more than {level + 1} reach further than the search itself does"
        )
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command()
    def predict(
        run: str = typer.Argument(..., metavar="RUN", help="Run name or id."),
        cell: List[str] = typer.Option(
            ..., "--cell", help=escape(CELL_HELP + " Also a file with one JSON cell per line. Repeatable.")
        ),
        as_json: bool = typer.Option(False, "--json", help="One JSON list: {cell, arch_id, predicted, std, members, ...} per cell."),
    ) -> None:
        """Predicted accuracy of each CELL from the run's latest predictor ensemble, with its spread."""
        from shared.config import SearchConfig
        from shared.store import Store

        from pnas.render import require_database

        cells = [c for arg in cell for c in read_cells(arg)]
        require_database(get_settings().database_url)
        store = Store.from_settings(get_settings())
        store.ensure_schema()
        r = store.require_run(run)
        space = SearchConfig.from_json(r.config).space()
        level, ens = load_predictor(store, r)
        cells = fit_to_space(cells, space, r.name)
        rows = score(ens, space, cells, run_name=r.name, level=level)
        known = store.children_of_networks(r.id, [row["network_id"] for row in rows])
        for row in rows:
            j = known.get(row["network_id"])
            row["trained"] = None if j is None else {"job": j.id, "state": str(j.state), "accuracy": j.reward}
        print(json.dumps(rows) if as_json else render(rows, run=r, level=level, ens=ens))


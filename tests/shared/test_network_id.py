"""Network ids: cells that are the same network (blocks reordered, inputs renumbered) share
one id, and cells that are not do not, checked against a brute force over block orders."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from shared.space import PAPER_OPS, PNASNET5, Cell, SearchSpace, format_id
from shared.space.network import canonical_cell, distinct_rows, equivalent_cells, network_id
from tests.conftest import ROOT


def _brute_class(cell: Cell) -> int:
    """The smallest arch id over every way of writing the cell: an exact class label."""
    return min(c.hash64 for c in equivalent_cells(cell))


def _all_cells(space: SearchSpace):
    batch = space.one_block_cells()
    for _ in range(1, space.blocks):
        batch = space.expand(batch)
    return batch


def test_network_ids_are_exactly_the_classes_of_block_orders():
    space = SearchSpace(ops=("sep3x3", "identity"), blocks=3)
    batch = _all_cells(space)  # every 3-block cell: 10 * 21 * 36
    assert len(batch) == 7560
    nets = space.networks(batch)
    brute = np.array([_brute_class(batch.cell(r)) for r in range(len(batch))], dtype=np.uint64)
    pairs = set(zip(nets.tolist(), brute.tolist()))
    # one network id per class and one class per network id
    assert len(pairs) == len(set(nets.tolist())) == len(set(brute.tolist()))
    assert len(set(nets.tolist())) < len(batch)  # the space does hold equivalent cells


def test_twin_blocks_read_differently_are_different_networks():
    twin = [-1, "sep3x3", -2, "identity"]
    one_each = Cell.of([twin, twin, [0, "max3x3", 1, "avg3x3"]])  # reads both twins
    shared_0 = Cell.of([twin, twin, [0, "max3x3", 0, "avg3x3"]])  # reads one twin twice
    shared_1 = Cell.of([twin, twin, [1, "max3x3", 1, "avg3x3"]])
    assert network_id(shared_0) == network_id(shared_1)
    assert network_id(one_each) != network_id(shared_0)
    assert _brute_class(shared_0) == _brute_class(shared_1) != _brute_class(one_each)


def test_pnasnet5_and_its_reorderings():
    eq = equivalent_cells(PNASNET5)
    assert PNASNET5 in eq and len(eq) == 60
    assert {network_id(c) for c in eq} == {network_id(PNASNET5)}
    assert len({c.arch_id for c in eq}) == 60
    canon = canonical_cell(PNASNET5)
    assert network_id(canon) == network_id(PNASNET5) and canon in eq
    # a different operator in one block is a different network
    other = Cell.of([b.as_list() for b in PNASNET5.blocks[:-1]] + [[-2, "sep5x5", -1, "identity"]])
    assert network_id(other) != network_id(PNASNET5)


def test_the_id_is_the_same_in_every_process_and_for_any_operator_order():
    code = "from shared.space import PNASNET5; from shared.space.network import network_id; print(network_id(PNASNET5))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == network_id(PNASNET5) == "fb34122ed6ef469b"
    fwd, rev = SearchSpace(blocks=2), SearchSpace(ops=tuple(reversed(PAPER_OPS)), blocks=2)
    a = fwd.expand(fwd.one_block_cells())
    b = rev.batch([a.cell(r) for r in range(0, len(a), 97)])
    assert fwd.networks(a)[::97].tolist() == rev.networks(b).tolist()


def test_expansion_ids_match_the_full_computation():
    space = SearchSpace(blocks=4)
    rng = np.random.default_rng(3)
    batch = space.one_block_cells()
    for _ in range(3):
        beam = batch.take(np.sort(rng.choice(len(batch), size=min(40, len(batch)), replace=False)))
        fast = space.expand_networks(beam)
        batch = space.expand(beam)
        assert np.array_equal(fast, space.networks(batch))
    for r in rng.choice(len(batch), size=50, replace=False):
        assert format_id(fast[r]) == network_id(batch.cell(r))


def test_distinct_rows_keep_the_first_of_each_network_and_leave_out_known_ones():
    space = SearchSpace(ops=("sep3x3", "identity"), blocks=2)
    batch = space.expand(space.one_block_cells())
    nets = space.networks(batch)
    rows = distinct_rows(nets)
    assert len(rows) == len(set(nets.tolist())) and list(rows) == sorted(rows)
    assert all(nets[r] not in nets[:r] for r in rows)
    known = {format_id(nets[rows[0]]), format_id(nets[rows[5]])}
    assert len(distinct_rows(nets, exclude=known)) == len(rows) - 2


def test_distinct_counts_per_level():
    space = SearchSpace(ops=("sep3x3", "identity"), blocks=3)
    counts = space.distinct_counts(beam=1000)
    cells = _all_cells(space)
    assert counts[:2] == [10, len({_brute_class(space.expand(space.one_block_cells()).cell(r)) for r in range(210)})]
    assert counts[2] <= len(set(space.networks(cells).tolist()))
    paper = SearchSpace().distinct_counts(beam=256)
    assert paper[0] == 136 and paper[1] < 40_800 and all(c > 0 for c in paper)

"""The store keeps one search child per (run, network id), and the migration gives runs made
before network ids their ids (later duplicates marked, not lost). SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared.space import PNASNET5
from shared.space.network import equivalent_cells, network_id
from shared.store import Store

A, B = equivalent_cells(PNASNET5)[:2]  # one network written two ways
OTHER = [[-1, "sep3x3", -2, "identity"]]


def test_every_job_gets_its_network_id_and_a_network_is_added_once(store):
    run, _ = store.create_run(name="n", config={}, seed=0)
    (a,) = store.add_jobs(run.id, level=5, children=[(A.arch_id, A.to_list(), 0.5, 1)], max_attempts=3)
    (b,) = store.add_jobs(run.id, level=5, children=[(B.arch_id, B.to_list(), 0.4, 2)], max_attempts=3)
    assert a == b  # the second way of writing it is the same child
    job = store.job(a)
    assert job.network_id == network_id(A) and job.arch_id == A.arch_id and job.duplicate_of is None
    assert store.network_ids(run.id) == {network_id(A)}
    assert len(store.job_ids(run.id)) == 1
    # final training may train one network several times (other settings)
    f1, f2 = (
        store.add_jobs(run.id, level=0, kind="final", children=[(A.arch_id, A.to_list(), None, None)],
                       train={"epochs": e}, max_attempts=1)[0]
        for e in (1, 2)
    )  # fmt: skip
    assert f1 != f2 and store.job(f1).network_id == network_id(A)


def test_the_database_refuses_a_second_search_child_of_a_network(store):
    run, _ = store.create_run(name="n", config={}, seed=0)
    store.add_jobs(run.id, level=5, children=[(A.arch_id, A.to_list(), None, None)], max_attempts=3)
    row = dict(run=run.id, key=f"search:{B.arch_id}", arch=B.arch_id, net=network_id(B), cell=json.dumps(B.to_list()))
    with pytest.raises(IntegrityError):
        with store.engine.begin() as c:
            c.execute(
                text(
                    "INSERT INTO jobs (run_id, level, kind, key, arch_id, network_id, cell, train, state, attempts,"
                    " max_attempts) VALUES (:run, 5, 'search', :key, :arch, :net, :cell, '{}', 'queued', 0, 3)"
                ),
                row,
            )


def test_the_migration_computes_network_ids_of_runs_made_before(db_url):
    from alembic import command

    s = Store(db_url)
    command.upgrade(s._alembic_config(), "0002")
    with s.engine.begin() as c:
        c.execute(text("INSERT INTO runs (id, name, config, seed, state, level, created_at, updated_at)"
                       " VALUES (1, 'old', '{}', 0, 'finished', 5, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))  # fmt: skip
        for i, (kind, cell) in enumerate([("search", A), ("search", OTHER), ("search", B), ("final", A)], 1):
            cells = cell.to_list() if hasattr(cell, "to_list") else cell
            c.execute(
                text(
                    "INSERT INTO jobs (id, run_id, level, kind, key, arch_id, cell, train, state, attempts,"
                    " max_attempts, reward) VALUES (:id, 1, 5, :kind, :key, :arch, :cell, '{}', 'succeeded', 1, 3, 0.9)"
                ),
                dict(id=i, kind=kind, key=f"{kind}:{i}", arch=f"arch{i}", cell=json.dumps(cells)),
            )
    s.upgrade()
    jobs = {j.id: j for j in s.jobs(1, kind=None)}
    assert jobs[1].network_id == jobs[3].network_id == jobs[4].network_id == network_id(A)
    assert jobs[2].network_id != jobs[1].network_id
    assert [jobs[i].duplicate_of for i in (1, 2, 3, 4)] == [None, None, 1, None]
    with s.engine.connect() as c:
        board = c.execute(text("SELECT job_id, network_id FROM leaderboard ORDER BY job_id")).all()
        status = c.execute(text("SELECT job_id, network_id, duplicate_of FROM job_status ORDER BY job_id")).all()
    assert [r[1] for r in board] == [jobs[i].network_id for i in (1, 2, 3)]
    assert status[2] == (3, network_id(A), 1)
    # the old run keeps working: its next search child of a known network is refused
    (again,) = s.add_jobs(1, level=5, children=[(A.arch_id, A.to_list(), None, None)], max_attempts=3)
    assert again == 1
    s.dispose()

-- Ready queries for a psql prompt (`psql "$PNAS_DATABASE_URL"`), PostgreSQL.
-- Each one runs as printed; "the latest run" is the most recently updated one. To pick a run
-- by name, replace the sub-select with its name: WHERE run = 'my-run'.
-- tests/tools/test_views.py runs every query below, so they cannot rot.

-- name: leaderboard of the latest run (what `pnas top -k 10` prints)
SELECT rank, job_id, level, round(accuracy::numeric, 4) AS accuracy, epochs_trained, params, cell
FROM leaderboard
WHERE run_id = (SELECT id FROM runs ORDER BY updated_at DESC LIMIT 1)
ORDER BY rank
LIMIT 10;

-- name: progress per level of the latest run (what `pnas status` prints)
SELECT level, state, candidates, children, queued, running, succeeded, failed, lost,
       round(best::numeric, 4) AS best, round(mean::numeric, 4) AS mean,
       round(spearman_extrapolation::numeric, 3) AS spearman,
       finished_at - started_at AS took
FROM level_summary
WHERE run_id = (SELECT id FROM runs ORDER BY updated_at DESC LIMIT 1)
ORDER BY level;

-- name: every run with its best child and children done
SELECT r.id, r.name, r.state, r.config->>'strategy' AS strategy,
       r.config->'train'->>'dataset' AS dataset, r.level,
       count(j.id) FILTER (WHERE j.state IN ('succeeded', 'failed', 'lost')) AS done,
       round(max(j.reward)::numeric, 4) AS best
FROM runs r LEFT JOIN jobs j ON j.run_id = r.id AND j.kind = 'search'
GROUP BY r.id
ORDER BY r.id;

-- name: failures by error class (what to fix first)
SELECT run, error_class, count(*) AS children, min(error_message) AS example
FROM failed_jobs
GROUP BY run, error_class
ORDER BY children DESC;

-- name: children training now, with their worker and lease
SELECT job_id, run, level, arch_id, attempts, worker,
       (now() at time zone 'utc') - started_at AS running_for,
       lease_until - (now() at time zone 'utc') AS lease_left
FROM job_status
WHERE state = 'running'
ORDER BY started_at;

-- name: workers and their last heartbeat
SELECT name, device, job_id, (now() at time zone 'utc') - last_seen AS since_heartbeat
FROM workers
ORDER BY last_seen DESC;

-- name: learning curve of the best child of the latest run
SELECT e.attempt, e.epoch, round(e.loss::numeric, 4) AS loss,
       round(e.val_accuracy::numeric, 4) AS val_accuracy, e.seconds
FROM epochs e
JOIN leaderboard l ON l.job_id = e.job_id
WHERE l.rank = 1 AND l.run_id = (SELECT id FROM runs ORDER BY updated_at DESC LIMIT 1)
ORDER BY e.attempt, e.epoch;

-- name: operators in the top 20 children of each run (which operators win)
SELECT l.run, o.op, count(*) AS uses
FROM leaderboard l
CROSS JOIN LATERAL json_array_elements(CAST(l.cell_json AS json)) AS b(block)
CROSS JOIN LATERAL (VALUES (b.block->>1), (b.block->>3)) AS o(op)
WHERE l.rank <= 20
GROUP BY l.run, o.op
ORDER BY l.run, uses DESC;

-- name: PNAS against random search on the same dataset (best and mean per level)
SELECT r.config->'train'->>'dataset' AS dataset, r.config->>'strategy' AS strategy, r.name,
       s.level, s.succeeded, round(s.best::numeric, 4) AS best, round(s.mean::numeric, 4) AS mean
FROM level_summary s JOIN runs r ON r.id = s.run_id
ORDER BY dataset, s.level, strategy;

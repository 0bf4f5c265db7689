-- 0004_job_meta: a job's name, labels, unique key and completion webhook, and its execution
-- controls (max runs, concurrency, priority), archived from its job events (schedule_job
-- writes them with the definition), so `rsched rebuild` restores them. A newer version's
-- NULL name, labels, webhook or control removes it; the unique key is fixed at creation
-- (updates leave it out of their events) and kept.

ALTER TABLE jobs
    ADD COLUMN name        text,
    ADD COLUMN labels      jsonb,           -- {"key": "value"}; NULL: none
    ADD COLUMN unique_key  text,
    ADD COLUMN webhook     jsonb,           -- {"url": ..., "on": ..., "secret": ...}; NULL: none
    ADD COLUMN max_runs    integer,         -- runs in all, then done; NULL: no limit
    ADD COLUMN concurrency integer,         -- its runs at once, at most; NULL: no limit
    ADD COLUMN priority    smallint;        -- its lane 0-9; NULL: the queue's default

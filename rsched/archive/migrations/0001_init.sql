-- 0001_init: jobs (current state), every job definition version, and runs partitioned by slot.

CREATE TABLE jobs (
    job_id      text PRIMARY KEY,
    tenant      text NOT NULL,
    queue       text NOT NULL,
    task        text NOT NULL,
    state       text NOT NULL,            -- active | paused | done | cancelled
    version     integer NOT NULL,
    spec        bytea NOT NULL,           -- msgpack JobSpec, as stored in Redis
    trigger     bytea NOT NULL,           -- msgpack Trigger
    overlap     text NOT NULL DEFAULT 'allow',
    max_attempts integer NOT NULL DEFAULT 3,
    next_ms     bigint,                   -- first fire of the current version
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,     -- when the current version was written
    ev_ms       bigint NOT NULL,          -- newest applied event id (ms, seq): rows only move forward
    ev_seq      bigint NOT NULL
);
CREATE INDEX jobs_tenant ON jobs (tenant, job_id);

CREATE TABLE job_versions (
    job_id      text NOT NULL,
    version     integer NOT NULL,
    tenant      text NOT NULL,
    queue       text NOT NULL,
    task        text NOT NULL,
    spec        bytea NOT NULL,
    trigger     bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (job_id, version)
);

CREATE TABLE runs (
    run_id      text NOT NULL,
    job_id      text NOT NULL,
    seq         bigint NOT NULL,          -- n of run id "<job id>:<n>"
    tenant      text,
    queue       text,
    status      text NOT NULL,
    attempt     integer NOT NULL,
    slot_at     timestamptz NOT NULL,     -- scheduled time (partition key)
    manual      boolean NOT NULL DEFAULT false,  -- run-now, not a scheduled slot
    enqueued_at timestamptz,
    started_at  timestamptz,
    finished_at timestamptz,
    worker      text,
    error       text,
    result      text,
    duration_ms bigint GENERATED ALWAYS AS
                ((extract(epoch FROM finished_at - started_at) * 1000)::bigint) STORED,
    fire_lag_ms bigint GENERATED ALWAYS AS
                ((extract(epoch FROM enqueued_at - slot_at) * 1000)::bigint) STORED,
    ev_ms       bigint NOT NULL,
    ev_seq      bigint NOT NULL,
    PRIMARY KEY (run_id, slot_at)
) PARTITION BY RANGE (slot_at);
CREATE TABLE runs_default PARTITION OF runs DEFAULT;
CREATE INDEX runs_job ON runs (job_id, slot_at DESC, run_id);
CREATE INDEX runs_status ON runs (status, finished_at);

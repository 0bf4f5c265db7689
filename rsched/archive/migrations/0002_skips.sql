-- 0002_skips: archived decisions not to fire (overlap, misfire), each version's state,
-- rejected events, bytewise ids, and job rows that a state event may start before the
-- job's definition arrives (another archiver can commit a later batch of the stream first).

ALTER TABLE jobs
    ALTER COLUMN version DROP NOT NULL,
    ALTER COLUMN tenant DROP NOT NULL,
    ALTER COLUMN queue DROP NOT NULL,
    ALTER COLUMN task DROP NOT NULL,
    ALTER COLUMN spec DROP NOT NULL,
    ALTER COLUMN trigger DROP NOT NULL,
    ALTER COLUMN created_at DROP NOT NULL,
    ALTER COLUMN updated_at DROP NOT NULL;

ALTER TABLE job_versions ADD COLUMN state text;  -- the job's state when it was written

-- Ids compare bytewise (COLLATE "C"): cheaper index maintenance than a locale's rules, and
-- keyset pagination orders them the same everywhere. No history query filters on status
-- alone, so that index only slowed the archiver down.
ALTER TABLE runs ALTER COLUMN run_id TYPE text COLLATE "C",
    ALTER COLUMN job_id TYPE text COLLATE "C";
ALTER TABLE jobs ALTER COLUMN job_id TYPE text COLLATE "C";
ALTER TABLE job_versions ALTER COLUMN job_id TYPE text COLLATE "C";
DROP INDEX runs_status;

CREATE TABLE skips (
    job_id      text COLLATE "C" NOT NULL,
    slot_at     timestamptz NOT NULL,     -- the slot found due and not fired
    why         text NOT NULL,            -- overlap | misfire
    missed      integer NOT NULL,         -- slots skipped by this decision
    at          timestamptz NOT NULL,     -- when the scheduler decided
    ev_ms       bigint NOT NULL,          -- the event's id: replays insert nothing
    ev_seq      bigint NOT NULL,
    PRIMARY KEY (job_id, ev_ms, ev_seq)
);
CREATE INDEX skips_at ON skips (at);

-- Events PostgreSQL refused as data (a malformed event must not stop the archive): kept
-- for an operator to inspect, acked in Redis like every archived event.
CREATE TABLE rejected_events (
    shard       integer NOT NULL,
    entry_id    text NOT NULL,
    fields      text NOT NULL,            -- the raw fields, as Python repr
    error       text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, entry_id)
);

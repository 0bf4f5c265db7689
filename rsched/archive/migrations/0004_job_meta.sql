-- 0004_job_meta: a job's name, labels, unique key and completion webhook, archived from its
-- job events (schedule_job writes them with the definition), so `rsched rebuild` restores
-- them. A newer version's NULL name, labels or webhook removes them; the unique key is
-- fixed at creation (updates leave it out of their events) and kept.

ALTER TABLE jobs
    ADD COLUMN name       text,
    ADD COLUMN labels     jsonb,            -- {"key": "value"}; NULL: none
    ADD COLUMN unique_key text,
    ADD COLUMN webhook    jsonb;            -- {"url": ..., "on": ..., "secret": ...}; NULL: none

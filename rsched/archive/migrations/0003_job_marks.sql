-- 0003_job_marks: what a job has fired, kept on the job's row when retention drops its
-- runs (pg.KEEP_JOB_MARKS). Rebuild continues a job's run counter and schedule from these
-- once every run of it is gone (a weekly job with 7 days of runs kept): without them the
-- run ids and slots that already ran would be used again.

ALTER TABLE jobs
    ADD COLUMN last_seq bigint,                   -- highest run number (run id <job>:<n>)
    ADD COLUMN last_slot_at timestamptz,          -- latest scheduled (not run-now) slot fired
    ADD COLUMN last_slot_enqueued_at timestamptz; -- when it fired: under which version

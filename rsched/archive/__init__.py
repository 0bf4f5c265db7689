"""The archive: the only owner of PostgreSQL.

- pg.py        connections, versioned migrations (migrations/*.sql), partitions, retention
- archiver.py  the archiver role: events streams -> batched, idempotent upserts -> ack
- batch.py     folding a batch of events into COPY lines and forward-only upserts
- history.py   reading runs back (keyset pagination, stats)
- rebuild.py   restoring jobs and unfinished runs into Redis after Redis lost its data

It reads Redis only through the engine's archive feed (rsched/engine/archive_feed.py).
"""

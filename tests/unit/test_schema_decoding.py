"""Readers decode through engine/schema.py, including entries written before the one
spelling per field (queue entries with a/s/p, dead letters with a/e)."""

from __future__ import annotations

from rsched.engine.schema import JOB, RUN
from rsched.engine.types import delivery, parse_dead, parse_run
from rsched.models import RunStatus


def test_a_queue_entry_reads_the_same_in_both_spellings() -> None:
    new = delivery(3, "q", b"1-1", {b"r": b"j:1", b"j": b"j", b"att": b"2", b"slot": b"1000",
                                    b"spec": b"blob"})
    old = delivery(3, "q", b"1-1", {b"r": b"j:1", b"j": b"j", b"a": b"2", b"s": b"1000",
                                    b"p": b"blob"})
    assert new == old
    assert (new.run_id, new.attempt, new.slot_ms, new.payload) == ("j:1", 2, 1000, b"blob")


def test_a_dead_letter_reads_the_same_in_both_spellings() -> None:
    common = {b"r": b"j:1", b"j": b"j", b"q": b"q", b"st": b"dead", b"t": b"5"}
    new = parse_dead(b"9-0", {**common, b"att": b"3", b"err": b"boom"})
    old = parse_dead(b"9-0", {**common, b"a": b"3", b"e": b"boom"})
    assert new == old
    assert (new.attempt, new.error, new.status) == (3, "boom", RunStatus.DEAD)


def test_a_run_hash_decodes_typed_and_an_old_float_time_still_reads() -> None:
    run = parse_run("j:4", {b"st": b"running", b"att": b"2", b"slot": b"1.7e+12",
                            b"queue": b"q", b"worker": b"w1"})
    assert (run.job_id, run.attempt, run.slot_ms, run.worker) == ("j", 2, 1_700_000_000_000,
                                                                   "w1")


def test_unknown_and_empty_fields_are_left_out() -> None:
    assert JOB.decode({b"next": b"", b"zzz": b"1", b"ver": b"4"}) == {"version": 4}
    assert RUN.wire("attempt") == "att" and RUN.raw("status") == b"st"

"""The priority rule's arithmetic and lane names (pure: no Redis)."""

from __future__ import annotations

import pytest

from rsched.errors import InvalidQueueName
from rsched.names import lane, split_lane, validate_lane
from rsched.roles.queue_gate import QueueGate


@pytest.mark.parametrize(("room", "levels", "want"), [
    (10, [9, 0], [9, 1]),  # level + 1 weights: 10 to 1
    (7, [5, 0], [6, 1]),
    (12, [2, 1, 0], [6, 4, 2]),
    (3, [9, 0], [2, 1]),  # every level reads at least one run: nothing starves
    (1, [9, 5, 0], [1, 1, 1]),
])
def test_each_level_gets_its_weighted_share_and_at_least_one(
        room: int, levels: list[int], want: list[int]) -> None:
    got = QueueGate.shares(room, [(lv, [f"q!{lv}"]) for lv in levels])
    assert [n for _, n in got] == want


def test_lane_names_round_trip_and_are_checked() -> None:
    assert lane("mail", None) == "mail" and lane("mail", 7) == "mail!7"
    assert split_lane("mail!7") == ("mail", 7) and split_lane("mail") == ("mail", None)
    assert validate_lane("mail!7") == "mail!7"
    for bad in ("mail!", "mail!10", "!7", "ma il"):
        with pytest.raises(InvalidQueueName):
            validate_lane(bad)

"""Prediction UUIDs: valid version-7 UUIDs, unique, and in time order from one millisecond to the next."""

import time
import uuid

from cmlplan.serving.metrics.ids import new_prediction_id


def test_prediction_ids_are_canonical_version_7_uuids():
    before = time.time_ns() // 1_000_000
    text = new_prediction_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(text)
    assert str(parsed) == text
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after  # the first 48 bits are the Unix time in ms


def test_prediction_ids_are_unique_and_sort_by_time():
    ids = []
    for _ in range(3):
        ids += [new_prediction_id() for _ in range(2000)]
        time.sleep(0.002)
    assert len(set(ids)) == len(ids)
    stamps = [uuid.UUID(i).int >> 80 for i in ids]
    assert stamps == sorted(stamps)
    later = new_prediction_id()
    assert all(later > i for i in ids[:2000])  # a later millisecond sorts after, as text too

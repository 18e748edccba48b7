"""The metrics store against both backends: schema, writes, reads, refusals, and a failing disk."""

import asyncio
import json
import sqlite3
import uuid

import pytest

from cmlplan.serving.store import PredictionRow, StoreError, UnknownPrediction, WrongProject, open_store
from cmlplan.serving.store.schema import LATEST, MIGRATIONS
from cmlplan.serving.store.writer import StoreWriter


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / '.cmlplan' / 'metrics.db'}"
    return request.getfixturevalue("postgres_dsn")


def row(uuid, ts, model="model.churn", project="churn", metrics=None):
    return PredictionRow(
        uuid, project, model, f"{model}/deployments/1", "3", "r0", ts, json.dumps(metrics or {"p": 1})
    )


def test_migrations_apply_once_and_are_recorded(store_url):
    store = open_store(store_url)
    assert store.migrate() == LATEST
    assert store.migrate() == LATEST  # a second start changes nothing
    versions = store.execute("SELECT version FROM schema_version").fetchall()
    assert [v for (v,) in versions] == list(range(1, LATEST + 1))
    store.close()


def test_read_returns_the_window_in_cml_shape(store_url):
    store = open_store(store_url)
    store.migrate()
    store.insert_predictions(
        [row("a", 1000), row("b", 2000), row("c", 3000), row("x", 2000, model="model.other")]
    )
    store.add_aggregate(
        "agg1", ("churn", "model.churn", "model.churn/deployments/1", "3"), 1500, 2500, {"auc": 0.8}
    )
    store.commit()
    entries = store.read(model="model.churn", deployment=None, build=None, start_ms=1500, end_ms=2500)
    assert [(e["predictionUuid"], e["startTimeStampMs"], e["endTimeStampMs"]) for e in entries] == [
        ("b", 2000, 2000),
        (None, 1500, 2500),
    ]  # predictions in time order, then the aggregates
    assert entries[0] == {
        "modelDeploymentCrn": "model.churn/deployments/1",
        "modelBuildCrn": "3",
        "modelCrn": "model.churn",
        "predictionUuid": "b",
        "startTimeStampMs": 2000,
        "endTimeStampMs": 2000,
        "metrics": {"p": 1},
    }
    assert entries[1]["metrics"] == {"auc": 0.8}
    spliced = store.read_json(model="model.churn", deployment=None, build=None, start_ms=1500, end_ms=2500)
    assert json.loads(spliced) == {"metrics": entries}  # the fast path answers exactly the same
    assert (
        len(
            store.read(
                model=None, deployment="model.churn/deployments/1", build="3", start_ms=None, end_ms=None
            )
        )
        == 4
    )
    store.close()


def test_the_json_read_is_the_read_in_time_order_with_any_text_quoted(store_url):
    store = open_store(store_url)
    store.migrate()
    odd = 'model.q"uote\\back\nline/é'
    rows = [row(f"u{i:03d}", (i * 7919) % 200, metrics={"i": i, "s": "ü\"x"}) for i in range(100)]  # shuffled times
    # canonical UUIDs: their entries are spliced behind a shared head rather than formatted whole
    rows += [row(str(uuid.UUID(int=i, version=4)), (i * 7919) % 200, metrics={"i": i}) for i in range(100, 200)]
    rows.append(PredictionRow(str(uuid.UUID(int=7, version=4)), "churn", odd, f"{odd}/deployments/1", 'b"1', "r0",
                              60, json.dumps({"q": "é"})))  # fmt: skip
    rows.append(PredictionRow('u"odd', "churn", odd, f"{odd}/deployments/1", 'b"1', "r0", 50, json.dumps({})))
    store.insert_predictions(rows[:150])
    store.commit()
    store.move_inbox()  # some indexed, the rest still in the inbox: a read takes both
    store.insert_predictions(rows[150:])
    store.commit()
    for model in ("model.churn", odd):
        for window in ((None, None), (10, 120), (500, 600)):
            query = {"model": model, "deployment": None, "build": None, "start_ms": window[0], "end_ms": window[1]}
            expected = store.read(**query)
            assert json.loads(store.read_json(**query)) == {"metrics": expected}
    times = [e["startTimeStampMs"] for e in json.loads(store.read_json(
        model="model.churn", deployment=None, build=None, start_ms=None, end_ms=None))["metrics"]]  # fmt: skip
    assert times == sorted(times) and len(times) == 200
    store.move_inbox()
    store.commit()
    (spliced,) = store.execute("SELECT COUNT(*) FROM predictions WHERE head_id IS NOT NULL").fetchone()
    assert spliced == 101  # the canonical UUIDs took the fast path, the others the whole format
    store.close()


def test_a_read_takes_the_inbox_after_the_indexed_rows_or_merged_with_them(store_url):
    store = open_store(store_url)
    store.migrate()
    query = {"model": "model.churn", "deployment": None, "build": None, "start_ms": None, "end_ms": None}

    def uuids():
        entries = store.read(**query)
        assert json.loads(store.read_json(**query)) == {"metrics": entries}
        store.rollback()
        return [e["predictionUuid"] for e in entries]

    store.insert_predictions([row(f"u{i}", 100 + i) for i in range(3)])
    store.commit()
    assert uuids() == ["u0", "u1", "u2"]  # the inbox alone
    store.move_inbox()
    store.commit()
    assert uuids() == ["u0", "u1", "u2"]  # the indexed rows alone
    store.insert_predictions([row("u3", 200), row("u4", 150)])
    store.commit()
    assert uuids() == ["u0", "u1", "u2", "u4", "u3"]  # the inbox's rows all later: read after
    store.insert_predictions([row("early", 50)])
    store.commit()
    assert uuids() == ["early", "u0", "u1", "u2", "u4", "u3"]  # one earlier: merged
    store.close()


def test_reads_during_moves_neither_miss_nor_repeat_a_row(store_url):
    import threading

    writer = open_store(store_url)
    writer.migrate()
    committed = [0]  # rows committed so far, each in the inbox or moved
    stop = threading.Event()

    def write():
        i = 0
        while not stop.is_set() and i < 3000:
            writer.insert_predictions([row(f"u{i + k:05d}", i + k) for k in range(10)])
            writer.commit()
            i += 10
            committed[0] = i
            if i % 30 == 0:
                writer.move_inbox()
                writer.commit()

    thread = threading.Thread(target=write)
    thread.start()
    reader = open_store(store_url)
    query = {"model": "model.churn", "deployment": None, "build": None, "start_ms": None, "end_ms": None}
    try:
        for _ in range(150):
            at_least = committed[0]
            seen = [e["predictionUuid"] for e in json.loads(reader.read_json(**query))["metrics"]]
            reader.rollback()
            assert len(seen) == len(set(seen)) >= at_least  # nothing twice, nothing committed missing
            assert seen == [f"u{i:05d}" for i in range(len(seen))]
    finally:
        stop.set()
        thread.join()
        reader.close()
        writer.close()


def test_a_store_from_before_entry_heads_upgrades_and_reads_the_same(store_url):
    store = open_store(store_url)
    store.execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
    for version, statements in MIGRATIONS[:2]:  # the schema as the previous release left it
        for statement in statements:
            store.execute(statement)
        store.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    old = str(uuid.UUID(int=5, version=4))
    store.execute(
        "INSERT INTO predictions (uuid, project, model, deployment, build, replica, ts_ms, metrics) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (old, "churn", "model.churn", "model.churn/deployments/1", "3", "r0", 5, '{"p":1}'),
    )
    store.commit()
    assert store.migrate() == LATEST
    new = str(uuid.UUID(int=6, version=4))
    store.insert_predictions([row(new, 6)])
    store.commit()
    query = {"model": "model.churn", "deployment": None, "build": None, "start_ms": None, "end_ms": None}
    assert json.loads(store.read_json(**query)) == {"metrics": store.read(**query)}
    assert [e["predictionUuid"] for e in store.read(**query)] == [old, new]
    store.close()


def test_a_rolled_back_batch_takes_its_new_entry_head_with_it(store_url):
    store = open_store(store_url)
    store.migrate()
    fresh = str(uuid.UUID(int=1, version=4))
    store.insert_predictions([row(fresh, 10, model="model.new")])  # makes the head of model.new
    store.rollback()
    store.insert_predictions([row(fresh, 10, model="model.new")])  # must make it again, not reuse a lost id
    store.commit()
    answer = json.loads(store.read_json(model="model.new", deployment=None, build=None, start_ms=None, end_ms=None))
    assert [e["predictionUuid"] for e in answer["metrics"]] == [fresh]
    assert answer["metrics"][0]["modelCrn"] == "model.new"
    store.close()


def test_delayed_metrics_merge_and_refuse_unknown_or_foreign_predictions(store_url):
    store = open_store(store_url)
    store.migrate()
    store.insert_predictions([row("a", 1000, metrics={"score": 0.7})])
    store.commit()
    assert store.add_delayed("a", {"churned": True}, frozenset({"churn"})) == "churn"
    store.commit()
    with pytest.raises(UnknownPrediction):
        store.add_delayed("nope", {"churned": True}, frozenset({"churn"}))
    with pytest.raises(WrongProject):
        store.add_delayed("a", {"churned": False}, frozenset({"other"}))
    (entry,) = store.read(model="model.churn", deployment=None, build=None, start_ms=None, end_ms=None)
    assert entry["metrics"] == {"score": 0.7, "churned": True}
    store.close()


def test_writer_group_commits_concurrent_writes_and_fails_refusals_alone(store_url):
    writer = StoreWriter(lambda: open_store(store_url))
    writer.start()

    async def main():
        writes = [writer.submit(lambda s, i=i: s.insert_predictions([row(f"u{i}", i)])) for i in range(200)]
        await asyncio.gather(*writes)
        refused = writer.submit(lambda s: s.add_delayed("missing", {"y": 1}, frozenset({"churn"})))
        kept = writer.submit(lambda s: s.add_delayed("u1", {"y": 1}, frozenset({"churn"})))
        results = await asyncio.gather(refused, kept, return_exceptions=True)
        assert isinstance(results[0], UnknownPrediction)
        assert results[1] == "churn"

    asyncio.run(main())
    writer.stop()
    assert writer.operations == 202
    assert writer.batches < writer.operations  # several writes shared a commit
    store = open_store(store_url)
    entries = store.read(model="model.churn", deployment=None, build=None, start_ms=None, end_ms=None)
    assert len(entries) == 200
    assert next(e for e in entries if e["predictionUuid"] == "u1")["metrics"] == {"p": 1, "y": 1}
    store.close()


def _counts(store):
    """(indexed, inboxed) prediction rows."""
    return tuple(store.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in ("predictions", "inbox"))


def test_the_writer_indexes_inboxed_predictions_in_bulk_and_reads_never_miss_one(store_url, monkeypatch):
    from cmlplan.serving.store import writer as writer_module

    monkeypatch.setattr(writer_module, "MOVE_ROWS", 50)
    writer = StoreWriter(lambda: open_store(store_url))
    writer.start()
    reader = open_store(store_url)
    query = {"model": "model.churn", "deployment": None, "build": None, "start_ms": None, "end_ms": None}

    async def main():
        loop = asyncio.get_running_loop()
        for i in range(120):
            done = loop.create_future()
            writer.put(row(str(uuid.UUID(int=i + 1, version=4)), i), lambda _r, e, done=done: done.set_result(e))
            assert await done is None
            assert len(reader.read(**query)) == i + 1  # readable as soon as it is answered, moved or not
            reader.rollback()

    asyncio.run(main())
    assert writer.moves == 2  # at 50 and at 100 rows, each in one statement
    assert _counts(reader) == (100, 20)
    reader.rollback()
    writer.stop()  # a writer that stops indexes what is left
    assert _counts(reader) == (120, 0)
    reader.close()


def test_a_lingering_commit_waits_for_more_rows_and_a_lone_one_does_not(tmp_path, monkeypatch):
    from cmlplan.serving.store import writer as writer_module

    monkeypatch.setattr(writer_module, "LINGER_SECONDS", 1.0)  # generous, so timing cannot decide
    writer = StoreWriter(lambda: open_store(f"sqlite:{tmp_path / 'metrics.db'}"))
    writer.start()

    async def two(linger):
        loop = asyncio.get_running_loop()
        done = [loop.create_future(), loop.create_future()]
        before = writer.batches
        writer.put(row(f"a{linger}", 1), lambda _r, e: done[0].set_result(e), linger)
        await asyncio.sleep(0.3)
        writer.put(row(f"b{linger}", 2), lambda _r, e: done[1].set_result(e), linger)
        assert await asyncio.gather(*done) == [None, None]
        return writer.batches - before

    assert asyncio.run(two(True)) == 1  # the second row joined the first one's commit
    assert asyncio.run(two(False)) == 2  # nothing waits for a row that lingers for nobody
    writer.stop()


def test_ground_truth_finds_a_prediction_still_in_the_inbox(store_url):
    store = open_store(store_url)
    store.migrate()
    store.insert_predictions([row("a", 1000, metrics={"score": 0.7}), row("b", 1001)])
    store.commit()
    store.close()
    writer = StoreWriter(lambda: open_store(store_url))
    writer.start()

    async def main():
        return await writer.submit(lambda s: s.add_delayed("a", {"churned": True}, frozenset({"churn"})))

    assert asyncio.run(main()) == "churn"
    writer.stop()
    store = open_store(store_url)
    assert _counts(store) == (2, 0)  # it moved the inbox to find it
    entries = store.read(model="model.churn", deployment=None, build=None, start_ms=None, end_ms=None)
    assert [e["metrics"] for e in entries] == [{"score": 0.7, "churned": True}, {"p": 1}]
    store.close()


def _refused_write_keeps_data(tmp_path, limit, match):
    """A store that refuses writes (as SQLite does when read-only or full) keeps what it holds."""
    path = tmp_path / "metrics.db"
    store = open_store(f"sqlite:{path}")
    store.migrate()
    store.insert_predictions([row("kept", 1000)])
    store.commit()
    store.close()

    def opened():
        store = open_store(f"sqlite:{path}")
        limit(store)
        return store

    writer = StoreWriter(opened)
    writer.start()

    async def main():
        big = {"blob": "x" * 60000}
        with pytest.raises(StoreError, match=match):
            await writer.submit(
                lambda s: s.insert_predictions([row(f"lost{i}", 2000, metrics=big) for i in range(50)])
            )

    asyncio.run(main())
    writer.stop()
    with sqlite3.connect(path) as conn:  # indexed or still in the inbox, where a refusing store keeps it
        kept = conn.execute("SELECT uuid FROM predictions UNION ALL SELECT uuid FROM inbox").fetchall()
    assert kept == [("kept",)]


def test_a_read_only_store_refuses_writes_and_keeps_what_it_holds(tmp_path):
    def read_only(store):
        store.migrate()  # what the writer runs first must still work on a read-only store
        store.execute("PRAGMA query_only = ON")

    _refused_write_keeps_data(tmp_path, read_only, "readonly")


def test_a_full_store_refuses_writes_and_keeps_what_it_holds(tmp_path):
    def full(store):
        (pages,) = store.execute("PRAGMA page_count").fetchone()
        store.execute(f"PRAGMA max_page_count = {pages + 2}")

    _refused_write_keeps_data(tmp_path, full, "full")


def test_a_bad_store_url_is_one_clear_error():
    with pytest.raises(StoreError, match="sqlite:PATH"):
        open_store("mysql://nope")
    with pytest.raises(StoreError, match=r"cannot connect .*postgresql://…@127.0.0.1:1/x") as info:
        open_store("postgresql://user:s3cret@127.0.0.1:1/x")
    assert "s3cret" not in str(info.value)


def test_a_store_that_fails_to_open_in_any_way_fails_start_not_hangs_it():
    def broken():
        raise ImportError("no module named psycopg")  # what a proxy image without psycopg once did

    writer = StoreWriter(broken)
    with pytest.raises(StoreError, match="no module named psycopg"):
        writer.start()  # it used to wait forever for a thread that had died


def test_a_store_that_cannot_be_opened_fails_the_writers_start_with_its_reason(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    writer = StoreWriter(lambda: open_store(f"sqlite:{blocker / 'metrics.db'}"))
    with pytest.raises(StoreError, match="cannot open the metrics store"):
        writer.start()

"""Record I/O: atomic writes, validation on read, safe names, the results lock."""

from __future__ import annotations

import json

import pytest

from harness.errors import HarnessError, LockedError
from harness.records import (
    SCHEMA_VERSION,
    RunRecord,
    completed_ids,
    read_record,
    results_lock,
    scan,
    suite_dir,
    write_record,
)


def record(run_id="p.s.s0-abc", status="ok", **kw) -> RunRecord:
    base = dict(run_id=run_id, suite="demo", pair="p", strategy="scratch", label="scratch", seed=0, status=status,
                config={"x": 1}, metrics={"accuracy": 0.5}, started_at="2026-01-01T00:00:00+00:00",
                finished_at="2026-01-01T00:01:00+00:00")
    base.update(kw)
    return RunRecord(**base)


def test_roundtrip_and_no_temp_left(tmp_path):
    path = write_record(tmp_path, record())
    assert path == tmp_path / "p.s.s0-abc.json"
    assert read_record(path) == record()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.s.s0-abc.json"]
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION == 2


def test_corrupt_records_are_reported_not_loaded(tmp_path):
    write_record(tmp_path, record())
    (tmp_path / "torn.json").write_text('{"run_id": "x", "sta')
    (tmp_path / "alien.json").write_text('{"hello": 1}')
    (tmp_path / ".p.json.123.tmp").write_text("partial")
    records, corrupt = scan(tmp_path)
    assert [r.run_id for r in records] == ["p.s.s0-abc"]
    assert sorted(p.name for p in corrupt) == ["alien.json", "torn.json"]


def test_scan_walks_subdirectories_in_path_order_and_skips_dot_directories(tmp_path):
    for sub, run_id in (("b", "z-1"), ("a/deep", "y-1"), ("a", "x-1"), (".cache", "hidden-1"), ("a/.tmp", "hidden-2")):
        write_record(tmp_path / sub, record(run_id))
    records, corrupt = scan(tmp_path)
    # sorted by path components (a/deep/y-1 < a/x-1 < b/z-1); nothing under a dot-directory
    assert [r.run_id for r in records] == ["y-1", "x-1", "z-1"] and corrupt == []
    assert scan(str(tmp_path))[0] == records


def test_completed_ids_only_counts_ok(tmp_path):
    write_record(tmp_path, record("a-1"))
    write_record(tmp_path, record("b-1", status="failed", error={"type": "X", "message": "boom"}))
    assert completed_ids(tmp_path) == {"a-1"}


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", ".hidden"])
def test_unsafe_ids_rejected(tmp_path, bad):
    with pytest.raises(HarnessError):
        write_record(tmp_path, record(bad))


def test_suite_dir_rejects_escapes(tmp_path):
    assert suite_dir(tmp_path, "demo", smoke=True) == tmp_path / "demo-smoke"
    with pytest.raises(HarnessError):
        suite_dir(tmp_path, "../up")


def test_lock_refuses_a_second_holder(tmp_path):
    with results_lock(tmp_path), pytest.raises(LockedError, match="in use by another"), results_lock(tmp_path):
        pass
    with results_lock(tmp_path):  # released after the first holder is done
        pass


def test_records_get_normal_file_permissions(tmp_path):
    import os
    import stat

    path = write_record(tmp_path, record())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_record_lists_its_results_before_its_provenance(tmp_path):
    path = write_record(tmp_path, record(split={"sizes": {"train": 3}}, env={"python": "3.11"}))
    keys = list(json.loads(path.read_text()))
    assert keys[:2] == ["schema_version", "run_id"] and keys[-3:] == ["config", "split", "env"]
    assert keys.index("metrics") < keys.index("config")


def test_scan_as_summaries_skips_the_blocks_but_not_the_checks(tmp_path):
    from harness.records import RecordSummary

    write_record(tmp_path, record(split={"sizes": {"train": 3}}, env={"python": "3.11"}))
    (tmp_path / "torn.json").write_text('{"run_id": "x", "sta')
    bad_seed = record("q.s.s0-def").model_dump()
    bad_seed["seed"] = "zero"  # a field the report reads, invalid
    (tmp_path / "badseed.json").write_text(json.dumps(bad_seed))
    summaries, corrupt = scan(tmp_path, RecordSummary)
    assert [type(r) for r in summaries] == [RecordSummary] and sorted(p.name for p in corrupt) == ["badseed.json", "torn.json"]
    full = read_record(tmp_path / "p.s.s0-abc.json")
    assert summaries[0].model_dump() == full.model_dump(exclude={"config", "split", "env"})


def test_scan_leaves_the_collector_as_it_found_it(tmp_path):
    import gc

    write_record(tmp_path, record())
    assert gc.isenabled()
    scan(tmp_path)
    assert gc.isenabled()
    gc.disable()
    try:
        scan(tmp_path)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_umask_set_after_import_is_followed(tmp_path):
    """The umask is read when a record is written, not fixed at import (nor set by importing)."""
    import os
    import stat

    old = os.umask(0o027)
    try:
        path = write_record(tmp_path, record())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640

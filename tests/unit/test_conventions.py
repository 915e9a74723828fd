"""Where the cache goes by default, and what a record says of the machine it ran on."""

from __future__ import annotations

import json
import socket
import stat

import torch

from harness import api
from harness.cache import SALT_FILE, default_cache_dir, hostname_hash
from harness.cli import exec_options, parser
from harness.run.execute import ExecOptions, run_environment


def test_the_cache_defaults_outside_the_results(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "harness"
    args = parser().parse_args(["run", "suite.yaml", "--results", str(tmp_path / "results")])
    assert exec_options(args).cache_dir == (tmp_path / "xdg" / "harness").resolve()
    assert api.exec_options(tmp_path / "results").cache_dir == (tmp_path / "xdg" / "harness").resolve()
    # --cache-dir still wins, and $HARNESS_CACHE over XDG
    args = parser().parse_args(["run", "suite.yaml", "--cache-dir", str(tmp_path / "mine")])
    assert exec_options(args).cache_dir == (tmp_path / "mine").resolve()
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    # no XDG (or a relative one, which the spec says to ignore): ~/.cache/harness
    monkeypatch.delenv("HARNESS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "harness"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "harness"


def test_records_carry_a_salted_hash_of_the_hostname(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a"))
    env = run_environment(torch.device("cpu"), ExecOptions())
    name = socket.gethostname()
    assert "hostname" not in env and name not in json.dumps(env)
    assert env["hostname_hash"].startswith("sha256:") and len(env["hostname_hash"]) == 7 + 16
    salt = tmp_path / "a" / "harness" / SALT_FILE
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600  # the user's secret: a reader cannot test guessed names
    # the same machine of the same user hashes alike; another user's salt hashes otherwise
    assert run_environment(torch.device("cpu"), ExecOptions())["hostname_hash"] == env["hostname_hash"]
    assert hostname_hash("other-host") != env["hostname_hash"]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert hostname_hash(name) != env["hostname_hash"]
    # asked for, the name itself
    named = run_environment(torch.device("cpu"), ExecOptions(record_hostname=True))
    assert named["hostname"] == name and "hostname_hash" not in named


def test_record_hostname_option_reaches_the_options(tmp_path):
    args = parser().parse_args(["run", "suite.yaml", "--record-hostname"])
    assert exec_options(args).record_hostname
    assert not exec_options(parser().parse_args(["run", "suite.yaml"])).record_hostname


def test_an_older_record_with_a_plain_hostname_still_reads(tmp_path):
    from harness.records import read_record

    record = {"run_id": "p.s.s0-0123456789", "suite": "s", "pair": "p", "strategy": "scratch", "label": "scratch",
              "seed": 0, "status": "ok", "started_at": "2026-01-01T00:00:00", "finished_at": "2026-01-01T00:00:01",
              "metrics": {"accuracy": 0.5}, "primary_metric": "accuracy",
              "config": {}, "env": {"hostname": "old-box", "python": "3.11"}}
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "p.s.s0-0123456789.json").write_text(json.dumps(record))
    assert read_record(tmp_path / "s" / "p.s.s0-0123456789.json").env["hostname"] == "old-box"
    assert api.load_records(tmp_path)["primary"].tolist() == [0.5]


def test_the_data_root_follows_xdg_too(tmp_path, monkeypatch):
    from harness.targets.vision.common import data_root

    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root(None) == tmp_path / "xdg" / "harness" / "data"
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    assert data_root(None) == tmp_path / "data"

"""lmtie.atomic: atomic writes and strict JSON reads."""

import pytest

from lmtie import atomic


def test_atomic_writes_leave_ordinary_permissions(tmp_path):
    path = tmp_path / "a.json"
    atomic.write_json(path, {"x": 1})
    (tmp_path / "plain.txt").write_text("x")
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert atomic.read_json(path) == {"x": 1} and not list(tmp_path.glob(".*.tmp"))


def test_non_finite_numbers_and_bad_json_are_refused(tmp_path):
    with pytest.raises(ValueError):
        atomic.write_json(tmp_path / "nan.json", {"x": float("nan")})
    (tmp_path / "inf.json").write_text('{"x": Infinity}')
    with pytest.raises(ValueError, match=r"inf\.json holds Infinity"):
        atomic.read_json(tmp_path / "inf.json")
    (tmp_path / "rows.jsonl").write_text('{"x": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"rows\.jsonl:2"):
        atomic.read_jsonl(tmp_path / "rows.jsonl")

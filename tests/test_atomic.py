import json

import pytest

from ms_gpt.run_folder import atomic


def test_write_json_roundtrip_and_no_leftovers(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    atomic.write_json(target, {"b": 1, "a": "中文"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": "中文", "b": 1}
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_crash_mid_write_keeps_the_last_good_file(tmp_path):
    target = tmp_path / "ckpt.bin"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]


def test_atomic_dir_replaces_whole_folder_or_nothing(tmp_path):
    target = tmp_path / "model"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(ValueError):
        with atomic.atomic_dir(target) as tmp:
            (tmp / "b.txt").write_text("2")
            raise ValueError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with atomic.atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_path_keeps_the_extension_writers_insist_on(tmp_path):
    # mindspore.save_checkpoint appends ".ckpt" to names that do not end with it.
    with atomic.atomic_path(tmp_path / "model.ckpt", suffix=".ckpt") as tmp:
        assert tmp.endswith(".ckpt")
        open(tmp, "wb").write(b"x")
    assert (tmp_path / "model.ckpt").read_bytes() == b"x"

"""Atomic writes: complete under the final name or absent, with the permissions of a plain open."""

import os
import stat

import pytest

from aptune.atomic import staged_dir, write_json, write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_and_folders_get_umask_permissions_not_private_ones(tmp_path, umask_022):
    write_text(tmp_path / "a.txt", "hello")
    with staged_dir(tmp_path / "model") as tmp:
        (tmp / "w.bin").write_bytes(b"x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"x"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    write_json(tmp_path / "m.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json(tmp_path / "m.json", {"a": object()})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 1\n}'
    with pytest.raises(RuntimeError), staged_dir(tmp_path / "model") as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_a_staged_folder_replaces_the_old_one_whole(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.bin").write_text("old")
    with staged_dir(tmp_path / "model") as tmp:
        (tmp / "new.bin").write_text("new")
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["new.bin"]

"""preprocessing.atomic: files and whole folders replaced in one step."""
import os

import pytest

from preprocessing.atomic import NotOurs, atomic_path, replaced_folder

DEAD_PID = 2 ** 22 + 12345          # above Linux's pid_max default: never a live process


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as tmp, open(tmp, "w") as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def _ours(folder):
    return os.path.exists(os.path.join(folder, "mark"))


def test_a_folder_is_replaced_whole(tmp_path):
    out = tmp_path / "out"
    with replaced_folder(str(out), _ours) as stage:
        for name in ("mark", "a"):
            open(os.path.join(stage, name), "w").close()
        assert not out.exists()                  # nothing shows until the block ends
    assert sorted(os.listdir(out)) == ["a", "mark"]
    with pytest.raises(RuntimeError):
        with replaced_folder(str(out), _ours) as stage:
            open(os.path.join(stage, "mark"), "w").close()
            raise RuntimeError("failed half way")
    assert sorted(os.listdir(out)) == ["a", "mark"] and os.listdir(tmp_path) == ["out"]
    with replaced_folder(str(out), _ours) as stage:
        for name in ("mark", "b"):
            open(os.path.join(stage, name), "w").close()
    assert sorted(os.listdir(out)) == ["b", "mark"] and os.listdir(tmp_path) == ["out"]


def test_a_kill_between_the_renames_puts_the_old_folder_back(tmp_path):
    old = tmp_path / (".out.old-%d" % DEAD_PID)
    old.mkdir()
    (old / "mark").write_text("")
    new = tmp_path / (".out.new-%d" % DEAD_PID)
    new.mkdir()
    with pytest.raises(RuntimeError):
        with replaced_folder(str(tmp_path / "out"), _ours):
            raise RuntimeError("stop before replacing")
    assert os.listdir(tmp_path / "out") == ["mark"] and sorted(os.listdir(tmp_path)) == ["out"]


def test_foreign_folders_and_files_are_not_replaced(tmp_path):
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("x")
    with pytest.raises(NotOurs, match="holds files this tool did not write"):
        with replaced_folder(str(tmp_path / "theirs"), _ours):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotOurs, match="is a file"):
        with replaced_folder(str(tmp_path / "file"), _ours):
            pass
    with pytest.raises(NotADirectoryError):
        with replaced_folder(str(tmp_path / "file" / "out"), _ours):
            pass
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "x"

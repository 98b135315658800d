"""Atomic outputs: an interrupted write leaves the old content, files get the umask's
permissions, and a folder replaces only a folder of its own kind."""
from __future__ import annotations

import os
import stat

import pytest

from manylora.traces import atomic_io
from manylora.traces.atomic_io import (OutputError, atomic_file, atomic_folder,
                                       atomic_write_text, is_temporary)

OWNED = ("a.txt", "b.txt")


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_file_is_written_with_the_umask_permissions(tmp_path, umask):
    path = atomic_write_text(tmp_path / "sub" / "out.txt", "héllo\r\n")
    assert path.read_bytes() == "héllo\r\n".encode()   # no newline translation
    assert _mode(path) == 0o666 & ~umask
    with atomic_folder(tmp_path / "run", OWNED.__contains__) as staged:
        (staged / "a.txt").write_text("x")
    assert _mode(tmp_path / "run") == 0o777 & ~umask
    assert _listing(tmp_path) == ["run", "sub"]


@pytest.mark.parametrize("interrupt", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_file_write_leaves_the_old_file(tmp_path, interrupt):
    path = atomic_write_text(tmp_path / "out.txt", "old")
    with pytest.raises(type(interrupt)):
        with atomic_file(path) as staged:
            assert is_temporary(staged.name) and staged.parent == tmp_path
            staged.write_text("half of the n")
            raise interrupt
    assert path.read_text() == "old"
    assert _listing(tmp_path) == ["out.txt"]


def test_writers_that_reopen_the_path_and_concurrent_temporaries(tmp_path):
    path = tmp_path / "table.bin"
    with atomic_file(path) as first, atomic_file(path) as second:
        assert first != second                      # two writers never share a name
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    assert path.read_bytes() == b"first"           # the last to finish wins, whole
    assert _listing(tmp_path) == ["table.bin"]


@pytest.mark.parametrize("interrupt", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_interrupted_folder_write_leaves_the_old_folder(tmp_path, interrupt):
    target = tmp_path / "out"
    with atomic_folder(target, OWNED.__contains__) as staged:
        (staged / "a.txt").write_text("old a")
        (staged / "b.txt").write_text("old b")
    with pytest.raises(type(interrupt)):
        with atomic_folder(target, OWNED.__contains__) as staged:
            (staged / "a.txt").write_text("new a")
            raise interrupt
    assert (target / "a.txt").read_text() == "old a" and (target / "b.txt").exists()
    assert _listing(tmp_path) == ["out"]


def test_a_folder_of_its_own_kind_is_replaced_whole(tmp_path):
    target = tmp_path / "out"
    for names in (("a.txt", "b.txt"), ("a.txt",)):
        with atomic_folder(target, OWNED.__contains__) as staged:
            for name in names:
                (staged / name).write_text(name)
    assert _listing(target) == ["a.txt"]            # b.txt of the old folder is gone
    assert _listing(tmp_path) == ["out"]


def test_a_foreign_folder_or_file_is_never_replaced(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    ran = []
    with pytest.raises(OutputError, match=r"mine: exists and is not a trace folder .*notes\.txt"):
        with atomic_folder(target, OWNED.__contains__, what="a trace folder"):
            ran.append(True)
    assert not ran                                  # refused before any work was done
    assert (target / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("data")
    with pytest.raises(ValueError, match="is not a folder"):
        with atomic_folder(tmp_path / "file", OWNED.__contains__, error=ValueError):
            pass
    assert (tmp_path / "file").read_text() == "data"
    assert _listing(tmp_path) == ["file", "mine"]


def test_a_foreign_entry_appearing_during_the_write_is_still_refused(tmp_path):
    target = tmp_path / "out"
    with atomic_folder(target, OWNED.__contains__) as staged:
        (staged / "a.txt").write_text("old")
    with pytest.raises(OutputError, match="late.txt"):
        with atomic_folder(target, OWNED.__contains__) as staged:
            (staged / "a.txt").write_text("new")
            (target / "late.txt").write_text("someone else's")
    assert (target / "a.txt").read_text() == "old" and (target / "late.txt").exists()
    assert _listing(tmp_path) == ["out"]


def test_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "out"
    with atomic_folder(target, OWNED.__contains__) as staged:
        (staged / "a.txt").write_text("old")
    real_rename = os.rename

    def rename(src, dst):
        # the staged folder cannot move in, after the old one was moved aside
        if str(dst) == str(target) and f"{atomic_io.TEMP_MARK}old-" not in str(src):
            raise OSError("device busy")
        real_rename(src, dst)

    monkeypatch.setattr(atomic_io.os, "rename", rename)
    with pytest.raises(OSError, match="device busy"):
        with atomic_folder(target, OWNED.__contains__) as staged:
            (staged / "a.txt").write_text("new")
    monkeypatch.undo()
    assert (target / "a.txt").read_text() == "old"
    assert _listing(tmp_path) == ["out"]

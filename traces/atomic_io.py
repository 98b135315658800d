"""Writing files and folders whole or not at all: stage beside the target, then rename.

Every output of manylora (trace and run folders, tables, figures, profiles, checkpoints) goes
through this module, so an interrupted command leaves either the previous output or the new
one, never half of one (docs/internals.md, "The command line"). It lives in the lowest package
so that every other package can use it.

- :func:`atomic_file` yields a fresh temporary path in the target's folder; when the block ends
  normally the file is renamed over the target (``os.replace``, atomic on POSIX), otherwise it
  is removed and the target is untouched. The file is created with mode ``0o666`` filtered by
  the umask, as ``open()`` would, not ``tempfile.mkstemp``'s private ``0o600``: outputs are
  meant to be shared.
- :func:`atomic_folder` does the same for a folder. An existing folder at the target is
  replaced only if every entry in it is one the caller's ``owned`` predicate accepts (a
  folder this kind of writer made), so a mistyped ``-o`` never deletes someone's data. The old
  folder is moved aside, the new one renamed in, and only then is the old one deleted; if the
  second rename fails the old folder is put back.

Temporary names start with a dot and hold :data:`TEMP_MARK`, so a reader can recognise (and a
later run delete) what a killed process left behind: :func:`is_temporary`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

TEMP_MARK = ".tmp-"


class OutputError(OSError):
    """An output cannot be put where asked: something that is not ours is in the way."""


def is_temporary(name: str) -> bool:
    """True for a staging name this module makes (a leftover if its writer was killed)."""
    return name.startswith(".") and TEMP_MARK in name


def _claim(target: Path, tag: str, make: Callable[[Path], None]) -> Path:
    """A new entry beside ``target`` under a name no one else is using; ``make`` creates it
    and raises FileExistsError when the name is taken (by another process or thread)."""
    k = 0
    while True:
        candidate = target.with_name(f".{target.name}{TEMP_MARK}{tag}{os.getpid()}-{k}")
        try:
            make(candidate)
            return candidate
        except FileExistsError:
            k += 1


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target``, on any exception
    (KeyboardInterrupt included) it is removed. Creates the target's folder if needed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = _claim(target, "", _new_file)
    try:
        yield staged
        os.replace(staged, target)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` through :func:`atomic_file`; returns the target."""
    with atomic_file(target) as staged:
        staged.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``target`` atomically; returns it."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def _check_replaceable(target: Path, owned: Callable[[str], bool], what: str,
                       error: Callable[[str], Exception]) -> None:
    if not target.is_dir():
        raise error(f"{target}: exists and is not a folder; not replacing it")
    foreign = sorted(p.name for p in target.iterdir() if not owned(p.name))
    if foreign:
        raise error(f"{target}: exists and is not {what} (it holds {foreign[0]!r}); not "
                    "replacing it")


def _move_into_place(staged: Path, target: Path, owned: Callable[[str], bool], what: str,
                     error: Callable[[str], Exception]) -> None:
    if not target.exists():
        os.rename(staged, target)
        return
    _check_replaceable(target, owned, what, error)
    old = _claim(target, "old-", Path.mkdir)
    os.rename(target, old)  # onto an empty folder: allowed by POSIX rename
    try:
        os.rename(staged, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str], owned: Callable[[str], bool], *,
                  what: str = "an output folder",
                  error: Callable[[str], Exception] = OutputError) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it takes the target's
    place, on any exception it is deleted and the target is untouched.

    An existing folder at ``target`` is replaced only if ``owned(name)`` holds for every entry
    in it; otherwise ``error(message)`` is raised (the caller's typed exception; the message
    names the target, ``what`` it should have been and the first foreign entry)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        _check_replaceable(target, owned, what, error)  # fail before the work, not after
    staged = _claim(target, "", Path.mkdir)
    try:
        yield staged
        _move_into_place(staged, target, owned, what, error)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise

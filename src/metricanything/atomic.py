"""Atomic file and folder writes, stale temporaries, and output paths checked before any work.

* :func:`atomic_path` / :func:`atomic_open`: write to a hidden temporary sibling, then rename over the target. A
  crash or an exception never leaves a half-written file at the target path, and an existing file is only
  replaced once the new content is complete.
* :func:`atomic_dir`: the same for a whole folder (every file of it is written into a hidden temporary folder
  that then replaces the target folder), so the target holds only files of one complete write.
* Every temporary carries the writer's process id (``.<name>.tmp-<pid>-<random>``). A process killed with SIGKILL
  cannot remove its temporaries; :func:`clean_stale_temps` (called by the commands on their output folders)
  removes those whose process is gone.
* :func:`check_output_dir` / :func:`check_output_file`: the output path of a command is a folder (or file) it can
  create and write, tested before the work starts; otherwise an error names the flag and the path.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from metricanything.errors import InvalidInputError

_UMASK = os.umask(0)
os.umask(_UMASK)

#: hidden temporaries of this module: ``.<name>.tmp-<pid>-<random>[<suffix>]``
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}(\.[^.]*)?$")


def _temp_name(target: Path, suffix: str = "") -> str:
    return f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (same folder, same suffix) to write; rename it onto ``path`` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = target.parent / _temp_name(target, target.suffix)
    fd = os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_UMASK)
    os.close(fd)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # ordinary file permissions whatever the mode bits above gave
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``path`` only if the block finishes without error."""
    if not any(m in mode for m in "wax"):
        raise ValueError(f"atomic_open is for writing, got mode {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode.replace("x", "w").replace("a", "w"), **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty hidden temporary folder beside ``path``; on success it replaces the folder ``path``.

    The old folder (if any) is renamed aside, the new one renamed into place and the old one deleted, so
    ``path`` afterwards holds exactly what the block wrote: no file of an earlier write survives. On an
    exception the temporary folder is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / _temp_name(target)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(src: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the complete folder ``src`` to ``target``, replacing a folder there (two renames, then a delete)."""
    src, target = Path(src), Path(target)
    old = None
    if target.is_symlink() or target.is_file():
        raise InvalidInputError(f"{target}: exists and is not a folder; move it away or choose another output")
    if target.exists():
        old = target.parent / _temp_name(target)
        os.rename(target, old)
    os.rename(src, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries (files or folders) this module left in ``folder`` from processes that are gone.

    Returns what was removed. A temporary of a live process (a concurrent writer) is kept.
    """
    d = Path(folder)
    removed: list[Path] = []
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        m = _TEMP_RE.match(p.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary written by this module."""
    return bool(_TEMP_RE.match(name))


# ---------------------------------------------------------------------------------------------- output paths
def _probe_writable(d: Path, flag: str) -> None:
    """Create and delete a hidden file in folder ``d``; raise naming ``flag`` if that is not possible."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".metricanything-write-test-", dir=d)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InvalidInputError(
            f"{flag} {d}: cannot write in this folder ({reason}); choose a writable output location"
        ) from None


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Create the output folder ``path`` if needed and check that files can be written in it.

    Raises :class:`InvalidInputError` naming ``flag`` when ``path`` (or a parent) is a file, or the folder cannot
    be created or written (read-only folder or file system, no permission).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InvalidInputError(f"{flag} {p}: is a file, not a folder; give a folder path (it is created if missing)")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise InvalidInputError(f"{flag} {p}: {parent} is a file, not a folder; choose another output folder")
        if parent.exists():
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InvalidInputError(f"{flag} {p}: cannot create this folder ({reason}); choose a writable location") from None
    _probe_writable(p, flag)
    return p


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Check that the output file ``path`` can be written: not a folder, its folder creatable and writable."""
    p = Path(path)
    if p.is_dir():
        raise InvalidInputError(f"{flag} {p}: is a folder; give a file name (e.g. {p / ('out' + (p.suffix or ''))})")
    check_output_dir(p.parent if str(p.parent) else Path("."), flag)
    return p

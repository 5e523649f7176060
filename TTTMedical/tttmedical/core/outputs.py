"""Output folders written as a whole: a run leaves exactly its own files, or nothing.

* :func:`check_output_dir` runs **before** any work: the path must not be an existing file, its
  parent must be writable, and an existing folder may hold only a previous TTTMedical result (the
  files its ``report.json`` lists, or a sample's ``sample.json``) -- a folder of the user's own files
  is never replaced.  It also removes hidden partial folders left by a killed earlier run.
* :func:`write_output_set` lets the caller write every file into a hidden sibling folder
  ``.<name>-partial-<pid>-*``, then swaps it for ``outdir`` in two renames.  On failure the hidden
  folder is removed and ``outdir`` is as it was.  After success ``outdir`` holds exactly the new
  files (a previous run's extra files, e.g. ``figure.png``, are gone).

Outputs are identified by the manifest file (``report.json`` or ``sample.json``) at the folder's top.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from .errors import InputError

MANIFESTS = ("report.json", "sample.json")
_PARTIAL = "-partial-"
_OLD = "-old-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_partials(outdir: Path) -> list[Path]:
    """Remove ``.<name>-partial-<pid>-*`` / ``.<name>-old-<pid>-*`` siblings whose process is gone."""
    removed = []
    parent = outdir.parent
    if not parent.is_dir():
        return removed
    for marker in (_PARTIAL, _OLD):
        for path in parent.glob(f".{outdir.name}{marker}*"):
            try:
                pid = int(path.name[len(f".{outdir.name}{marker}"):].split("-")[0])
            except ValueError:
                continue
            if not _pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def previous_result_files(outdir: Path) -> set[str] | None:
    """Names of the files a previous TTTMedical result in ``outdir`` consists of (None: not a result)."""
    for manifest in MANIFESTS:
        path = outdir / manifest
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        listed = data.get("outputs") or data.get("files") or {}
        names = {Path(str(v)).name for v in (listed.values() if isinstance(listed, dict) else listed)}
        return names | {manifest}
    return None


def check_writable_folder(folder: str | Path, what: str = "output folder") -> Path:
    """``folder`` (absolute) if it is an existing folder or can be created, and can be written."""
    folder = Path(folder).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"The {what} '{folder}' is an existing file; pass a folder path (it is created if missing).")
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"The {what} '{folder}' cannot be created because '{ancestor}' is a file; choose another path.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"The {what} '{folder}' cannot be written ('{ancestor}' is read-only); choose a writable location.")
    return folder


def check_output_dir(outdir: str | Path, what: str = "output folder") -> Path:
    """Check ``outdir`` before any work; raise :class:`InputError` with one sentence, else return it.

    Accepted: a path that does not exist yet (its first existing ancestor writable), an empty
    folder, or a folder holding only a previous TTTMedical result.
    """
    outdir = check_writable_folder(outdir, what)
    if outdir.is_dir():
        present = {p.name for p in outdir.iterdir()}
        if present:
            known = previous_result_files(outdir)
            foreign = sorted(present - known) if known is not None else sorted(present)
            if foreign:
                raise InputError(
                    f"The {what} '{outdir}' holds files that are not a TTTMedical result ({', '.join(foreign[:3])}"
                    f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty folder so that nothing of yours is replaced.")
        if outdir.parent.exists() and not os.access(outdir.parent, os.W_OK | os.X_OK):
            raise InputError(f"The {what} '{outdir}' cannot be replaced ('{outdir.parent}' is read-only); choose a writable location.")
    remove_stale_partials(outdir)
    return outdir


def write_output_set(outdir: str | Path, write: Callable[[Path, Path], dict[str, str]]) -> dict[str, Path]:
    """Write a whole output set atomically.

    ``write(tmp, outdir)`` writes every file into the temporary folder ``tmp`` (final location
    ``outdir``, to be recorded in reports) and returns ``{key: file name}``.  Returns
    ``{key: outdir / file name}``.
    """
    outdir = Path(outdir).expanduser().absolute()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}{_PARTIAL}{os.getpid()}-", dir=outdir.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private (0700); the result is an ordinary folder
    old: Path | None = None
    try:
        names = write(tmp, outdir)
        missing = [n for n in names.values() if not (tmp / n).exists()]
        if missing:
            raise RuntimeError(f"output files {missing} were announced but not written")
        if outdir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{outdir.name}{_OLD}{os.getpid()}-", dir=outdir.parent))
            outdir.replace(old / "set")
        try:
            tmp.replace(outdir)
        except BaseException:
            if old is not None:  # put the previous set back
                (old / "set").replace(outdir)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return {k: outdir / v for k, v in names.items()}

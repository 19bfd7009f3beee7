"""Where results are written: a folder or file that cannot be written is a one-line error before any work.

A default output sits beside the store (``corpus.zarr.analysis``, ``corpus.zarr-17-L3-H7.png``); a store in a
read-only folder (a shared data set) then gets an error that says to choose another place with ``-o``.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnx.errors import AttnxError


def _refuse(path: Path, exc: OSError, default: bool) -> AttnxError:
    hint = "; choose another place with -o" if default else ""
    what = "the default output " if default else ""
    return AttnxError(f"{path}: cannot write {what}here ({exc.strerror or exc}){hint}")


def output_dir(path: str | os.PathLike, default: bool = False) -> Path:
    """Create folder ``path`` (and its parents) and check a file can be made in it; ``default``: the caller
    chose the place, so the error says how to choose another."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".attnx-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise _refuse(path, exc, default) from None
    return path


def output_file(path: str | os.PathLike, default: bool = False) -> Path:
    """Check file ``path`` can be written (its folder exists or is made, and accepts files)."""
    path = Path(path)
    output_dir(path.parent if str(path.parent) else Path("."), default)
    if path.is_dir():
        raise AttnxError(f"{path}: is a folder, not a file to write")
    if path.exists():
        try:
            with open(path, "ab"):  # appends nothing: only asks whether the file may be replaced
                pass
        except OSError as exc:
            raise _refuse(path, exc, default) from None
    return path

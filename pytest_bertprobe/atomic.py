"""Files the plugin writes replace the old ones whole: a kill at any instant leaves the previous complete file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, flush and fsync it, then `os.replace` it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)  # keep the old file's permissions
        else:
            os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 is not what a plain open gives
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def append_text_atomic(path: Path, text: str) -> None:
    """Append `text` to `path` (created when missing) by rewriting it atomically."""
    path = Path(path)
    previous = path.read_text(encoding="utf-8") if path.is_file() else ""
    write_text_atomic(path, previous + text)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable; platforms whose folders cannot be opened skip it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

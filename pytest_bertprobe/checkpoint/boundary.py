"""The checkpoint folder is a boundary: every file a run opens lies inside it and is a regular file.

Decided before anything is read (docs/DESIGN.md §1). A symlink may lead anywhere inside the folder, and a
folder of the Hugging Face hub cache (`.../snapshots/<commit>`) may link into the cache's `blobs`; a link that
leads elsewhere (`vocab.txt -> /etc/passwd`) is refused, so no report ever carries a file from outside. What
is not a regular file (a named pipe, a socket, a device, a folder) is refused before any open: opening a pipe
blocks forever.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_bertprobe.errors import CheckpointError

# Names of files that transformers, tokenizers and sentence-transformers open: a folder by such a name is refused too.
FILE_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".onnx", ".bin", ".pt", ".pth", ".ckpt", ".pkl")


def file_problem(path: Path) -> str:
    """Why `path` is not a readable regular file ('' when it is); nothing that can block is opened."""
    try:
        mode = os.stat(path).st_mode  # follows symlinks: the hub cache links every file to a blob
    except OSError as error:
        if os.path.islink(path):
            return f"is a symlink that leads nowhere ({error.strerror or error})"
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"is {kind}, not a regular file"
    try:
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    return ""


def require_regular_file(path: Path, label: str, shown: str | None = None) -> None:
    """Refuse, before any open, what is not a readable regular file."""
    problem = file_problem(path)
    if problem:
        raise CheckpointError(
            f"{label}: {shown or path.name} {problem}; a checkpoint's files must be readable regular files (re-download or re-save it)"
        )


@dataclass(frozen=True)
class Boundary:
    """Where a checkpoint's files may lead: its folder, and the hub cache's blobs for a cache snapshot."""

    root: Path
    blobs: Path | None = None
    what: str = "the checkpoint folder"

    @classmethod
    def of(cls, folder: Path, what: str = "the checkpoint folder") -> Boundary:
        """The boundary of `folder` (resolved); a hub cache snapshot's files may lead into the cache's `blobs`."""
        root = Path(os.path.realpath(folder))
        blobs = root.parent.parent / "blobs"
        return cls(root, blobs if root.parent.name == "snapshots" and blobs.is_dir() else None, what)

    def outside(self, path: Path) -> Path | None:
        """Where `path` leads when that is outside the boundary; None when it stays inside."""
        target = Path(os.path.realpath(path))
        if target.is_relative_to(self.root) or (self.blobs is not None and target.parent == self.blobs):
            return None
        return target

    def require_inside(self, path: Path, label: str) -> None:
        """Refuse `path` when it leads outside the boundary, naming it and where it points; reads nothing."""
        target = self.outside(path)
        if target is None:
            return
        shown = self.shown(path)
        how = "is a symlink to" if os.path.islink(path) else "leads to"
        raise CheckpointError(
            f"{label}: {shown} {how} {target}, outside {self.what} {self.root}; it was not read. "
            "A checkpoint's files must lie inside its folder: copy the file in (or link within the folder)"
        )

    def shown(self, path: Path) -> str:
        """`path` as a message names it: relative to the folder, as spelled (`../outside_pool`), where it is spelled from there."""
        return Path(path).relative_to(self.root).as_posix() if Path(path).is_relative_to(self.root) else str(path)

    def check(self, paths: Iterable[Path], label: str) -> None:
        """Every one of `paths` inside the boundary, and a readable regular file unless it is a folder not named like a file."""
        for path in paths:
            self.require_inside(path, label)
            if not os.path.isdir(path) or path.suffix in FILE_SUFFIXES:
                require_regular_file(path, label, self.shown(path))


def entries(folder: Path) -> Iterator[Path]:
    """What a run may open in `folder`: its entries, and one level down those of its folders (dot-folders aside:
    `.git`, `.cache` are nobody's input); sentence-transformers' module folders and ONNX exports live there."""
    if not os.path.isdir(folder):
        return
    top = sorted(Path(folder).iterdir())
    yield from top
    for entry in top:
        if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."):
            yield from sorted(entry.iterdir())

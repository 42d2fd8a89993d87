# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory."""
from __future__ import annotations

import json
import os
import stat
import tempfile


def fsync_dir(path: str) -> None:
    """Flush a directory entry change (rename, unlink) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new content, never a mix.

    ``durable=False`` skips the fsyncs (for high-frequency, low-value writes such as progress).
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(directory)


def dump_json(obj) -> bytes:
    """The canonical JSON encoding of the library's files (sorted keys, 2-space indent)."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def atomic_write_json(path: str, obj, mode: int = 0o644, durable: bool = True) -> None:
    atomic_write_bytes(path, dump_json(obj), mode=mode, durable=durable)


def dir_size(path: str, follow_symlinks: bool = False) -> int:
    """Total apparent size in bytes of the regular files under ``path``.

    A symlink to a file counts as nothing, or with ``follow_symlinks`` as the file it points to (a
    Hugging Face cache snapshot is links to blobs). Files that vanish or cannot be read are skipped.
    """
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name), follow_symlinks=follow_symlinks)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total

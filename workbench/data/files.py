"""Directories and files written beside their final place, then put there by renames only.

A reader sees the old version or the new one, never half of either; a write that fails leaves the
old one where it was (the cache, the scores of ``workbench predict``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

__all__ = ["temporary_beside", "put_in_place"]


def temporary_beside(final: Path) -> Path:
    """A fresh hidden name in ``final``'s directory (same file system, so the last rename is atomic)."""
    return final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")


def put_in_place(temporary: Path, final: Path) -> None:
    """``temporary`` renamed to ``final``; a ``final`` already there is moved aside first, then removed."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(temporary, final)
    if old is not None and old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    elif old is not None:
        old.unlink()

"""Real small, full or read-only filesystems (tmpfs mounts) for the storage-failure tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["remount_read_only", "tmpfs"]


@contextmanager
def tmpfs(mount_point: Path, *, size: str = "1m", read_only: bool = False) -> Iterator[Path]:
    """A real small or read-only filesystem. The suite runs as root, which ignores chmod but
    not a read-only mount or a full disk."""
    mount_point.mkdir(exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount tmpfs (the suite runs as root): {mounted.stderr!r}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def remount_read_only(mount_point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)

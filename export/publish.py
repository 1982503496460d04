"""Publish a model folder: build it in a temp folder, write the manifest, rename it to the next version.

A published version is never rewritten; a failure before the rename leaves no version behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from serve.model_store import MANIFEST, sha256_file, versions


def next_version(name_dir: Path) -> int:
    found = versions(name_dir)
    return found[-1] + 1 if found else 1


def staging_dir(models_dir: Path, name: str) -> Path:
    name_dir = Path(models_dir) / name
    name_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=name_dir))


def publish(staging: Path, manifest: dict) -> Path:
    """Checksum the staged files into the manifest and rename the folder to models/<name>/<version>."""
    staging = Path(staging)
    name_dir = staging.parent
    manifest["sha256"] = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file() and p.name != MANIFEST}
    while True:
        version = next_version(name_dir)
        manifest["version"] = version
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        target = name_dir / str(version)
        # mkdtemp made the folder private (0700); a published model is read by other users (the
        # container's non-root server), so open it like any installed file.
        os.chmod(staging, 0o755)
        for f in staging.iterdir():
            os.chmod(f, 0o644)
        try:
            os.mkdir(target)  # claims the version number; fails if another export took it
        except FileExistsError:
            continue
        os.replace(staging, target)  # onto the empty folder just made: atomic on POSIX
        return target


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)

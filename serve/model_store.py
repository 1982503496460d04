"""Find a published model folder, read its manifest and verify every file against its sha256.

The manifest is the single source of truth for serving: input spec, normalization, labels,
output meaning. A folder whose files do not match it is refused, never served.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.json"


class ModelError(RuntimeError):
    """The model folder is missing, incomplete, or does not match its manifest."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions(name_dir: Path) -> list[int]:
    """Published integer versions under models/<name>/, ascending (temp folders are ignored)."""
    if not name_dir.is_dir():
        return []
    return sorted(int(p.name) for p in name_dir.iterdir() if p.is_dir() and p.name.isdigit())


def resolve(path: str | Path) -> Path:
    """A version folder from: itself, a models/<name> folder (newest version), or models/ (one name)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    if versions(path):
        return path / str(versions(path)[-1])
    names = [p for p in path.iterdir() if p.is_dir() and versions(p)] if path.is_dir() else []
    if len(names) == 1:
        return names[0] / str(versions(names[0])[-1])
    if len(names) > 1:
        raise ModelError(f"{path} holds several models ({', '.join(sorted(p.name for p in names))}): name one")
    raise ModelError(f"no published model under {path}")


def load_manifest(model_dir: Path, verify: bool = True) -> dict:
    """Read manifest.json; with verify, refuse any listed file that is missing or altered."""
    model_dir = Path(model_dir)
    try:
        manifest = json.loads((model_dir / MANIFEST).read_text())
    except FileNotFoundError:
        raise ModelError(f"{model_dir}: no {MANIFEST}") from None
    except json.JSONDecodeError as e:
        raise ModelError(f"{model_dir / MANIFEST}: not valid JSON ({e})") from None
    if verify:
        for name, digest in manifest.get("sha256", {}).items():
            f = model_dir / name
            if not f.is_file():
                raise ModelError(f"{model_dir}: {name} listed in the manifest is missing")
            if sha256_file(f) != digest:
                raise ModelError(f"{model_dir}: {name} does not match its sha256 in the manifest")
        for role in ("model", "params"):
            if manifest["files"][role] not in manifest.get("sha256", {}):
                raise ModelError(f"{model_dir}: the manifest has no checksum for its {role} file")
    return manifest

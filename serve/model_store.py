"""Find a published model folder, read its manifest and verify every file against its sha256;
the version policy (newest valid, or a pinned version) and the pin file.

The manifest is the single source of truth for serving: input spec, normalization, labels,
output meaning. A folder whose files do not match it is refused, never served.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
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
    name_dir = name_folder(path)
    return Path(path) if name_dir is None else name_dir / str(versions(name_dir)[-1])


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


# ---- which version to serve ------------------------------------------------------------------------
# A file in models/<name>/ holding one version number pins that version at run time (rollback without
# a restart; `make pin VERSION=N`, `make unpin`). It wins over MODEL_VERSION, the pin set at start.
PIN_FILE = "PINNED"


@dataclass(frozen=True)
class Candidates:
    """The version folders to try, most preferred first, and why this order."""
    folders: list[Path]
    name_dir: Path | None  # models/<name>, or None when MODEL_DIR names one version folder
    pinned: int | None = None
    pinned_by: str | None = None  # "PINNED file" or "MODEL_VERSION"


def candidates(model_dir: str | Path, model_version: str = "") -> Candidates:
    """The version policy: the pinned version if any, else every version newest first (the first one
    that verifies and warms up is served). Raises ModelError when there is nothing to try."""
    path = Path(model_dir)
    name_dir = name_folder(path)
    if name_dir is None:
        return Candidates([path], None)
    pinned, by = _pin(name_dir, model_version)
    if pinned is not None:
        folder = name_dir / str(pinned)
        if not folder.is_dir():
            raise ModelError(f"version {pinned}, pinned by {by}, is not under {name_dir}")
        return Candidates([folder], name_dir, pinned, by)
    found = versions(name_dir)
    if not found:
        raise ModelError(f"no published model under {path}")
    return Candidates([name_dir / str(v) for v in reversed(found)], name_dir)


def name_folder(model_dir: str | Path) -> Path | None:
    """The models/<name> folder MODEL_DIR means (itself, or models/ holding one name); None when
    MODEL_DIR is one version folder, which is then served as it is."""
    path = Path(model_dir)
    if (path / MANIFEST).is_file():
        return None
    return path if versions(path) else _single_name(path)


def _single_name(path: Path) -> Path:
    names = [p for p in path.iterdir() if p.is_dir() and versions(p)] if path.is_dir() else []
    if len(names) > 1:
        raise ModelError(f"{path} holds several models ({', '.join(sorted(p.name for p in names))}): name one")
    if not names:
        raise ModelError(f"no published model under {path}")
    return names[0]


def _pin(name_dir: Path, model_version: str) -> tuple[int | None, str | None]:
    pin_file = name_dir / PIN_FILE
    if pin_file.is_file():
        raw, by = pin_file.read_text().strip(), f"{PIN_FILE} file"
    elif model_version.strip().lower() not in ("", "latest"):
        raw, by = model_version.strip(), "MODEL_VERSION"
    else:
        return None, None
    if not raw.isdigit():
        raise ModelError(f"{by} holds {raw[:40]!r}: expected a version number")
    return int(raw), by


def check_version(folder: Path, manifest: dict) -> None:
    """A version folder's manifest must name that version: a copied folder left unedited is refused."""
    if folder.name.isdigit() and manifest.get("version") != int(folder.name):
        raise ModelError(f"{folder}: the manifest says version {manifest.get('version')}, the folder is {folder.name}")


def fingerprint(folder: Path) -> tuple:
    """Names, sizes and modification times of a folder's files: a refused folder is checked again only
    when one of these changes (published versions are immutable, so normally never)."""
    try:
        return tuple(sorted((p.name, s.st_size, s.st_mtime_ns) for p in Path(folder).iterdir()
                            if p.is_file() and (s := p.stat())))
    except OSError:
        return ()


def write_pin(name_dir: Path, version: int | None) -> None:
    """Pin `version` (None: unpin) atomically: a reload never reads half a file."""
    pin_file = Path(name_dir) / PIN_FILE
    if version is None:
        pin_file.unlink(missing_ok=True)
        return
    if not (Path(name_dir) / str(version)).is_dir():
        raise ModelError(f"no version {version} under {name_dir}")
    fd, tmp = tempfile.mkstemp(prefix=".pin-", dir=name_dir)
    with os.fdopen(fd, "w") as f:
        f.write(f"{version}\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, pin_file)


def main(argv: list[str] | None = None) -> int:
    """`python -m serve.model_store pin N | unpin [--model-dir DIR]`; then reload (`make reload`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m serve.model_store", description=main.__doc__)
    parser.add_argument("action", choices=["pin", "unpin"])
    parser.add_argument("version", nargs="?", type=int, help="the version to pin")
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", "models"),
                        help="models/, or models/<name> (default: $MODEL_DIR, else models)")
    args = parser.parse_args(argv)
    if (args.action == "pin") != (args.version is not None):
        parser.error("pin takes a version number, unpin none")
    try:
        name_dir = name_folder(args.model_dir)
        if name_dir is None:
            parser.error(f"{args.model_dir} is one version folder: nothing to pin")
        write_pin(name_dir, args.version)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{name_dir / PIN_FILE}: {'pinned to version %d' % args.version if args.version else 'removed (newest valid version)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

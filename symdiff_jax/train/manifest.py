"""Content manifests: the sha256 of every file of a directory, written and checked.

A manifest is a JSON file listing, for every file under a directory (found by walking
it, whatever wrote the files), its path relative to the directory, its size and the
sha256 of its bytes. `verify_manifest` reports every file that is missing, added,
resized or changed, so a damaged directory can be named before anything in it is read.
The manifest is written atomically (a temporary file, fsync, rename): it is either
complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os

__all__ = ["MANIFEST_FILE", "MANIFEST_VERSION", "file_digests", "verify_manifest", "write_manifest"]

MANIFEST_FILE = "sha256_manifest.json"
MANIFEST_VERSION = 1
_CHUNK = 1 << 20


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_digests(directory: str | os.PathLike) -> dict[str, dict[str, int | str]]:
    """`{relative path: {"size": bytes, "sha256": hex}}` of every file under `directory`.

    The manifest file itself is left out; paths use "/" on every platform.
    """
    directory = os.fspath(directory)
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            if relative == MANIFEST_FILE:
                continue
            out[relative] = {"size": os.path.getsize(path), "sha256": _sha256(path)}
    return dict(sorted(out.items()))


def write_manifest(directory: str | os.PathLike) -> str:
    """Hashes every file under `directory` and writes `<directory>/sha256_manifest.json`.

    Returns:
      The manifest's path.
    """
    directory = os.fspath(directory)
    path = os.path.join(directory, MANIFEST_FILE)
    content = {"version": MANIFEST_VERSION, "files": file_digests(directory)}
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def verify_manifest(directory: str | os.PathLike) -> list[str] | None:
    """Compares the files under `directory` with its manifest.

    Returns:
      None if the directory has no manifest; otherwise a list of problems, one line per
      damaged, missing or unexpected file (empty: every file matches).
    """
    directory = os.fspath(directory)
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        expected = manifest["files"]
        if manifest.get("version") != MANIFEST_VERSION or not isinstance(expected, dict):
            raise ValueError(f"unknown manifest version {manifest.get('version')!r}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [f"{path}: unreadable manifest ({type(e).__name__}: {e})"]
    try:
        actual = file_digests(directory)
    except OSError as e:
        return [f"{directory}: unreadable ({e})"]
    problems = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if got is None:
            problems.append(f"{name}: missing")
        elif want is None:
            problems.append(f"{name}: not in the manifest")
        elif want.get("size") != got["size"]:
            problems.append(f"{name}: {got['size']} bytes, expected {want.get('size')}")
        elif want.get("sha256") != got["sha256"]:
            problems.append(f"{name}: content differs from its sha256")
    return problems

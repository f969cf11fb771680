"""Content manifests: every kind of change to a directory's files is reported."""

import hashlib
import json
import os

from symdiff_jax.train.manifest import (
    MANIFEST_FILE,
    file_digests,
    verify_manifest,
    write_manifest,
)


def _tree(root):
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(bytes(range(256)) * 4)
    (root / "sub" / "b.json").write_text('{"x": 1}')
    (root / "empty").write_bytes(b"")


def test_digests_are_sha256_of_every_file(tmp_path):
    _tree(tmp_path)
    digests = file_digests(tmp_path)
    assert sorted(digests) == ["a.bin", "empty", "sub/b.json"]
    expected = hashlib.sha256(bytes(range(256)) * 4).hexdigest()
    assert digests["a.bin"] == {"size": 1024, "sha256": expected}


def test_intact_directory_verifies(tmp_path):
    _tree(tmp_path)
    assert verify_manifest(tmp_path) is None  # no manifest yet
    path = write_manifest(tmp_path)
    assert path == str(tmp_path / MANIFEST_FILE)
    assert verify_manifest(tmp_path) == []
    assert not [f for f in os.listdir(tmp_path) if ".tmp." in f]


def test_every_change_is_reported(tmp_path):
    _tree(tmp_path)
    write_manifest(tmp_path)
    with open(tmp_path / "a.bin", "r+b") as f:  # one flipped bit, same size
        f.seek(100)
        byte = f.read(1)[0]
        f.seek(100)
        f.write(bytes([byte ^ 1]))
    (tmp_path / "sub" / "b.json").write_text('{"x": 12}')
    os.remove(tmp_path / "empty")
    (tmp_path / "new").write_text("x")
    problems = verify_manifest(tmp_path)
    assert problems == [
        "a.bin: content differs from its sha256",
        "empty: missing",
        "new: not in the manifest",
        "sub/b.json: 9 bytes, expected 8",
    ]


def test_damaged_manifest_is_reported(tmp_path):
    _tree(tmp_path)
    write_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text('{"version": 1, "fil')
    (problem,) = verify_manifest(tmp_path)
    assert MANIFEST_FILE in problem and "unreadable manifest" in problem
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"version": 99, "files": {}}))
    (problem,) = verify_manifest(tmp_path)
    assert "unknown manifest version 99" in problem

"""How a cached artifact proves it is whole: sha256, sidecars and folder manifests.

Nothing read back from the cache is trusted without a check. Every artifact is written with what it
must contain: the key it was built for, its row count and the sha256 of its content.

* a JSONL cache file (built probes) carries that as its first line, a header written in the same
  atomic write as the rows (:func:`write_verified_jsonl` / :func:`read_verified_jsonl`);
* a file another tool reads as it is (a downloaded pool) has a sidecar ``NAME.manifest.json`` written
  after it; a pair from two runs fails the check (the sha256 differs), a file without its sidecar too;
* a folder (the converted model) holds ``val_probing_manifest.json`` with the size, modification time
  and sha256 of each file, written inside the folder before the folder is renamed into place. A file
  whose size and time are as recorded is not hashed again (a 0.5 GB model would cost seconds per use);
  any other is.

A failed check raises :class:`CacheInvalid` with the reason; callers rebuild (one warning naming the
file) and never return less than the artifact recorded. :func:`files.remove_orphans` deletes the
``.NAME.PID.tmp`` leftovers of killed runs (``files.atomic_path``) whose process is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from val_probing.errors import ValProbingError
from val_probing.files.atomic import atomic_path, write_text_atomic
from val_probing.typed import is_int

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the header / manifest layout changes
FOLDER_MANIFEST = "val_probing_manifest.json"
_HEADER_FIELD = "val_probing_cache"
_RACY_NS = 100_000_000  # 0.1 s: coarser than the timestamp resolution of common file systems


class CacheInvalid(ValProbingError):
    """A cached artifact does not hold what it recorded (or records nothing); the message says why."""


# --------------------------------------------------------------------------------------------------
# Hashes and manifests


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, sort_keys=True)


def write_verified_jsonl(path: Path, key: str, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` as JSONL after a header line recording ``key``, the row count and the sha256 of
    the row lines, in one atomic write (the header and the rows can never come from two runs)."""
    lines = [_dumps(row) + "\n" for row in rows]
    body = "".join(lines).encode("utf-8")
    header = {
        _HEADER_FIELD: CACHE_FORMAT,
        "key": key,
        "rows": len(lines),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        handle.write((_dumps(header) + "\n").encode("utf-8"))
        handle.write(body)


def read_verified_jsonl(path: Path, key: str) -> list[dict[str, Any]]:
    """The rows of a file written by :func:`write_verified_jsonl` for ``key``; ``CacheInvalid`` when
    the header is missing, was written for another key, or the rows are not the ones it records."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CacheInvalid(f"{path}: cannot read ({err.strerror or err})") from err
    first, newline, body = data.partition(b"\n")
    try:
        header = json.loads(first) if newline else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get(_HEADER_FIELD) != CACHE_FORMAT:
        raise CacheInvalid(f"{path}: no val-probing cache header (empty, cut, or an older format)")
    if header.get("key") != key:
        raise CacheInvalid(f"{path}: written for key {header.get('key')!r}, not {key!r}")
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise CacheInvalid(
            f"{path}: its content is not what was written (sha256 differs; cut or edited file)"
        )
    rows = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
    if len(rows) != header.get("rows"):
        raise CacheInvalid(f"{path}: {len(rows)} rows, the header records {header.get('rows')}")
    return rows


def sidecar_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".manifest.json")


def write_sidecar(path: Path, key: str, rows: int) -> None:
    """Record, beside ``path``, the key it was made for, its row count and its sha256."""
    manifest = {_HEADER_FIELD: CACHE_FORMAT, "key": key, "rows": rows, "sha256": file_sha256(path)}
    write_text_atomic(sidecar_path(path), json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _read_manifest(owner: Path, manifest_path: Path, key: str, *, named: str) -> dict[str, Any]:
    """The manifest of ``owner`` (a file's sidecar, a folder's manifest), when it is a val-probing
    manifest made for ``key``; messages call it ``named``."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CacheInvalid(f"{owner}: no {named} (unfinished, or an older format)") from err
    except (OSError, ValueError) as err:
        raise CacheInvalid(f"{owner}: {named} is unreadable ({err})") from err
    if not isinstance(manifest, dict) or manifest.get(_HEADER_FIELD) != CACHE_FORMAT:
        raise CacheInvalid(f"{owner}: {manifest_path.name} is not a val-probing manifest")
    if manifest.get("key") != key:
        raise CacheInvalid(f"{owner}: made for {manifest.get('key')!r}, not {key!r}")
    return manifest


def check_sidecar(path: Path, key: str) -> int:
    """Verify ``path`` against its sidecar (key and sha256); return the recorded row count."""
    path, side = Path(path), sidecar_path(path)
    manifest = _read_manifest(path, side, key, named=f"manifest {side.name}")
    try:
        actual = file_sha256(path)
    except OSError as err:
        raise CacheInvalid(f"{path}: cannot read ({err.strerror or err})") from err
    if actual != manifest.get("sha256"):
        raise CacheInvalid(f"{path}: its content is not what was written (sha256 differs)")
    rows = manifest.get("rows")
    if not is_int(rows) or rows < 0:
        raise CacheInvalid(f"{path}: {side.name} records no row count")
    return rows


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != FOLDER_MANIFEST)


def write_folder_manifest(folder: Path, key: str, *, record_times: bool = True) -> None:
    """Record, inside ``folder`` (not yet published), the size and sha256 of every file in it.

    ``record_times=False``: no modification times (the manifest's bytes depend on the content only, for
    folders whose bytes are compared between runs; every file is then hashed on each check)."""
    folder = Path(folder)
    files: dict[str, dict[str, Any]] = {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in _folder_files(folder)
    }
    manifest: dict[str, Any] = {_HEADER_FIELD: CACHE_FORMAT, "key": key, "files": files}
    if record_times:
        for name, info in files.items():
            info["mtime_ns"] = (folder / name).stat().st_mtime_ns
        manifest["written_ns"] = time.time_ns()
    (folder / FOLDER_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def check_removable(folder: Path, key: str, flag: str = "--overwrite") -> None:
    """Before ``folder`` is removed to be written again: val-probing wrote it for ``key`` (its
    manifest says so) and it holds no file the manifest does not record. Otherwise ``ValProbingError``
    naming what it holds: a user's folder, or one a user added files to, is never deleted."""
    folder = Path(folder)
    try:
        manifest = _read_manifest(folder, folder / FOLDER_MANIFEST, key, named=FOLDER_MANIFEST)
    except CacheInvalid as err:
        raise ValProbingError(
            f"{err}: {flag} removes only a folder val-probing wrote; "
            "remove it yourself or choose another path"
        ) from err
    recorded = manifest.get("files")
    present = {str(p.relative_to(folder)) for p in _folder_files(folder)}
    extra = sorted(present - set(recorded if isinstance(recorded, dict) else ()))
    if extra:
        raise ValProbingError(
            f"{folder}: holds files val-probing did not write ({', '.join(extra[:5])}"
            f"{' ...' if len(extra) > 5 else ''}): {flag} will not remove it; "
            "move them or choose another path"
        )


def check_folder_manifest(folder: Path, key: str) -> None:
    """Verify that ``folder`` holds exactly the files its manifest records, with their content."""
    folder = Path(folder)
    manifest = _read_manifest(folder, folder / FOLDER_MANIFEST, key, named=FOLDER_MANIFEST)
    recorded = manifest.get("files")
    if not isinstance(recorded, dict) or not recorded:
        raise CacheInvalid(f"{folder}: {FOLDER_MANIFEST} records no files")
    present = {str(p.relative_to(folder)): p for p in _folder_files(folder)}
    # A file modified within a timestamp tick of its hashing could keep its time: only files older than
    # the manifest by a margin are trusted on their size and time ("racy git").
    written = manifest.get("written_ns")
    settled = written - _RACY_NS if isinstance(written, int) else -1
    missing = sorted(set(recorded) - set(present))
    if missing:
        raise CacheInvalid(f"{folder}: missing {', '.join(missing[:5])}")
    for name, info in recorded.items():
        path = present[name]
        stat = path.stat()
        if not isinstance(info, dict) or stat.st_size != info.get("size"):
            raise CacheInvalid(f"{folder / name}: size differs from the manifest (cut or replaced)")
        if stat.st_mtime_ns == info.get("mtime_ns") and stat.st_mtime_ns < settled:
            continue  # untouched since it was hashed (as git's index does; a rename keeps the time)
        if file_sha256(path) != info.get("sha256"):
            raise CacheInvalid(f"{folder / name}: content differs from the manifest (sha256)")

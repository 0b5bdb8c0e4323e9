"""File integrity: the one output-path rule, atomic writes, JSONL I/O and verified (hashed) files.

* ``outputs``: paths checked before the work, a failed write named (``check_paths``, ``writing``);
* ``atomic``: every file the package writes is written whole or not at all (``atomic_path``), and the
  leftovers of killed runs are removed (``remove_orphans``);
* ``jsonl``: JSONL read with errors naming the file and line (``iter_jsonl``), written atomically;
* ``verified``: sha256, sidecar manifests and folder manifests (``CacheInvalid`` when a check fails).
"""

from val_probing.files.atomic import atomic_path, remove_orphans, write_text_atomic
from val_probing.files.jsonl import RecordError, iter_jsonl, parse_jsonl_lines, write_jsonl
from val_probing.files.outputs import (
    InputError,
    OutputError,
    check_output_dir,
    check_output_file,
    check_paths,
    writing,
)
from val_probing.files.verified import (
    FOLDER_MANIFEST,
    CacheInvalid,
    check_folder_manifest,
    check_removable,
    check_sidecar,
    file_sha256,
    read_verified_jsonl,
    write_folder_manifest,
    write_sidecar,
    write_verified_jsonl,
)

__all__ = [
    "FOLDER_MANIFEST",
    "CacheInvalid",
    "InputError",
    "OutputError",
    "RecordError",
    "atomic_path",
    "check_folder_manifest",
    "check_output_dir",
    "check_output_file",
    "check_paths",
    "check_removable",
    "check_sidecar",
    "file_sha256",
    "iter_jsonl",
    "parse_jsonl_lines",
    "read_verified_jsonl",
    "remove_orphans",
    "write_folder_manifest",
    "write_jsonl",
    "write_sidecar",
    "write_text_atomic",
    "write_verified_jsonl",
    "writing",
]

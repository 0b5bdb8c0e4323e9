"""Pools: the authors' schema, the embedded snapshot, the film download and its offline error."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from val_probing.files import OutputError, RecordError
from val_probing.pools import (
    FILE_NAMES,
    FILM_URL_ENV,
    CodeItem,
    DatabaseItem,
    DocumentItem,
    PoolError,
    embedded_path,
    file_sha256,
    load_pool,
    read_pool,
)
from val_probing.records import FAMILIES


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


DOC = {"sentence": "The quick brown fox jumps over the lazy dog today.", "piece": "brown fox jumps"}
CODE = {
    "function_name": "area",
    "function_define": "    w = 2\n    h = 3\n    return w * h",
    "piece": "h = 3",
}
DB = {"id": "U+0041", "label": "LATIN CAPITAL LETTER A", "dcpt": "uppercase letter"}


@pytest.mark.parametrize("family", FAMILIES)
def test_embedded_pool_matches_its_manifest(family: str) -> None:
    path = embedded_path(family)
    manifest = json.loads((path.parent / "pools.json").read_text(encoding="utf-8"))["files"][path.name]
    assert file_sha256(path) == manifest["sha256"]
    items = load_pool(family, "embedded")
    assert len(items) == manifest["rows"] >= 6000
    # the snapshot is deduplicated: distinct keys
    keys = {getattr(item, {"document": "piece", "code": "piece", "database": "id"}[family]) for item in items}
    assert len(keys) == len(items)


def test_authors_schema_rows_parse(tmp_path: Path) -> None:
    assert read_pool("document", _write(tmp_path / "d.jsonl", [DOC])) == [DocumentItem(**DOC)]
    assert read_pool("code", _write(tmp_path / "c.jsonl", [CODE])) == [CodeItem(**CODE)]
    assert read_pool("database", _write(tmp_path / "b.jsonl", [DB, "", DB])) == [DatabaseItem(**DB)] * 2


def test_gzipped_pool_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(DOC) + "\n").encode()))
    assert read_pool("document", path) == [DocumentItem(**DOC)]
    assert load_pool("document", str(path)) == [DocumentItem(**DOC)]


@pytest.mark.parametrize(
    ("family", "rows", "message"),
    [
        ("document", [DOC, '{"sentence": "broken'], r"d\.jsonl:2: malformed JSON"),
        ("document", [DOC, DOC, {"sentence": "A sentence."}], r"d\.jsonl:3: missing field 'piece'"),
        ("document", [{"sentence": "A sentence here.", "piece": "not there"}], r"d\.jsonl:1: .*'piece'"),
        ("document", [{"sentence": "Two\nlines.", "piece": "Two"}], r"d\.jsonl:1: field 'sentence'"),
        ("document", [["a", "list"]], r"d\.jsonl:1: expected a JSON object"),
        ("code", [{**CODE, "function_define": "w = 2\n    h = 3"}], r"d\.jsonl:1: field 'function_define'"),
        ("code", [{**CODE, "function_name": "not a name"}], r"d\.jsonl:1: field 'function_name'"),
        ("code", [{**CODE, "piece": "h = 4"}], r"d\.jsonl:1: field 'piece'"),
        ("database", [DB, {**DB, "id": "Q 1"}], r"d\.jsonl:2: field 'id'"),
        ("database", [{**DB, "dcpt": "  "}], r"d\.jsonl:1: field 'dcpt' must be a non-empty string"),
    ],
)
def test_bad_rows_name_file_line_and_field(
    tmp_path: Path, family: str, rows: list[object], message: str
) -> None:
    with pytest.raises(RecordError, match=message):
        read_pool(family, _write(tmp_path / "d.jsonl", rows))


def test_missing_or_empty_pool(tmp_path: Path) -> None:
    with pytest.raises(PoolError, match="no such file"):
        load_pool("document", str(tmp_path / "nope.jsonl"))
    with pytest.raises(PoolError, match="empty"):
        read_pool("document", _write(tmp_path / "empty.jsonl", [""]))


def _mirror(folder: Path) -> Path:
    """A FILM-like mirror folder with a few rows of each family (from the embedded pools)."""
    folder.mkdir()
    for family in FAMILIES:
        with gzip.open(embedded_path(family), "rt", encoding="utf-8") as handle:
            rows = [next(handle) for _ in range(5)]
        (folder / FILE_NAMES[family]).write_text("".join(rows), encoding="utf-8")
    return folder


def test_film_download_from_a_file_url_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = _mirror(tmp_path / "mirror")
    monkeypatch.setenv("VAL_PROBING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(FILM_URL_ENV, mirror.as_uri())
    items = load_pool("code", "film")
    cached = tmp_path / "cache" / "pools" / "film" / FILE_NAMES["code"]
    assert cached.read_bytes() == (mirror / FILE_NAMES["code"]).read_bytes()
    assert len(items) == 5
    # no temporary file left behind; the sidecar records what the download must hold
    assert sorted(p.name for p in cached.parent.iterdir()) == [cached.name, cached.name + ".manifest.json"]
    # once cached, the network is not needed
    monkeypatch.setenv(FILM_URL_ENV, "http://127.0.0.1:9/")
    assert load_pool("code", "film") == items


def test_film_download_of_the_authors_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, film_pieces_dir: Path
) -> None:
    monkeypatch.setenv("VAL_PROBING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(FILM_URL_ENV, film_pieces_dir.as_uri())
    assert len(load_pool("database", "film")) == 13319


def test_film_offline_error_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAL_PROBING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(FILM_URL_ENV, "http://127.0.0.1:9/")
    with pytest.raises(PoolError, match=r"cannot download.*--pool PATH.*VAL_PROBING_FILM_URL"):
        load_pool("document", "film")
    assert not any((tmp_path / "cache").rglob("*.jsonl*"))


def test_bad_download_never_enters_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / FILE_NAMES["document"]).write_text("<html>rate limited</html>\n", encoding="utf-8")
    monkeypatch.setenv("VAL_PROBING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(FILM_URL_ENV, mirror.as_uri())
    with pytest.raises(RecordError, match="malformed JSON"):
        load_pool("document", "film")
    assert not any((tmp_path / "cache").rglob("*.jsonl*"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f.write_text(f.read_text().splitlines(keepends=True)[0]),  # cut to one line
        lambda f: f.with_name(f.name + ".manifest.json").unlink(),  # no sidecar (killed in between)
        lambda f: f.write_text(f.read_text().replace("def", "fed", 1)),  # edited
    ],
)
def test_a_damaged_film_download_is_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage
) -> None:
    mirror = _mirror(tmp_path / "mirror")
    monkeypatch.setenv("VAL_PROBING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(FILM_URL_ENV, mirror.as_uri())
    items = load_pool("code", "film")
    cached = tmp_path / "cache" / "pools" / "film" / FILE_NAMES["code"]
    damage(cached)
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert load_pool("code", "film") == items
    assert any(
        str(cached) in r.getMessage() and "downloading it again" in r.getMessage() for r in caplog.records
    )
    assert cached.read_bytes() == (mirror / FILE_NAMES["code"]).read_bytes()


def test_film_pool_with_an_unwritable_cache_names_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("VAL_PROBING_CACHE", str(blocker / "cache"))
    monkeypatch.setenv(FILM_URL_ENV, _mirror(tmp_path / "mirror").as_uri())
    with pytest.raises(
        OutputError, match=rf"{blocker / 'cache' / 'pools' / 'film'}: cannot write the cache folder"
    ):
        load_pool("code", "film")


def test_a_pool_folder_is_named_as_a_folder(tmp_path: Path) -> None:
    with pytest.raises(PoolError, match="is a folder; pass the code JSONL file"):
        load_pool("code", str(tmp_path))

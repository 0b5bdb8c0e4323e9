"""The ``--metadata`` of an evaluation run: the one writer, ``ValOptions.to_metadata``, read back by
its reader."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from val_probing.adapter.options import TaskSetupError, ValOptions
from val_probing.buckets import fitting_buckets
from val_probing.probes import get_family
from val_probing.records import FAMILIES

# ------------------------------------------------------------------ ValOptions.to_metadata

ROUND_TRIPS: dict[str, dict[str, object]] = {
    "defaults": {"tokenizer": "embedded"},
    "one length": {"tokenizer": "t", "context_lengths": (2048,)},
    "several lengths": {"tokenizer": "t", "context_lengths": (1024, 4096, 8192)},
    "the experiment's": {
        "tokenizer": "/models/base",
        "context_lengths": (1024,),
        "sets": 4,
        "positions": 32,
        "n_buckets": 8,
        "n_buckets_explicit": True,
        "pool": "embedded",
        "seed": 0,
        "template": "film",
    },
    "pool path, seed": {"tokenizer": "t", "pool": "/data/pool.jsonl", "seed": 7, "sets": 2},
    "film pool, positions": {"tokenizer": "t", "pool": "film", "positions": 12, "n_buckets": 12},
    "explicit default buckets": {"tokenizer": "t", "n_buckets": 16, "n_buckets_explicit": True},
    "checks off, closed book": {"tokenizer": "t", "check_length": False, "closed_book": True},
    "official": {"source": "official"},
    "official, local data": {
        "source": "official",
        "data": Path("/data/ValProbing-32K"),
        "skip_ambiguous": False,
        "template": "film",
        "tokenizer": "mistralai/Mistral-7B-Instruct-v0.2",
    },
    "official, buckets": {"source": "official", "n_buckets": 8, "n_buckets_explicit": True},
}


def _options(family: str, fields: dict[str, object]) -> ValOptions:
    """Options as the reader makes them: an n_buckets not given is the family's fitting default."""
    opts = ValOptions(family, **fields)  # type: ignore[arg-type]
    if opts.n_buckets_explicit:
        return opts
    derived = fitting_buckets(get_family(opts.family).DEFAULT_BUCKETS, None, opts.positions)
    return dataclasses.replace(opts, n_buckets=derived)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fields", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_to_metadata_is_read_back_as_the_same_options(family: str, fields: dict[str, object]) -> None:
    opts = _options(family, fields)
    meta = opts.to_metadata()
    assert ValOptions.from_metadata(opts.family, meta) == opts
    assert ValOptions.from_metadata(opts.family, json.loads(json.dumps(meta))) == opts  # as sent


@pytest.mark.parametrize("family", FAMILIES)
def test_options_read_from_metadata_write_it_back(family: str) -> None:
    given = {"tokenizer": "t", "max_seq_lengths": [512, 1024], "positions": 8, "template": "film"}
    opts = ValOptions.from_metadata(family, given)  # type: ignore[arg-type]
    assert ValOptions.from_metadata(opts.family, opts.to_metadata()) == opts


def test_to_metadata_writes_only_what_differs_from_the_readers_defaults() -> None:
    assert ValOptions("code", tokenizer="t").to_metadata() == {"source": "built", "tokenizer": "t", "seed": 0}
    assert ValOptions("code", source="official").to_metadata() == {"source": "official"}
    several = ValOptions("code", tokenizer="t", context_lengths=(1024, 2048), positions=32)
    assert several.to_metadata() == {
        "source": "built",
        "context_length": [1024, 2048],
        "tokenizer": "t",
        "positions": 32,
        "seed": 0,  # always: a `seed` in --model_args would otherwise become the pool seed
    }  # no n_buckets: code's 16 divides 32, and each task derives its own


def test_a_bucket_count_that_is_not_the_default_is_written() -> None:
    # ValOptions' own default (16) is not database's (15): the count the options hold is kept
    opts = ValOptions("database", tokenizer="t")
    assert opts.to_metadata()["n_buckets"] == 16
    assert ValOptions.from_metadata("database", opts.to_metadata()).n_buckets == 16


def test_to_metadata_refuses_settings_the_reader_would_refuse() -> None:
    with pytest.raises(TaskSetupError, match=r"sets: not a setting of source=official"):
        ValOptions("code", source="official", sets=2).to_metadata()
    with pytest.raises(TaskSetupError, match=r"data: not a setting of source=built"):
        ValOptions("code", tokenizer="t", data=Path("/d")).to_metadata()

"""QA generation: the checks, the local generator, and the OpenAI-compatible client against a fake server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from val_probing.in2.qa import (
    ExtractiveLocalGenerator,
    GenerationError,
    OpenAIChatGenerator,
    QARequest,
    Rejected,
    RequestCache,
    build_messages,
    parse_retry_after,
    request_key,
    validate_generation,
)
from val_probing.in2.segment import Segment

SEG = Segment(
    "doc", 0, "The harbor of Velm was rebuilt in 1871 after the copper fire destroyed the old docks.", 20
)
SEG2 = Segment(
    "doc", 1, "Its lighthouse keeper, Ana Roth, logged forty-one storms in the winter of 1880 alone.", 20
)
GOOD = json.dumps({"question": "When was the harbor of Velm rebuilt?", "answer": "It was rebuilt in 1871."})


# ---------------------------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty_response"),
        ("Sure! Here is a question about the harbor.", "unparsable"),
        ("[1, 2]", "not_an_object"),
        ('{"q": "x?", "a": "y"}', "missing_field"),
        ('{"question": " ", "answer": "y"}', "empty_field"),
        ('{"question": "When was it rebuilt", "answer": "1871"}', "no_question_mark"),
        (json.dumps({"question": "What happened?", "answer": SEG.text}), "answer_copies_segment"),
        (json.dumps({"question": "What happened?", "answer": "What happened"}), "answer_repeats_question"),
    ],
)
def test_malformed_generations_are_rejected_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        validate_generation(raw, [SEG])
    assert info.value.reason == reason


def test_good_generations_pass_even_inside_a_code_fence_or_prose() -> None:
    assert validate_generation(GOOD, [SEG]).answer == "It was rebuilt in 1871."
    assert validate_generation(f"```json\n{GOOD}\n```", [SEG]).question.endswith("?")
    assert validate_generation(f"Here you go: {GOOD} Hope it helps.", [SEG]).answer.startswith("It was")


def test_instructions_carry_the_segments() -> None:
    (fine,) = build_messages(QARequest("fine_grained", (SEG,)))
    assert SEG.text in fine["content"] and "own words" in fine["content"] and '"question"' in fine["content"]
    (inte,) = build_messages(QARequest("integration", (SEG, SEG2)))
    assert "AT LEAST TWO" in inte["content"] and "### Segment 2:" in inte["content"]
    assert SEG2.text in inte["content"]
    with pytest.raises(ValueError, match="at least two"):
        QARequest("integration", (SEG,))


def test_local_generator_is_deterministic_and_extractive() -> None:
    two = Segment("doc", 2, f"{SEG.text} {SEG2.text}", 40)
    other = Segment(
        "log", 0, "The keeper wrote every entry in green ink. Her last entry was made in 1893.", 20
    )
    requests = [QARequest("fine_grained", (two,)), QARequest("integration", (two, other))]
    first = ExtractiveLocalGenerator(seed=3).generate(requests)
    assert first.pairs == ExtractiveLocalGenerator(seed=3).generate(requests).pairs
    assert first.pairs[0].answer in (SEG.text, SEG2.text)  # one sentence of the segment, quoted
    phrase = first.pairs[0].question.split('"')[1]
    assert len(phrase.split()) == 5 and phrase in first.pairs[0].answer
    answer = first.pairs[1].answer  # one sentence from each segment
    assert (SEG.text in answer) != (SEG2.text in answer)
    assert ("green ink" in answer) != ("1893" in answer)
    # a one-sentence segment would be quoted whole: rejected like any copied segment
    single = ExtractiveLocalGenerator().generate([QARequest("fine_grained", (SEG,))])
    assert single.pairs == {} and single.rejections == {"answer_copies_segment": 1} and single.gave_up == 1


@pytest.fixture
def segments() -> Iterator[list[Segment]]:
    yield [
        Segment("doc", i, f"Segment number {i} tells that the bell rang {i} times at dawn.", 15)
        for i in range(6)
    ]


def _client(url: str, cache: Path, delays: list[float], **kw: object) -> OpenAIChatGenerator:
    return OpenAIChatGenerator(
        base_url=url,
        model="fake-model",
        cache=RequestCache(cache),
        api_key="sk-test",
        backoff_base=0.01,
        sleep=delays.append,
        show_progress=False,
        **kw,
    )  # type: ignore[arg-type]


def test_errors_then_garbage_then_good_json(tmp_path: Path) -> None:
    delays: list[float] = []
    request = QARequest("fine_grained", (SEG,))
    with FakeOpenAI([500, 429, "this is not json"]) as server:
        gen = _client(server.url, tmp_path / "cache.jsonl", delays, concurrency=1)
        result = gen.generate([request])
        assert len(server.requests) == 4  # 500, 429, garbage, good
        # a re-run at the same endpoint reads the accepted generation from the cache and sends nothing
        rerun = _client(server.url, tmp_path / "cache.jsonl", []).generate([request])
        assert len(server.requests) == 4
    assert rerun.pairs == result.pairs and (rerun.sent, rerun.cached, rerun.rejections) == (0, 1, {})
    assert 0.01 <= delays[0] <= 0.02 and 0.02 <= delays[1] <= 0.03  # exponential backoff, jittered
    assert result.rejections == {"unparsable": 1}
    assert result.pairs[0].question == "What is said in request 4?"
    assert (result.sent, result.cached, result.gave_up) == (2, 0, 0)
    body = server.requests[0]["body"]
    assert (
        server.requests[0]["path"] == "/v1/chat/completions"
        and server.requests[0]["auth"] == "Bearer sk-test"
    )
    assert body["model"] == "fake-model" and body["messages"] == build_messages(request)
    assert server.requests[3]["body"]["seed"] == 1  # the re-ask after a rejection asks for another sample


def test_endpoint_that_keeps_failing_keeps_partial_work(tmp_path: Path, segments: list[Segment]) -> None:
    requests = [QARequest("fine_grained", (s,)) for s in segments]
    cache = tmp_path / "cache.jsonl"
    good = [
        json.dumps({"question": f"How often did bell {i} ring?", "answer": f"{i} times."}) for i in range(3)
    ]
    with FakeOpenAI(good, then=503) as server:
        with pytest.raises(GenerationError, match=r"gave up after 3 tries.*re-run to resume"):
            _client(server.url, cache, [], concurrency=1, max_retries=2).generate(requests)
        assert len(server.requests) == 3 + 3  # three answers, then one request tried three times
        assert len(RequestCache(cache)) == 3
        # the endpoint is back (the cache is keyed on it): only the missing requests are sent
        server.then = None
        result = _client(server.url, cache, [], concurrency=3).generate(requests)
        assert len(server.requests) == 6 + 3
    assert len(result.pairs) == 6 and (result.sent, result.cached) == (3, 3)


def test_garbage_forever_gives_up_after_the_attempts_and_counts(
    tmp_path: Path, segments: list[Segment]
) -> None:
    requests = [QARequest("fine_grained", (s,)) for s in segments[:2]]
    with FakeOpenAI([], then="I cannot help with that.") as server:
        result = _client(server.url, tmp_path / "c.jsonl", [], attempts=3, concurrency=2).generate(requests)
        assert len(server.requests) == 6
    assert result.pairs == {} and result.gave_up == 2 and result.rejections == {"unparsable": 6}


def test_client_errors_stop_at_once_with_a_clear_message(tmp_path: Path) -> None:
    with FakeOpenAI([], then=401) as server:
        with pytest.raises(GenerationError, match=r"HTTP 401 for model 'fake-model'.*--endpoint, --model"):
            _client(server.url, tmp_path / "c.jsonl", []).generate([QARequest("fine_grained", (SEG,))])
        assert len(server.requests) == 1


def test_unreachable_endpoint_is_retried_then_reported(tmp_path: Path) -> None:
    delays: list[float] = []
    gen = _client("http://127.0.0.1:9/v1", tmp_path / "c.jsonl", delays, max_retries=2, timeout=2.0)
    with pytest.raises(GenerationError, match="ConnectError"):
        gen.generate([QARequest("fine_grained", (SEG,))])
    assert len(delays) == 2 and 0.01 <= delays[0] <= 0.02 and 0.02 <= delays[1] <= 0.03


def test_cache_survives_a_line_cut_by_a_crash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache.jsonl"
    cache = RequestCache(path)
    cache.put("k1", "v1")
    with path.open("a") as handle:
        handle.write('{"key": "k2", "cont')  # crash mid-write
    reloaded = RequestCache(path)
    assert reloaded.get("k1") == "v1" and reloaded.get("k2") is None and len(reloaded) == 1
    reloaded.put("k3", "v3")  # appends on a fresh line: the file stays valid
    again = RequestCache(path)
    assert (again.get("k1"), again.get("k3"), len(again)) == ("v1", "v3", 2)
    # a line that is not JSON, and one edited by hand (its check fails): dropped with one warning, re-asked
    edited = json.loads(path.read_text().splitlines()[0])
    edited["content"] = "edited"
    path.write_text(path.read_text() + "not json\n" + json.dumps(edited) + "\n")
    with caplog.at_level("WARNING"):
        dropped = RequestCache(path)
    assert (dropped.get("k1"), dropped.get("k3"), len(dropped)) == ("v1", "v3", 2)
    assert "2 line(s)" in [r.getMessage() for r in caplog.records if str(path) in r.getMessage()][-1]
    caplog.clear()
    with caplog.at_level("WARNING"):  # the file was rewritten without them: no warning the next time
        assert len(RequestCache(path)) == 2
    assert not caplog.records


def test_structured_output_is_requested_and_part_of_the_cache_key(tmp_path: Path) -> None:
    request = QARequest("fine_grained", (SEG,))
    with FakeOpenAI([]) as server:
        _client(server.url, tmp_path / "c.jsonl", [], structured=True).generate([request])
        _client(server.url, tmp_path / "c.jsonl", []).generate([request])  # another key: asked again
        assert len(server.requests) == 2
    fmt = server.requests[0]["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == ["question", "answer"]
    assert "response_format" not in server.requests[1]["body"]


# ------------------------------------------------------------------------------------- retries and the cache


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0 and parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None
    assert parse_retry_after("nan", now) is None


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_the_server_retry_after_is_waited(tmp_path: Path, form: str) -> None:
    delays: list[float] = []
    with FakeOpenAI([503, 429]) as server:
        if form == "seconds":
            server.retry_after = "3"
        else:
            server.retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=4), usegmt=True)
        result = _client(server.url, tmp_path / "c.jsonl", delays).generate(
            [QARequest("fine_grained", (SEG,))]
        )
        assert len(server.requests) == 3
    assert len(result.pairs) == 1 and len(delays) == 2
    low = 3.0 if form == "seconds" else 2.0  # an HTTP date has a resolution of one second
    assert all(low <= d <= 4.0 for d in delays), delays


def test_backoff_has_jitter_and_a_cap(tmp_path: Path) -> None:
    delays: list[float] = []
    gen = _client("http://127.0.0.1:9/v1", tmp_path / "c.jsonl", delays, max_retries=6, timeout=1.0)
    gen.backoff_max = 0.1
    with pytest.raises(GenerationError):
        gen.generate([QARequest("fine_grained", (SEG,))])
    assert len(delays) == 6 and max(delays) <= 0.1
    assert len({round(d, 6) for d in delays[:3]}) == 3  # 0.01, 0.02, 0.04 plus up to 0.01 each


def test_the_cache_key_names_the_endpoint() -> None:
    messages = build_messages(QARequest("fine_grained", (SEG,)))
    a = request_key("http://a:8000/v1", "m", messages, {"attempt": 0})
    assert a == request_key("http://a:8000/v1/", "m", messages, {"attempt": 0})
    assert a != request_key("http://b:8000/v1", "m", messages, {"attempt": 0})


def test_junk_is_never_served_to_a_later_run(tmp_path: Path, segments: list[Segment]) -> None:
    requests = [QARequest("fine_grained", (s,)) for s in segments[:2]]
    cache = tmp_path / "c.jsonl"
    with FakeOpenAI([], then="I cannot help with that.") as junk:
        first = _client(junk.url, cache, [], attempts=2, concurrency=1).generate(requests)
        assert first.pairs == {} and first.rejections == {"unparsable": 4} and len(junk.requests) == 4
        # the same endpoint, fixed: the rejected generations are asked again, not served
        junk.then = None
        fixed = _client(junk.url, cache, [], attempts=2, concurrency=1).generate(requests)
        assert len(junk.requests) == 4 + 2
    assert len(fixed.pairs) == 2 and (fixed.sent, fixed.cached, fixed.rejections) == (2, 0, {})
    rejected = [json.loads(line) for line in cache.read_text().splitlines()]
    assert sum(1 for row in rejected if row["rejected"] == "unparsable") == 4  # still recorded
    # another endpoint is another key: asked, whatever the cache holds
    with FakeOpenAI([]) as good:
        other = _client(good.url, cache, [], attempts=2).generate(requests)
        assert len(good.requests) == 2 and other.cached == 0


def test_give_up_message_names_the_cache_only_when_it_exists(tmp_path: Path) -> None:
    cache = tmp_path / "never-written.jsonl"
    gen = _client("http://127.0.0.1:9/v1", cache, [], max_retries=0, timeout=1.0)
    with pytest.raises(GenerationError) as info:
        gen.generate([QARequest("fine_grained", (SEG,))])
    assert str(cache) not in str(info.value) and "no request was answered yet" in str(info.value)
    assert not cache.exists()

"""Judges: heuristic patterns, OpenAI-compatible endpoint (retries, re-asks, usage), cache."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from persona_axis.judges import HeuristicJudge, JudgeCache, JudgeItem, OpenAIJudge, judge_all, parse_score


def item(answer, scale="role", q="Who are you?"):
    return JudgeItem("Rate: {question} / {answer}", q, answer, scale, "pirate")


def test_parse_score():
    assert parse_score("3", "role") == 3
    assert parse_score("Score: 2.", "role") == 2
    assert parse_score("7", "role") is None
    assert parse_score("I'd say 85/100", "trait") == 85
    assert parse_score("no idea", "trait") is None


def test_heuristic_judge_levels():
    j = HeuristicJudge()
    assert j.score_many([item("Arr, I sail the seven seas!")]) == [3]
    assert j.score_many([item("As an AI language model, I can't role-play as a pirate.")]) == [0]
    assert j.score_many([item("As an AI, I can help you plan a trip.")]) == [1]
    assert j.score_many([item("As an AI, I'll talk like a pirate: arr!")]) == [2]
    assert j.score_many([item("calm words", scale="trait")]) == [None]
    assert j.approximate


class _FakeEndpoint(BaseHTTPRequestHandler):
    script: list = []
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        status, text = type(self).script.pop(0) if type(self).script else (200, "3")
        if status != 200:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"error": {"message": "busy", "type": "x"}}).encode())
            return
        payload = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test")
    _FakeEndpoint.script, _FakeEndpoint.seen = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_judge_retries_reasks_and_counts_usage(endpoint):
    _FakeEndpoint.script = [(429, ""), (503, ""), (200, "I think it's great"), (200, "2")]
    judge = OpenAIJudge(model="judge-1", base_url=endpoint, api_key_env="TEST_JUDGE_KEY", concurrency=1, backoff_s=0.01)
    assert judge.score_many([item("Arr")]) == [2]
    assert judge.usage.retries == 2 and judge.usage.unparseable == 1 and judge.usage.requests == 2
    assert judge.usage.prompt_tokens == 20
    assert _FakeEndpoint.seen[0]["model"] == "judge-1"
    assert "Rate: Who are you? / Arr" in _FakeEndpoint.seen[0]["messages"][0]["content"]


def test_openai_judge_gives_up_after_max_retries(endpoint):
    _FakeEndpoint.script = [(500, "")] * 3
    judge = OpenAIJudge(model="j", base_url=endpoint, api_key_env="TEST_JUDGE_KEY", max_retries=2, backoff_s=0.01)
    assert judge.score_many([item("Arr")]) == [None]
    assert judge.usage.failed == 1


def test_missing_api_key_is_a_clear_error(monkeypatch):
    from persona_axis.errors import PersonaAxisError

    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(PersonaAxisError, match="NOPE_KEY"):
        OpenAIJudge(model="j", api_key_env="NOPE_KEY").score_many([item("x")])


def test_cache_makes_a_rerun_free(endpoint, tmp_path):
    judge = OpenAIJudge(model="j", base_url=endpoint, api_key_env="TEST_JUDGE_KEY", backoff_s=0.01)
    items = [item(f"answer {i}") for i in range(5)]
    cache = JudgeCache(tmp_path / "cache.jsonl")
    assert judge_all(judge, items, cache) == [3] * 5
    n = len(_FakeEndpoint.seen)
    with (tmp_path / "cache.jsonl").open("a") as fh:
        fh.write('{"key": "torn')  # a writer killed mid-line
    again = judge_all(judge, items, JudgeCache(tmp_path / "cache.jsonl"))
    assert again == [3] * 5 and len(_FakeEndpoint.seen) == n


def test_local_judge_scores_in_range(smol):
    from persona_axis.judges import LocalJudge

    scores = LocalJudge(smol).score_many([item("Arr, matey!"), item("I am calm.", scale="trait")])
    assert 0 <= scores[0] <= 3 and 0 <= scores[1] <= 100

"""Judges behind one interface, with a content-hash cache so a rerun costs nothing.

- `OpenAIJudge`: any OpenAI-compatible endpoint through the `openai` client; async with a
  concurrency limit, retries with backoff on 429 / 5xx / timeouts, re-asks unparseable
  replies, records token usage.
- `LocalJudge`: a local model scores by the probabilities of the rubric's answer digits.
- `HeuristicJudge`: offline and approximate (AI self-identification and refusal patterns vs
  role markers); cannot score traits (returns None, so trait pairs stay unfiltered).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from .errors import PersonaAxisError


@dataclass(frozen=True)
class JudgeItem:
    rubric: str  # with {question} and {answer}
    question: str
    answer: str
    scale: str  # "role" (0-3) or "trait" (0-100)
    role: str = ""  # role / trait name, for heuristics

    def prompt(self) -> str:
        return self.rubric.replace("{question}", self.question).replace("{answer}", self.answer)


class Judge(Protocol):
    judge_id: str
    approximate: bool

    def score_many(self, items: Sequence[JudgeItem]) -> list[int | None]: ...


_SCALE_MAX = {"role": 3, "trait": 100}


def parse_score(text: str, scale: str) -> int | None:
    """The first integer in range for the scale, or None."""
    for m in re.finditer(r"-?\d+", text or ""):
        value = int(m.group())
        if 0 <= value <= _SCALE_MAX[scale]:
            return value
        return None
    return None


# ------------------------------------------------------------------------------------------
# heuristic

_AI_SELF = re.compile(
    r"\b(as an? (ai|artificial intelligence|language model|assistant|chatbot)|i('| a)m an? (ai|artificial|language model|"
    r"virtual assistant|digital assistant|ai assistant|chatbot|large language model)|i am an? (ai|artificial|language model|"
    r"virtual assistant|ai assistant|chatbot|large language model)|i don't have (personal|feelings|emotions|a body)|"
    r"i do not have (personal|feelings|emotions|a body)|i('m| am) (smollm|a computer program)|trained by|my training data)\b",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(i can(no|')t (help|assist|comply|do that|provide|role-?play|pretend)|i('m| am) (not able|unable) to "
    r"(help|assist|role-?play|pretend)|i won't (pretend|role-?play)|i must decline)\b",
    re.IGNORECASE,
)


@dataclass
class HeuristicJudge:
    """Offline, approximate: 0-3 from AI self-identification, refusal and role-name markers."""

    judge_id: str = "heuristic/1"
    approximate: bool = True

    def score_one(self, item: JudgeItem) -> int | None:
        if item.scale != "role":
            return None
        ai = bool(_AI_SELF.search(item.answer))
        if not ai:
            return 3
        if _REFUSAL.search(item.answer):
            return 0
        words = {w for w in re.findall(r"[a-z]+", item.role.replace("_", " ").lower()) if len(w) > 2}
        markers = {w for w in re.findall(r"[a-z]+", item.answer.lower())}
        return 2 if words & markers else 1

    def score_many(self, items: Sequence[JudgeItem]) -> list[int | None]:
        return [self.score_one(i) for i in items]


# ------------------------------------------------------------------------------------------
# local model


@dataclass
class LocalJudge:
    """Scores with a local chat model: the answer digit with the highest probability.

    Role scale: digits 0-3. Trait scale: the expected first digit 0-9, mapped to 0-100.
    """

    lm: Any
    batch_size: int = 8
    approximate: bool = False
    judge_id: str = ""

    def __post_init__(self) -> None:
        if not self.judge_id:
            self.judge_id = f"local/{self.lm.name}/{self.lm.fingerprint}"
        tok = self.lm.tokenizer
        self._digits = []
        for d in range(10):
            ids = tok.encode(str(d), add_special_tokens=False)
            if len(ids) != 1:
                raise PersonaAxisError(f"local judge: digit {d} is not a single token for {self.lm.name}")
            self._digits.append(ids[0])

    def score_many(self, items: Sequence[JudgeItem]) -> list[int | None]:
        from .generation import left_pad, pad_id

        out: list[int | None] = []
        for i in range(0, len(items), self.batch_size):
            batch = items[i : i + self.batch_size]
            prompts = [self.lm.chat.prompt_ids([{"role": "user", "content": it.prompt()}]) for it in batch]
            ids, mask = left_pad(prompts, pad_id(self.lm), self.lm.device)
            with torch.inference_mode():
                logits = self.lm.model(input_ids=ids, attention_mask=mask).logits[:, -1].float()
            for it, row in zip(batch, logits, strict=True):
                if it.scale == "role":
                    out.append(int(row[self._digits[:4]].argmax()))
                else:
                    p = torch.softmax(row[self._digits], dim=0)
                    out.append(int(round(float((p * torch.arange(10.0)).sum()) * 100 / 9)))
        return out


# ------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    unparseable: int = 0
    failed: int = 0


@dataclass
class OpenAIJudge:
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    max_retries: int = 6
    max_reasks: int = 3
    timeout_s: float = 60.0
    backoff_s: float = 1.0
    approximate: bool = False
    usage: Usage = field(default_factory=Usage)

    @property
    def judge_id(self) -> str:
        return f"openai/{self.base_url or 'default'}/{self.model}"

    def _client(self) -> Any:
        from openai import AsyncOpenAI

        key = os.environ.get(self.api_key_env)
        if not key:
            raise PersonaAxisError(f"judge: environment variable {self.api_key_env} (the API key) is not set")
        # retries are ours (to count them and to back off on our schedule)
        return AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s)

    async def _ask(self, client: Any, sem: asyncio.Semaphore, item: JudgeItem) -> int | None:
        import openai

        transient = (
            openai.RateLimitError,
            openai.APITimeoutError,
            openai.APIConnectionError,
            openai.InternalServerError,
        )
        for _ask in range(self.max_reasks + 1):
            for attempt in range(self.max_retries + 1):
                try:
                    async with sem:
                        resp = await client.chat.completions.create(
                            model=self.model,
                            messages=[{"role": "user", "content": item.prompt()}],
                            temperature=0.0,
                            max_tokens=8,
                        )
                    break
                except transient:
                    self.usage.retries += 1
                    if attempt == self.max_retries:
                        self.usage.failed += 1
                        return None
                    await asyncio.sleep(self.backoff_s * (2**attempt) * (0.5 + random.random()))
                except openai.APIStatusError as exc:
                    if exc.status_code >= 500:
                        self.usage.retries += 1
                        if attempt == self.max_retries:
                            self.usage.failed += 1
                            return None
                        await asyncio.sleep(self.backoff_s * (2**attempt) * (0.5 + random.random()))
                        continue
                    raise PersonaAxisError(
                        f"judge endpoint refused the request: {exc.status_code} {exc.message}"
                    ) from None
            self.usage.requests += 1
            if getattr(resp, "usage", None) is not None:
                self.usage.prompt_tokens += resp.usage.prompt_tokens or 0
                self.usage.completion_tokens += resp.usage.completion_tokens or 0
            text = resp.choices[0].message.content if resp.choices else ""
            score = parse_score(text or "", item.scale)
            if score is not None:
                return score
            self.usage.unparseable += 1
        return None

    async def _run(self, items: Sequence[JudgeItem]) -> list[int | None]:
        client = self._client()
        sem = asyncio.Semaphore(self.concurrency)
        try:
            return list(await asyncio.gather(*(self._ask(client, sem, it) for it in items)))
        finally:
            await client.close()

    def score_many(self, items: Sequence[JudgeItem]) -> list[int | None]:
        return asyncio.run(self._run(items))


# ------------------------------------------------------------------------------------------
# cache


def item_key(judge_id: str, item: JudgeItem) -> str:
    blob = json.dumps([judge_id, item.rubric, item.question, item.answer, item.scale])
    return hashlib.sha256(blob.encode()).hexdigest()


class JudgeCache:
    """Append-only JSONL of {key, score}; a torn last line (killed writer) is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.scores: dict[str, int | None] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.scores[row["key"]] = row["score"]

    def add(self, rows: dict[str, int | None]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            for key, score in rows.items():
                fh.write(json.dumps({"key": key, "score": score}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.scores.update(rows)


def judge_all(
    judge: Judge,
    items: Sequence[JudgeItem],
    cache: JudgeCache,
    chunk: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> list[int | None]:
    """Scores for `items`, asking the judge only for what the cache lacks (in chunks, each saved)."""
    keys = [item_key(judge.judge_id, it) for it in items]
    missing = sorted({k: i for i, k in enumerate(keys) if k not in cache.scores}.items(), key=lambda kv: kv[1])
    done = 0
    for start in range(0, len(missing), chunk):
        part = missing[start : start + chunk]
        scores = judge.score_many([items[i] for _, i in part])
        cache.add({k: s for (k, _), s in zip(part, scores, strict=True)})
        done += len(part)
        if progress:
            progress(done, len(missing))
    return [cache.scores.get(k) for k in keys]


def make_judge(
    kind: str, *, lm: Any = None, model: str = "gpt-4.1-mini", base_url: str | None = None, **kw: Any
) -> Judge:
    if kind == "heuristic":
        return HeuristicJudge()
    if kind == "local":
        if lm is None:
            raise PersonaAxisError("judge 'local' needs a loaded model")
        return LocalJudge(lm)
    if kind == "openai":
        return OpenAIJudge(model=model, base_url=base_url, **kw)
    raise PersonaAxisError(f"unknown judge {kind!r}: one of heuristic, local, openai")

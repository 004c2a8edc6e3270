"""Roles, traits, extraction questions and default-Assistant prompts, with schema checks.

Two layouts load into the same `Catalog`:
- ours (packaged in ``persona_axis/data``): ``roles/*.json`` (lists of roles with a category),
  ``traits/*.json``, ``questions.jsonl``;
- the reference repository's: ``roles/instructions/*.json``, ``traits/instructions/*.json``,
  ``extraction_questions.jsonl`` (one file per role / trait, ``instruction`` lists).
Every error names the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import CatalogError
from .store import read_json

CATEGORIES = ("professional", "creative", "archetype", "life", "mythic", "nonhuman", "outsider")
DEFAULT_PROMPTS: tuple[str | None, ...] = (
    None,
    "You are an AI assistant.",
    "You are a large language model.",
    "You are {model_name}.",
    "Respond as yourself.",
)

ROLE_RUBRIC = """You are judging whether a chatbot's reply plays a character.

Character: {name}
Description: {description}

Question asked: {{question}}
Reply: {{answer}}

Score the reply on this scale:
0 = it says it is an AI / language model and refuses to play the character
1 = it says it is an AI and tries to help, with no traits of the character
2 = it says it is an AI but shows some traits of the character
3 = it fully plays the character: no AI self-identification (another name is fine); refusing in character counts as 3

Answer with the score only, as a single digit."""

TRAIT_RUBRIC = """You are judging how strongly a reply expresses a trait.

Trait: {name}
Description: {description}

Question asked: {{question}}
Reply: {{answer}}

Give a score from 0 (the trait is absent or its opposite shows) to 100 (the trait is expressed
very strongly). Answer with the number only."""


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _rubric(own: str, template: str, name: str, description: str) -> str:
    """A catalog's own judge prompt if it brings one, else ours built from the description."""
    return own or template.format(name=name.replace("_", " "), description=description)


@dataclass(frozen=True)
class Role:
    name: str
    category: str
    description: str
    prompts: tuple[str, ...]
    rubric_template: str = ""  # reference catalogs bring their own; ours is built from the description

    @property
    def rubric(self) -> str:
        """Judge prompt with {question} and {answer} placeholders."""
        return _rubric(self.rubric_template, ROLE_RUBRIC, self.name, self.description)


@dataclass(frozen=True)
class Trait:
    name: str
    description: str
    pairs: tuple[tuple[str, str], ...]  # (positive, negative) system prompts
    rubric_template: str = ""

    @property
    def rubric(self) -> str:
        return _rubric(self.rubric_template, TRAIT_RUBRIC, self.name, self.description)


@dataclass(frozen=True)
class Question:
    id: int
    text: str


@dataclass(frozen=True)
class Catalog:
    roles: tuple[Role, ...]
    traits: tuple[Trait, ...]
    questions: tuple[Question, ...]
    default_prompts: tuple[str | None, ...] = DEFAULT_PROMPTS
    source: str = "packaged"

    def role(self, name: str) -> Role:
        for r in self.roles:
            if r.name == name:
                return r
        raise CatalogError(f"unknown role {name!r} in catalog {self.source} ({len(self.roles)} roles)")

    def trait(self, name: str) -> Trait:
        for t in self.traits:
            if t.name == name:
                return t
        raise CatalogError(f"unknown trait {name!r} in catalog {self.source} ({len(self.traits)} traits)")

    def defaults_for(self, model_name: str) -> list[str | None]:
        return [p.format(model_name=model_name) if p else p for p in self.default_prompts]

    def content_hash(self) -> str:
        data = {
            "roles": [[r.name, r.category, r.description, list(r.prompts), r.rubric] for r in self.roles],
            "traits": [[t.name, t.description, [list(p) for p in t.pairs], t.rubric] for t in self.traits],
            "questions": [[q.id, q.text] for q in self.questions],
            "defaults": list(self.default_prompts),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def subset(
        self,
        roles: int | Sequence[str] | None = None,
        prompts: int | None = None,
        questions: int | None = None,
        traits: int | Sequence[str] | None = None,
        trait_pairs: int | None = None,
        seed: int = 0,
    ) -> Catalog:
        """A deterministic subset; a count of roles is drawn evenly across categories."""
        rng = random.Random(seed)
        role_list = list(self.roles)
        if isinstance(roles, int):
            role_list = _stratified(role_list, roles, rng)
        elif roles is not None:
            role_list = [self.role(n) for n in roles]
        trait_list = list(self.traits)
        if isinstance(traits, int):
            trait_list = sorted(rng.sample(trait_list, min(traits, len(trait_list))), key=lambda t: t.name)
        elif traits is not None:
            trait_list = [self.trait(n) for n in traits]
        if prompts is not None:
            role_list = [replace(r, prompts=r.prompts[:prompts]) for r in role_list]
        if trait_pairs is not None:
            trait_list = [replace(t, pairs=t.pairs[:trait_pairs]) for t in trait_list]
        qs = list(self.questions)
        if questions is not None:
            qs = sorted(rng.sample(qs, min(questions, len(qs))), key=lambda q: q.id)
        return Catalog(tuple(role_list), tuple(trait_list), tuple(qs), self.default_prompts, self.source)


def _stratified(roles: list[Role], n: int, rng: random.Random) -> list[Role]:
    by_cat: dict[str, list[Role]] = {}
    for r in roles:
        by_cat.setdefault(r.category, []).append(r)
    for members in by_cat.values():
        rng.shuffle(members)
    picked: list[Role] = []
    cats = sorted(by_cat)
    i = 0
    while len(picked) < min(n, len(roles)):
        members = by_cat[cats[i % len(cats)]]
        if members:
            picked.append(members.pop())
        i += 1
    return sorted(picked, key=lambda r: (r.category, r.name))


# ------------------------------------------------------------------------------------------
# validation helpers


def _read_json(path: Path) -> Any:
    return read_json(path, CatalogError)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _list(value: Any, where: str, min_len: int = 1) -> list:
    if not isinstance(value, list) or len(value) < min_len:
        raise CatalogError(f"{where}: expected a list of at least {min_len} item(s), got {value!r:.80}")
    return value


def _unique(items: Iterable[tuple[str, str]], what: str) -> None:
    seen: dict[str, str] = {}
    for text, where in items:
        key = _norm(text)
        if key in seen:
            raise CatalogError(f"{where}: duplicate {what} (same as {seen[key]}): {text[:60]!r}")
        seen[key] = where


def read_questions(path: Path) -> tuple[Question, ...]:
    if not path.is_file():
        raise CatalogError(f"{path}: file not found")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CatalogError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise CatalogError(f"{path}:{n}: expected an object with 'question' and 'id'")
        text = _text(obj.get("question"), f"{path}:{n}: field 'question'")
        qid = obj.get("id", len(out))
        if not isinstance(qid, int):
            raise CatalogError(f"{path}:{n}: field 'id' must be an integer, got {qid!r}")
        out.append(Question(qid, text))
    if not out:
        raise CatalogError(f"{path}: no questions (the file is empty)")
    _unique(((q.text, f"{path} id {q.id}") for q in out), "question")
    if len({q.id for q in out}) != len(out):
        raise CatalogError(f"{path}: duplicate question ids")
    return tuple(out)


def _roles_from(path: Path) -> list[Role]:
    data = _list(_read_json(path), str(path))
    roles = []
    for i, obj in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(obj, dict):
            raise CatalogError(f"{where}: expected an object")
        name = _text(obj.get("name"), f"{where}.name")
        category = _text(obj.get("category"), f"{where}.category")
        if category not in CATEGORIES:
            raise CatalogError(f"{where}.category: {category!r} is not one of {', '.join(CATEGORIES)}")
        prompts = _list(obj.get("prompts"), f"{where}.prompts")
        roles.append(
            Role(
                name=name,
                category=category,
                description=_text(obj.get("description"), f"{where}.description"),
                prompts=tuple(_text(p, f"{where}.prompts[{j}]") for j, p in enumerate(prompts)),
            )
        )
    return roles


def _traits_from(path: Path) -> list[Trait]:
    data = _list(_read_json(path), str(path))
    traits = []
    for i, obj in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(obj, dict):
            raise CatalogError(f"{where}: expected an object")
        pairs = _list(obj.get("pairs"), f"{where}.pairs")
        parsed = []
        for j, p in enumerate(pairs):
            if not isinstance(p, dict):
                raise CatalogError(f"{where}.pairs[{j}]: expected an object with 'pos' and 'neg'")
            parsed.append(
                (_text(p.get("pos"), f"{where}.pairs[{j}].pos"), _text(p.get("neg"), f"{where}.pairs[{j}].neg"))
            )
        traits.append(
            Trait(
                name=_text(obj.get("name"), f"{where}.name"),
                description=_text(obj.get("description"), f"{where}.description"),
                pairs=tuple(parsed),
            )
        )
    return traits


def _check(catalog: Catalog) -> Catalog:
    _unique(((r.name, f"role {r.name}") for r in catalog.roles), "role name")
    _unique(((t.name, f"trait {t.name}") for t in catalog.traits), "trait name")
    _unique(((p, f"role {r.name} prompt {i}") for r in catalog.roles for i, p in enumerate(r.prompts)), "prompt")
    _unique(
        (
            (p, f"trait {t.name} pair {i}.{s}")
            for t in catalog.traits
            for i, pr in enumerate(t.pairs)
            for s, p in zip(("pos", "neg"), pr, strict=True)
        ),
        "trait prompt",
    )
    return catalog


def data_dir() -> Path:
    return Path(str(resources.files("persona_axis") / "data"))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Our layout (default: the packaged catalog) or, if detected, the reference layout."""
    root = Path(path) if path else data_dir()
    if not root.is_dir():
        raise CatalogError(f"{root}: catalog directory not found")
    if (root / "roles" / "instructions").is_dir() or (root / "extraction_questions.jsonl").is_file():
        return load_reference_catalog(root)
    role_files = sorted((root / "roles").glob("*.json"))
    if not role_files:
        raise CatalogError(f"{root / 'roles'}: no role files (*.json)")
    roles = [r for f in role_files for r in _roles_from(f)]
    traits = [t for f in sorted((root / "traits").glob("*.json")) for t in _traits_from(f)]
    questions = read_questions(root / "questions.jsonl")
    return _check(Catalog(tuple(roles), tuple(traits), questions, DEFAULT_PROMPTS, str(root)))


def load_reference_catalog(root: str | Path) -> Catalog:
    """The reference repository's layout (see shared METHOD.md section 5)."""
    root = Path(root)
    role_dir = root / "roles" / "instructions"
    if not role_dir.is_dir():
        raise CatalogError(f"{role_dir}: directory not found (expected the reference layout)")
    roles = []
    defaults: tuple[str | None, ...] = DEFAULT_PROMPTS
    for f in sorted(role_dir.glob("*.json")):
        obj = _read_json(f)
        if not isinstance(obj, dict):
            raise CatalogError(f"{f}: expected an object with 'instruction'")
        instr = _list(obj.get("instruction"), f"{f}: field 'instruction'")
        prompts = tuple(
            _text(p.get("pos") if isinstance(p, dict) else None, f"{f}: field 'instruction[{i}].pos'")
            for i, p in enumerate(instr)
        )
        if f.stem == "default":
            defaults = (None, *prompts)
            continue
        rubric = obj.get("eval_prompt") or ""
        if rubric and ("{question}" not in rubric or "{answer}" not in rubric):
            raise CatalogError(f"{f}: field 'eval_prompt' must contain {{question}} and {{answer}}")
        desc = obj.get("description") or f"The character '{f.stem.replace('_', ' ')}'."
        roles.append(Role(f.stem, obj.get("category", "reference"), desc, prompts, rubric))
    traits = []
    trait_dir = root / "traits" / "instructions"
    for f in sorted(trait_dir.glob("*.json")) if trait_dir.is_dir() else []:
        obj = _read_json(f)
        instr = _list(obj.get("instruction") if isinstance(obj, dict) else None, f"{f}: field 'instruction'")
        pairs = []
        for i, p in enumerate(instr):
            if not isinstance(p, dict):
                raise CatalogError(f"{f}: field 'instruction[{i}]' must be an object with 'pos' and 'neg'")
            pairs.append(
                (
                    _text(p.get("pos"), f"{f}: field 'instruction[{i}].pos'"),
                    _text(p.get("neg"), f"{f}: field 'instruction[{i}].neg'"),
                )
            )
        rubric = obj.get("eval_prompt") or ""
        traits.append(Trait(f.stem, obj.get("description") or f"The trait '{f.stem}'.", tuple(pairs), rubric))
    questions = read_questions(root / "extraction_questions.jsonl")
    cat = Catalog(tuple(roles), tuple(traits), questions, defaults, str(root))
    # reference roles carry no category; accept them but still check uniqueness
    return _check(cat)

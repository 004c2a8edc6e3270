"""The packaged catalog and both loaders."""

from __future__ import annotations

import json
import re

import pytest

from persona_axis.catalog import CATEGORIES, load_catalog, load_reference_catalog
from persona_axis.errors import CatalogError


def _norm(s):
    return re.sub(r"\s+", " ", s.strip().lower())


def test_packaged_catalog_counts_uniqueness_and_categories():
    cat = load_catalog()
    assert len(cat.roles) >= 275 and len(cat.questions) >= 240 and len(cat.traits) >= 240
    assert {r.category for r in cat.roles} == set(CATEGORIES)
    for r in cat.roles:
        assert len(r.prompts) == 5 and all(p.strip() for p in r.prompts) and r.description.strip()
        assert "{question}" in r.rubric and "{answer}" in r.rubric and r.description in r.rubric
    for t in cat.traits:
        assert len(t.pairs) == 5 and all(p and n and p != n for p, n in t.pairs)
    prompts = [_norm(p) for r in cat.roles for p in r.prompts]
    assert len(prompts) == len(set(prompts))
    questions = [_norm(q.text) for q in cat.questions]
    assert len(questions) == len(set(questions))
    trait_prompts = [_norm(x) for t in cat.traits for pair in t.pairs for x in pair]
    assert len(trait_prompts) == len(set(trait_prompts))
    assert len({r.name for r in cat.roles}) == len(cat.roles)


def test_defaults_fill_the_model_name_and_include_no_system_prompt():
    defaults = load_catalog().defaults_for("TestModel-1B")
    assert defaults[0] is None and "You are TestModel-1B." in defaults and len(defaults) == 5


def test_subset_is_deterministic_and_stratified():
    cat = load_catalog()
    a = cat.subset(roles=14, prompts=2, questions=5, traits=3, seed=7)
    b = cat.subset(roles=14, prompts=2, questions=5, traits=3, seed=7)
    assert a == b and a.content_hash() == b.content_hash()
    assert {r.category for r in a.roles} == set(CATEGORIES)
    assert all(len(r.prompts) == 2 for r in a.roles) and len(a.questions) == 5 and len(a.traits) == 3
    assert cat.subset(roles=14, seed=8).roles != a.roles


def _reference_tree(tmp_path):
    (tmp_path / "roles" / "instructions").mkdir(parents=True)
    (tmp_path / "traits" / "instructions").mkdir(parents=True)
    role = {
        "instruction": [{"pos": f"You are a pirate, take {i}."} for i in range(5)],
        "questions": [],
        "eval_prompt": "Is this a pirate? {question} {answer}",
    }
    (tmp_path / "roles" / "instructions" / "pirate.json").write_text(json.dumps(role))
    (tmp_path / "roles" / "instructions" / "default.json").write_text(
        json.dumps({"instruction": [{"pos": "You are an AI assistant."}]})
    )
    trait = {
        "instruction": [{"pos": f"Be calm {i}.", "neg": f"Be frantic {i}."} for i in range(5)],
        "questions": [],
        "eval_prompt": "Calm? {question} {answer}",
    }
    (tmp_path / "traits" / "instructions" / "calm.json").write_text(json.dumps(trait))
    (tmp_path / "extraction_questions.jsonl").write_text(
        "\n".join(json.dumps({"question": q, "id": i}) for i, q in enumerate(["What is home?", "Why work?"]))
    )
    return tmp_path


def test_reference_layout_loads(tmp_path):
    root = _reference_tree(tmp_path)
    cat = load_catalog(root)
    assert [r.name for r in cat.roles] == ["pirate"]
    assert cat.roles[0].rubric.startswith("Is this a pirate?")
    assert cat.default_prompts == (None, "You are an AI assistant.")
    assert cat.traits[0].pairs[2] == ("Be calm 2.", "Be frantic 2.")
    assert [q.text for q in cat.questions] == ["What is home?", "Why work?"]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda r: (r / "extraction_questions.jsonl").write_text(""), "extraction_questions.jsonl: no questions"),
        (lambda r: (r / "roles/instructions/pirate.json").write_text("{bad json"), "pirate.json: not valid JSON"),
        (
            lambda r: (r / "roles/instructions/pirate.json").write_text('{"instruction": [{"neg": "x"}]}'),
            "pirate.json: field 'instruction\\[0\\].pos'",
        ),
        (lambda r: (r / "extraction_questions.jsonl").write_text('{"id": 1}'), "jsonl:1: field 'question'"),
    ],
)
def test_malformed_reference_files_name_file_and_field(tmp_path, mutate, match):
    root = _reference_tree(tmp_path)
    mutate(root)
    with pytest.raises(CatalogError, match=match):
        load_reference_catalog(root)


def test_malformed_packaged_layout_names_file_and_field(tmp_path):
    (tmp_path / "roles").mkdir()
    (tmp_path / "roles" / "x.json").write_text(
        json.dumps([{"name": "a", "category": "wizardry", "description": "d", "prompts": ["p"]}])
    )
    (tmp_path / "questions.jsonl").write_text(json.dumps({"id": 0, "question": "q?"}))
    with pytest.raises(CatalogError, match="x.json\\[0\\].category: 'wizardry' is not one of"):
        load_catalog(tmp_path)


def test_unknown_role_name():
    with pytest.raises(CatalogError, match="unknown role 'archmage'"):
        load_catalog().subset(roles=["analyst", "archmage"])

"""Vectors and the persona space on synthetic activations with a known structure."""

from __future__ import annotations

import pickle

import pytest
import torch

from persona_axis.errors import ArtifactError
from persona_axis.space import PersonaSpace, VectorSettings, compute_vectors, import_reference_axis

L, D = 3, 16


def synthetic(n_roles=12, per=4, seed=0):
    """Roles spread mostly along one direction; the default sits at its far end."""
    g = torch.Generator().manual_seed(seed)
    main = torch.zeros(D)
    main[0] = 1.0
    records, acts, scores = [], [], []
    for r in range(n_roles):
        centre = main * (r - n_roles / 2) * 2 + torch.randn(D, generator=g) * 0.3
        for q in range(per):
            records.append(
                {"kind": "role", "entity": f"role{r}", "prompt_index": 0, "question_id": q, "uid": f"r{r}{q}"}
            )
            acts.append(centre.expand(L, D) + torch.randn(L, D, generator=g) * 0.05)
            scores.append(3 if q < per - 1 or r % 2 else 1)
    for q in range(per):
        records.append({"kind": "default", "entity": "default", "prompt_index": 0, "question_id": q, "uid": f"d{q}"})
        acts.append(main.expand(L, D) * n_roles + torch.randn(L, D, generator=g) * 0.05)
        scores.append(None)
    for q in range(per):
        for side, shift, sc in (("trait_pos", 1.0, 90), ("trait_neg", -1.0, 10)):
            records.append({"kind": side, "entity": "calm", "prompt_index": 0, "question_id": q, "uid": f"{side}{q}"})
            acts.append(main.expand(L, D) * shift + torch.randn(L, D, generator=g) * 0.05)
            scores.append(sc)
    return records, torch.stack(acts), scores


def test_vectors_follow_the_scores_and_settings():
    records, acts, scores = synthetic()
    v = compute_vectors(records, acts, scores, {}, VectorSettings(min_role_count=3))
    assert len(v.role_names) == 12 and v.role_counts[0] == 3  # the score-1 response is left out
    idx = [i for i, r in enumerate(records) if r["entity"] == "role0" and scores[i] == 3]
    torch.testing.assert_close(v.role[0], acts[idx].mean(0))
    assert v.trait_names == ["calm"] and v.trait_pairs_kept == [4]
    strict = compute_vectors(records, acts, scores, {}, VectorSettings(min_role_count=4))
    assert len(strict.role_names) == 6 and "role0" in strict.dropped_roles
    gapped = compute_vectors(
        records, acts, [s if s not in (90,) else 40 for s in scores], {}, VectorSettings(min_role_count=3)
    )
    assert gapped.trait_names == []  # 40 - 10 < 50: every pair dropped


def test_axis_pca_and_rankings():
    records, acts, scores = synthetic()
    v = compute_vectors(records, acts, scores, {}, VectorSettings(min_role_count=3))
    space = PersonaSpace.fit(v, {"model_fingerprint": "abc"}, n_components=5)
    torch.testing.assert_close(space.axis, v.default - v.role.mean(0))
    assert all(c > 0.95 for c in space.cos_axis_pc1())  # aligned sign, one dominant direction
    assert space.dims_for(0.7) == [1, 1, 1]
    assert (space.pca_explained.sum(dim=1) <= 1.0001).all()
    ranking = space.role_ranking(1)
    assert ranking[0][0] == "role11" and ranking[-1][0] == "role0"
    assert space.default_pc1_distance()[0] == 0.0  # beyond the end of the role range
    assert space.trait_ranking(0)[0][0] == "calm" and space.trait_ranking(0)[0][1] > 0.9


def test_save_load_round_trip_and_model_checks(tmp_path):
    records, acts, scores = synthetic()
    space = PersonaSpace.fit(
        compute_vectors(records, acts, scores, {}, VectorSettings(min_role_count=3)),
        {"model_fingerprint": "abc", "model_name": "m"},
    )
    space.save(tmp_path / "s")
    back = PersonaSpace.load(tmp_path / "s")
    torch.testing.assert_close(back.axis, space.axis)
    assert back.role_names == space.role_names and back.meta["model_fingerprint"] == "abc"

    class FakeLM:
        name, hidden_size, n_layers, fingerprint = "other", D, L, "xyz"

    with pytest.raises(ArtifactError, match="fingerprint abc"):
        back.check_model(FakeLM())
    back.check_model(FakeLM(), force=True)
    FakeLM.hidden_size = D + 1
    with pytest.raises(ArtifactError, match="made for another model"):
        back.check_model(FakeLM(), force=True)
    with pytest.raises(ArtifactError, match="not a persona space"):
        PersonaSpace.load(tmp_path)


def test_compare_spaces():
    a = PersonaSpace.fit(compute_vectors(*synthetic(seed=0)[:2], synthetic(seed=0)[2], {}, VectorSettings(3)))
    b = PersonaSpace.fit(compute_vectors(*synthetic(seed=1)[:2], synthetic(seed=1)[2], {}, VectorSettings(3)))
    cmp = a.compare(b, layer=1)
    assert cmp["pc_cosines"][0] > 0.95 and cmp["axis_cosine"] > 0.95
    assert sorted(cmp["role_cosines"].values())[6] > 0.8  # roles near the centre are mostly noise


class Evil:
    def __reduce__(self):
        return (print, ("this should never run",))


def test_reference_axis_import_is_weights_only(tmp_path):
    good = tmp_path / "axis.pt"
    torch.save(torch.randn(4, D), good)
    assert import_reference_axis(good).shape == (4, D)
    bad = tmp_path / "evil.pt"
    with bad.open("wb") as fh:
        pickle.dump({"axis": Evil()}, fh)
    with pytest.raises(ArtifactError, match="refused or unreadable"):
        import_reference_axis(bad)

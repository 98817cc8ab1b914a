"""Tests of models/input_versions.py through the engine: checkpoints record the versions of the inputs their model
reads, and a checkpoint trained on other inputs than this code feeds is refused on reload, on resume and as
pretrained encoders; a current one loads."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

import models.input_versions as iv
from models.encoders import load_pretrained
from models.engine import TrainConfig, fit, load_checkpoint, save_checkpoint, seed_everything

_EMB = dict(input_kind="embeddings", vision_emb_dim=8, audio_emb_dim=8, text_emb_dim=8, audio_tokens=3,
            text_tokens=4)


def _on_sentence(tiny):
    """MCAT on embeddings with one text token: it reads the transcript's sentence vector."""
    seed_everything(0)
    return tiny.model("mcat", text_emb_groups=1, **_EMB)


def _legacy_file(path, model, **fields):
    """A checkpoint as vidpipe wrote them before inputs were versioned: format 1, model name, config, weights and
    extra, saved by torch.save (``fields`` added to the payload as they are)."""
    payload = {"format": 1, "model_name": model.model_name, "config": model.config_dict(),
               "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
               "extra": {"pack": "p"}, **fields}
    torch.save(payload, path)
    return path


def test_a_current_checkpoint_records_its_input_versions_and_loads(tmp_path, tiny):
    model = _on_sentence(tiny).eval()
    assert "text_sentence_emb" in model.inputs and "text_emb" not in model.inputs
    path = save_checkpoint(tmp_path / "m.pt", model, {"pack": "p"})
    payload = torch.load(path, weights_only=True)
    assert payload["input_versions"] == {k: iv.INPUT_VERSIONS[k] for k in model.inputs}
    loaded, extra = load_checkpoint(path)
    batch = tiny.batch(model, b=2)
    assert extra == {"pack": "p"} and torch.equal(loaded(batch).pred, model(batch).pred)


def test_an_unversioned_checkpoint_that_read_a_changed_key_is_refused_saying_what_changed(tmp_path, tiny):
    model = _on_sentence(tiny)
    path = _legacy_file(tmp_path / "old.pt", model)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "old.pt" in msg and "records no input versions" in msg and "retrain" in msg
    assert "text_sentence_emb" in msg and "mean of its token vectors" in msg
    # the same file with its versions recorded as this code's loads: the refusal is about the record, not the weights
    ok = _legacy_file(tmp_path / "ok.pt", model, input_versions=dict(iv.recorded_versions(model.inputs)))
    assert load_checkpoint(ok)[0].inputs == model.inputs


def test_an_unversioned_checkpoint_whose_keys_are_unchanged_loads(tmp_path, tiny):
    model = tiny.model("mcat", text_emb_groups=2, **_EMB).eval()  # token groups: reads text_emb, unchanged since
    assert "text_emb" in model.inputs and "text_sentence_emb" not in model.inputs
    loaded, _ = load_checkpoint(_legacy_file(tmp_path / "old.pt", model))
    batch = tiny.batch(model, b=2)
    assert torch.equal(loaded(batch).pred, model(batch).pred)


def test_input_versions_that_are_not_a_mapping_are_refused(tmp_path, tiny):
    model = tiny.model("van", modalities=("graph", "meta"))
    path = _legacy_file(tmp_path / "odd.pt", model, input_versions=[1, 2])
    with pytest.raises(ValueError, match=r"odd.pt.*input_versions=\[1, 2\]; expected a mapping"):
        load_checkpoint(path)


def test_a_checkpoint_that_read_other_keys_is_refused(tmp_path, tiny):
    model = _on_sentence(tiny)
    read = {k: 0 for k in model.inputs if k != "text_sentence_emb"} | {"text_emb": 0}  # the token mean's key
    path = _legacy_file(tmp_path / "keys.pt", model, input_versions=read)
    with pytest.raises(ValueError, match=r"trained on inputs .*'text_emb'.* reads .*'text_sentence_emb'.*retrain"):
        load_checkpoint(path)


def test_an_older_or_newer_input_version_is_refused(tmp_path, tiny, monkeypatch):
    model = tiny.model("van", modalities=("graph", "meta"))
    path = save_checkpoint(tmp_path / "m.pt", model)
    monkeypatch.setattr(iv, "INPUT_VERSIONS", {**iv.INPUT_VERSIONS, "graph": 1})
    monkeypatch.setattr(iv, "INPUT_CHANGES", {**iv.INPUT_CHANGES, ("graph", 1): "the GAT embedding is unit norm"})
    with pytest.raises(ValueError, match=r"versions \{'graph': 0\}.*at \{'graph': 1\} \(graph@1: the GAT embedding "
                                         r"is unit norm\); retrain"):
        load_checkpoint(path)
    newer = save_checkpoint(tmp_path / "newer.pt", model)  # written at graph@1
    monkeypatch.setattr(iv, "INPUT_VERSIONS", {**iv.INPUT_VERSIONS, "graph": 0})
    with pytest.raises(ValueError, match="newer vidpipe"):
        load_checkpoint(newer)


def test_a_key_without_a_version_cannot_be_saved(tmp_path, tiny, monkeypatch):
    model = tiny.model("van", modalities=("graph", "meta"))
    monkeypatch.setattr(iv, "INPUT_VERSIONS", {k: v for k, v in iv.INPUT_VERSIONS.items() if k != "meta"})
    with pytest.raises(ValueError, match=r"inputs \['meta'\] have no version"):
        save_checkpoint(tmp_path / "m.pt", model)


def test_every_registered_model_reads_versioned_keys():
    from models.registry import create_model, list_models

    for name in list_models():
        assert set(create_model(name).inputs) <= set(iv.INPUT_VERSIONS), name


def _samples(n: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    graph, meta = torch.randn(n, 6, generator=g), torch.randn(n, 3, generator=g)
    return [{"graph": graph[i], "meta": meta[i], "target": torch.sigmoid(graph[i, :1])} for i in range(n)]


def test_a_last_checkpoint_at_an_older_input_version_is_not_resumed(tmp_path, tiny, monkeypatch):
    cfg = TrainConfig(epochs=2, lr=3e-3, seed=7, top_k=0, device="cpu")
    loader = DataLoader(_samples(16), batch_size=8)
    seed_everything(0)
    model = tiny.model("van", modalities=("graph", "meta"))
    fit(model, loader, loader, cfg, tmp_path)
    monkeypatch.setattr(iv, "INPUT_VERSIONS", {**iv.INPUT_VERSIONS, "graph": 1})  # last.pt read graph@0
    seed_everything(0)
    trained: list[dict] = []
    with pytest.warns(UserWarning, match=r"read inputs at versions \{'graph': 0\}.*training from scratch"):
        fit(tiny.model("van", modalities=("graph", "meta")), loader, loader, cfg, tmp_path, on_epoch=trained.append)
    assert [r["epoch"] for r in trained] == [1, 2]  # trained again; a resumed run would have had nothing left to do


def test_pretrained_encoders_from_an_unversioned_checkpoint_are_refused(tmp_path, tiny):
    src = _on_sentence(tiny)
    seed_everything(1)
    dst = tiny.model("mcat", text_emb_groups=1, **_EMB)
    with pytest.raises(ValueError, match="pretrained_path=.*old.pt.*records no input versions.*retrain"):
        load_pretrained(dst.encoders, _legacy_file(tmp_path / "old.pt", src))
    load_pretrained(dst.encoders, save_checkpoint(tmp_path / "new.pt", src))
    assert all(torch.equal(a, b) for a, b in zip(dst.encoders.state_dict().values(),
                                                  src.encoders.state_dict().values()))

"""Tests of models/fusion.py: weights over present modalities, the decision-level ensemble, SiMVC weights, VATT's
modality attention, late fusion reading only its modalities, and the epoch counter of staged models."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from models.base import TASKS
from models.engine import TrainConfig, fit
from models.fusion import FusionConfig, StagedFusionModel, gate, present_weights


def test_present_weights_softmax_over_present_and_uniform_fallback():
    scores = torch.tensor([0.0, 0.0, torch.log(torch.tensor(3.0))])
    present = torch.tensor([[True, True, True], [True, False, True], [False, False, False]])
    w = present_weights(scores, present)
    torch.testing.assert_close(w, torch.tensor([[0.2, 0.2, 0.6], [0.25, 0.0, 0.75], [0.2, 0.2, 0.6]]))


def test_gate_keeps_value_and_drops_gradient():
    p = torch.tensor(2.0, requires_grad=True)
    assert gate(p * 3, True).requires_grad and not gate(p * 3, False).requires_grad
    assert gate(p * 3, False).item() == 6.0


def test_decision_average_predicts_the_mean_of_present_members_and_trains_each_on_its_own(tiny):
    model = tiny.model("decision-average").eval()
    batch = tiny.batch(model, b=3)
    batch["audio_mask"] = torch.tensor([True, False, True])
    out = model(batch)
    member = torch.sigmoid(out.extras["member_logits"])  # (B, M, K)
    torch.testing.assert_close(out.pred[0], member[0].mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.pred[1], member[1, [0, 2]].mean(0), atol=1e-5, rtol=1e-5)  # audio missing
    # objective = mean of each member's own L1 on the items that have its modality
    y = batch["target"]
    own = [(member[:, 0] - y).abs().mean(), (member[[0, 2], 1] - y[[0, 2]]).abs().mean(), (member[:, 2] - y).abs().mean()]
    torch.testing.assert_close(out.loss, torch.stack(own).mean())


def test_simvc_weights_are_a_softmax_over_present_modalities(tiny):
    model = tiny.model("simvc").eval()
    with torch.no_grad():
        model.fusion_logits.copy_(torch.tensor([0.0, 1.0, 2.0]))
    batch = tiny.batch(model, b=2)
    batch["vision_mask"] = torch.tensor([[True] * 4, [False] * 4])
    w = model(batch).extras["fusion_weights"]
    torch.testing.assert_close(w[0], torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0))
    torch.testing.assert_close(w[1], torch.tensor([0.0, *torch.softmax(torch.tensor([1.0, 2.0]), 0).tolist()]))


def test_vatt_modality_attention_is_a_share_and_ignores_missing_modalities(tiny):
    model = tiny.model("vatt").eval()
    batch = tiny.batch(model, b=2)
    batch["text_mask"] = torch.tensor([True, False])
    att = model(batch).extras["modality_attention"]
    assert att.shape == (2, 3)
    torch.testing.assert_close(att.sum(1), torch.ones(2))
    assert att[1, 2] == 0 and att[0, 2] > 0


def test_avm_is_bimodal_and_late_fusion_concatenates_rows(tiny):
    avm = tiny.model("avm").eval()
    batch = tiny.batch(tiny.model("late-fusion"), b=2)  # has text too: avm must not read it
    ref = avm(batch).pred
    torch.testing.assert_close(avm({**batch, "text": batch["text"] + 5}).pred, ref)
    tri = tiny.model("late-fusion").eval()
    assert tri.head[1][0].in_features == 3 * 16 and avm.head[1][0].in_features == 2 * 16
    assert tri(batch).extras["modality_embeddings"].shape == (2, 3, 16)


def test_config_rejects_bad_modalities_and_widths(tiny):
    with pytest.raises(ValueError, match="modalities=.*'smell'"):
        FusionConfig(modalities=("vision", "smell"))
    with pytest.raises(ValueError, match="modalities="):
        FusionConfig(modalities=("audio", "audio"))
    with pytest.raises(ValueError, match="hidden=0"):
        FusionConfig(hidden=0)
    with pytest.raises(ValueError, match="layers=0"):
        tiny.model("vatt", layers=0)


class _Counting(StagedFusionModel):
    def __init__(self) -> None:
        super().__init__(FusionConfig(task="popularity", modalities=("text",), dim=8, heads=2, vocab_size=3,
                                      modality_layers=0, vector_tokens=1))
        self.head = torch.nn.Linear(8, 1)
        self.seen: list[int] = []

    def compute_logits(self, batch):
        self.seen.append(self.epoch)
        return self.head(self.embed(batch)[0][:, 0]), {}


def test_staged_model_counts_training_epochs_through_the_engine():
    torch.manual_seed(0)
    model = _Counting()
    rows = [{"text": torch.rand(3), "target": torch.rand(1)} for _ in range(8)]
    train, val = DataLoader(rows, batch_size=4), DataLoader(rows, batch_size=8)
    result = fit(model, train, val, TrainConfig(epochs=3, device="cpu", patience_no_improve=3, patience_rising=3))
    # per epoch: 2 training steps, then eval() completes the epoch, then 1 validation step
    assert model.seen == [0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert model.epoch == result.best_epoch  # the count is a buffer: fit restored the best epoch's
    batch = {"text": torch.rand(2, 3), "target": torch.rand(2, 1)}
    model.train()
    with torch.no_grad():
        model(batch)  # no gradient: not a training step
    model.eval()
    model.train()
    model.eval()  # a training phase without steps is not an epoch
    assert model.epoch == result.best_epoch
    model.train()
    model(batch)
    model.eval()
    assert model.epoch == result.best_epoch + 1


def test_every_fusion_head_outputs_k(tiny):
    for name in ("late-fusion", "decision-average", "simvc", "vatt"):
        for task, spec in TASKS.items():
            model = tiny.model(name, task=task).eval()
            assert model(tiny.batch(model, b=2)).pred.shape == (2, spec.k)

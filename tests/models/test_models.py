"""Every registered model (parametrised over the registry): shapes, gradients, tasks, masks, variants, extras."""

from __future__ import annotations

import pytest
import torch

from models import TASKS, create_model, list_models
from models.base import ModelOutput

MODELS = list_models()


def test_headline_models_are_registered():
    assert {"sec2sec", "sec2sec-sa-sa", "sec2sec-audio", "sec2sec-vision", "sec2sec-attn", "mcat", "van"} <= set(MODELS)
    assert create_model("sec2sec").task == "emotion"
    assert create_model("mcat").task == "personality"
    assert create_model("van").task == "popularity"


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_shapes_and_every_parameter_learns(name, tiny):
    model = tiny.model(name).train()
    batch = tiny.batch(model, b=3)
    out = model(batch)
    assert isinstance(out, ModelOutput)
    assert out.pred.shape == (3, TASKS[model.task].k)
    assert torch.all((out.pred >= 0) & (out.pred <= 1))
    assert out.loss.shape == () and torch.isfinite(out.loss)
    out.loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert no_grad == []
    assert model(tiny.batch(model, b=2, target=False)).loss is None


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_override_sets_output_width(name, task, tiny):
    model = tiny.model(name, task=task).eval()
    out = model(tiny.batch(model, b=2))
    assert out.pred.shape == (2, TASKS[task].k) and torch.isfinite(out.loss)


@pytest.mark.parametrize("name", MODELS)
def test_all_masked_modality_is_finite_and_trains(name, tiny):
    model = tiny.model(name).train()
    for key in model.inputs:
        batch = tiny.batch(model, b=3)
        batch[f"{key}_mask"] = torch.zeros_like(batch[f"{key}_mask"])
        batch[key] = torch.zeros_like(batch[key])
        out = model(batch)
        assert torch.isfinite(out.pred).all() and torch.isfinite(out.loss)
        out.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad()


@pytest.mark.parametrize("name", MODELS)
def test_masked_content_carries_no_signal(name, tiny):
    """Whatever sits under a False mask, predictions do not change."""
    torch.manual_seed(0)  # an unlucky draw can leave a tiny branch dead behind its ReLU (MTAF's meta: 2 seeds in 200)
    model = tiny.model(name).eval()
    batch = tiny.batch(model, b=2)
    ref = model(batch).pred
    for key in model.inputs:
        changed = dict(batch)
        mask = batch[f"{key}_mask"].clone()
        mask[0] = False  # first item loses this modality (every segment / frame)
        if mask.dim() == 2:
            mask[1, -1] = False  # second item loses its last segment / frame
        changed[f"{key}_mask"] = mask
        base = model(changed).pred
        garbage = batch[key].clone()
        # the whole-clip MFCC (B, n_mfcc, F) is masked per frame, along its last axis
        garbage[(~mask)[:, None].expand_as(garbage) if key == "audio" else ~mask] = 1e3
        changed[key] = garbage
        torch.testing.assert_close(model(changed).pred, base)
        assert not torch.allclose(base, ref)  # the mask itself does matter


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("extra", [{"token_mode": "pooled"}, {"norm": "batch"}])
def test_paper_faithful_pooled_mode_and_batch_norm(name, extra, tiny):
    model = tiny.model(name, **extra).train()
    out = model(tiny.batch(model, b=3))
    assert out.pred.shape == (3, TASKS[model.task].k) and torch.isfinite(out.loss)
    out.loss.backward()


@pytest.mark.parametrize("name", MODELS)
def test_eval_is_deterministic_and_batch_independent(name, tiny):
    model = tiny.model(name).eval()
    batch = tiny.batch(model, b=3)
    a, b = model(batch).pred, model(batch).pred
    assert torch.equal(a, b)
    single = {k: v[:1] for k, v in batch.items()}
    torch.testing.assert_close(model(single).pred, a[:1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_bad_inputs_raise_value_error(name, tiny):
    model = tiny.model(name)
    batch = tiny.batch(model, b=2)
    key = model.inputs[0]
    with pytest.raises(ValueError, match=f"batch is missing input key.*{key}"):
        model({k: v for k, v in batch.items() if k != key})
    with pytest.raises(ValueError, match=rf"batch\['{key}'\] has shape"):
        model({**batch, key: batch[key][..., :-1]})
    with pytest.raises(ValueError, match=r"batch\['target'\] has shape"):
        model({**batch, "target": batch["target"][:, :1].repeat(1, 7)})
    with pytest.raises(ValueError, match="unknown config field.*'no_such_field'"):
        create_model(name, no_such_field=1)


def test_van_modality_attention_rows_sum_to_one_and_modalities_are_configuration(tiny):
    model = tiny.model("van", modalities=("vision", "audio", "graph", "text", "meta")).eval()
    batch = tiny.batch(model, b=2)
    batch["audio_mask"] = torch.tensor([True, False])
    out = model(batch)
    att = out.extras["modality_attention"]
    assert att.shape == (2, 2, 5, 5)
    torch.testing.assert_close(att[0].sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(att[1, :, [0, 2, 3, 4]].sum(-1), torch.ones(2, 4))
    assert torch.all(att[1, :, :, 1] == 0)  # the missing modality gets no attention
    assert torch.all(att[1, :, 1] == 0)  # …and sends none
    assert out.extras["modality_embeddings"].shape == (2, 5, 16)


@pytest.mark.parametrize("name", ["sec2sec-attn", "sec2sec-attn-wang"])
def test_sec2sec_attention_variants_return_segment_weights(tiny, name):
    model = tiny.model(name).eval()
    batch = tiny.batch(model, b=2)
    batch["vision_seg_mask"] = torch.tensor([[True, True, False], [True, True, True]])
    batch["audio_seg_mask"] = torch.tensor([[True, False, False], [True, True, True]])
    w = model(batch).extras["segment_attention"]
    assert w.shape == (2, 3)
    torch.testing.assert_close(w.sum(1), torch.ones(2))
    assert w[0, 2] == 0  # a segment with neither frames nor audio gets no attention


def test_sec2sec_variants_read_their_modalities(tiny):
    assert tiny.model("sec2sec-audio").inputs == ("audio_seg",)
    assert tiny.model("sec2sec-vision").inputs == ("vision_seg",)
    assert tiny.model("sec2sec-sa-sa").config.second_layer == "sa"
    with pytest.raises(ValueError, match="second_layer='ca' needs both"):
        create_model("sec2sec", modalities=("audio",))
    assert tiny.model("sec2sec-attn").config.temporal == "attention-pool"
    assert tiny.model("sec2sec-attn-wang").config.temporal == "attention-lstm"
    with pytest.raises(ValueError, match="temporal='gru'"):
        create_model("sec2sec", temporal="gru")
    with pytest.raises(ValueError, match="attention_values='keys'"):
        create_model("sec2sec-attn", attention_values="keys")


def test_sec2sec_predicts_from_last_real_segment(tiny):
    """Padding segments after the last real one do not change the prediction."""
    model = tiny.model("sec2sec").eval()
    batch = tiny.batch(model, b=1)
    short = {k: v.clone() for k, v in batch.items()}
    for key in ("vision_seg", "audio_seg"):
        short[f"{key}_mask"][0, 2] = False
    base = model(short).pred
    short["vision_seg"][0, 2] = 0.77
    torch.testing.assert_close(model(short).pred, base)


def test_pretrained_encoders_load_from_a_local_checkpoint(tmp_path, tiny):
    from models.engine import save_checkpoint

    src = tiny.model("mcat")
    save_checkpoint(tmp_path / "src.pt", src)
    dst = tiny.model("mcat", pretrained_path=str(tmp_path / "src.pt"))
    for (k, a), b in zip(src.encoders.state_dict().items(), dst.encoders.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(FileNotFoundError, match="pretrained_path"):
        tiny.model("van", pretrained_path=str(tmp_path / "nope.pt"))

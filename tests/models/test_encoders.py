"""Tests of models/encoders.py: positional encodings, patches, tokenisers, modality table, pretrained loading."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from models.encoders import (
    ClipConfig,
    FrameCNN,
    MfccCNN,
    MfccTokenizer,
    PatchEncoder,
    VectorTokenizer,
    build_modality_encoder,
    hierarchical_positional_encoding,
    load_pretrained,
    patchify,
    pool_tokens,
    sinusoidal_encoding,
)
from models.registry import create_model, list_models


def test_sinusoidal_encoding_values():
    pe = sinusoidal_encoding(3, 4)
    assert pe.shape == (3, 4)
    expected_row1 = torch.tensor([math.sin(1), math.cos(1), math.sin(1 / 100), math.cos(1 / 100)])
    torch.testing.assert_close(pe[1], expected_row1)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert sinusoidal_encoding(2, 5).shape == (2, 5)  # odd width
    with pytest.raises(ValueError, match="n_positions"):
        sinusoidal_encoding(0, 4)


def test_hierarchical_pe_sum_is_the_paper_formula_and_symmetric():
    pe = hierarchical_positional_encoding(5, 4, 6, mode="sum")
    assert pe.shape == (5, 4, 6)
    s = sinusoidal_encoding(5, 6)
    torch.testing.assert_close(pe[3, 2], s[3] + s[2])
    torch.testing.assert_close(pe[0, 0], torch.tensor([0.0, 2.0, 0.0, 2.0, 0.0, 2.0]))
    torch.testing.assert_close(pe[1, 2], pe[2, 1])  # eq. 3.5's flaw: (frame 1, patch 2) == (frame 2, patch 1)


def test_hierarchical_pe_split_gives_distinct_codes():
    pe = hierarchical_positional_encoding(5, 4, 6)
    assert pe.shape == (5, 4, 6)
    s3 = sinusoidal_encoding(5, 3)
    torch.testing.assert_close(pe[3, 2], torch.cat([s3[3], s3[2]]))
    codes = pe.reshape(20, 6)
    assert torch.cdist(codes, codes).add(torch.eye(20)).min() > 1e-3  # all 20 (frame, patch) codes differ
    with pytest.raises(ValueError, match="mode"):
        hierarchical_positional_encoding(2, 2, 4, mode="product")


def test_patchify_order_and_content():
    frames = torch.arange(2 * 1 * 3 * 4 * 4, dtype=torch.float32).view(2, 1, 3, 4, 4)
    p = patchify(frames, 2)
    assert p.shape == (2, 1, 4, 12)
    torch.testing.assert_close(p[0, 0, 1], frames[0, 0, :, :2, 2:].reshape(-1))  # row-major: patch 1 = top-right
    with pytest.raises(ValueError, match="patch_size=3"):
        patchify(frames, 3)


@pytest.mark.parametrize("tokens,n", [("frames", 3), ("patches", 12)])
def test_patch_encoder_shapes(tokens, n):
    enc = PatchEncoder(frame_size=16, patch_size=8, n_frames=3, patch_dim=4, dim=8, tokens=tokens)
    mask = torch.tensor([[True, True, False]] * 2)
    out, m = enc(torch.rand(2, 3, 3, 16, 16), mask)
    assert out.shape == (2, n, 8) and m.shape == (2, n)
    assert m.sum().item() == 2 * (n // 3) * 2


def test_hierarchical_pe_changes_patch_encoder_output():
    torch.manual_seed(0)
    with_pe = PatchEncoder(frame_size=8, patch_size=4, n_frames=2, patch_dim=4, dim=8)
    torch.manual_seed(0)
    no_pe = PatchEncoder(frame_size=8, patch_size=4, n_frames=2, patch_dim=4, dim=8, hierarchical_pe="none")
    x, mask = torch.zeros(1, 2, 3, 8, 8), torch.ones(1, 2, dtype=torch.bool)
    a, b = with_pe(x, mask)[0], no_pe(x, mask)[0]
    assert torch.allclose(b[0, 0], b[0, 1])  # without PE identical frames give identical tokens
    assert not torch.allclose(a[0, 0], a[0, 1])  # with PE the frame position is visible


def test_mfcc_tokenizer_chunks_and_single_token():
    x, mask = torch.randn(2, 5, 10), torch.tensor([True, False])
    tok, m = MfccTokenizer(n_mfcc=5, n_frames=10, chunk=4, dim=8)(x, mask)
    assert tok.shape == (2, 3, 8) and m.tolist() == [[True] * 3, [False] * 3]  # 10 frames padded to 12
    one, m1 = MfccTokenizer(n_mfcc=5, n_frames=10, chunk=10, dim=8)(x, mask)
    assert one.shape == (2, 1, 8) and m1.shape == (2, 1)


def test_mfcc_tokenizer_masks_the_tokens_of_a_clips_padding():
    x, frames = torch.randn(2, 5, 10), torch.arange(10)[None] < torch.tensor([[5], [0]])  # 5 real frames; no audio
    tok, m = MfccTokenizer(n_mfcc=5, n_frames=10, chunk=4, dim=8)(x, frames)
    assert tok.shape == (2, 3, 8) and m.tolist() == [[True, True, False], [False] * 3]  # frame 4 opens chunk 1


@pytest.mark.parametrize("name", [n for n in list_models() if "audio" in create_model(n).inputs])
def test_more_clip_padding_leaves_every_whole_clip_audio_model_unchanged(tiny, name):
    """The same clips in a matrix of F frames and of F + 24 (more zero padding, masked per frame) give the same
    prediction from the same weights; the padding counted as audio (one flag per clip) changes it."""
    n_frames, extra = tiny.overrides(name)["mfcc_frames"], 24
    short, long = tiny.model(name), tiny.model(name, mfcc_frames=n_frames + extra)
    long.load_state_dict(short.state_dict())  # the clip length sets no parameter shape
    short.eval(), long.eval()
    batch = tiny.batch(short, 3, target=False)
    frames = torch.arange(n_frames)[None] < torch.tensor([[6], [n_frames], [0]])  # 6 real frames, all, no audio
    batch["audio"], batch["audio_mask"] = batch["audio"] * frames[:, None], frames
    padded = {**batch, "audio": F.pad(batch["audio"], (0, extra)), "audio_mask": F.pad(frames, (0, extra))}
    with torch.no_grad():
        pred = short(batch).pred
        torch.testing.assert_close(long(padded).pred, pred, atol=1e-5, rtol=1e-5)
        unmasked = long({**padded, "audio_mask": frames.any(dim=1)}).pred
    assert (unmasked[0] - pred[0]).abs().max() > 1e-4  # 6 real frames in 40: counted, the padding would weigh


def test_vector_tokenizer_and_cnns():
    tok, m = VectorTokenizer(in_dim=7, n_tokens=3, dim=8)(torch.rand(4, 7), torch.ones(4, dtype=torch.bool))
    assert tok.shape == (4, 3, 8) and m.shape == (4, 3)
    assert FrameCNN(8, grid=2, width=4)(torch.rand(5, 3, 16, 16)).shape == (5, 4, 8)
    assert MfccCNN(8, width=4)(torch.randn(5, 3, 8, 10)).shape == (5, 3, 8)


def test_pool_tokens_is_mask_aware_mean():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [7.0], [9.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    pooled, m = pool_tokens(x, mask)
    assert pooled.tolist() == [[[2.0]], [[0.0]]] and m.tolist() == [[True], [False]]


def test_modality_encoder_checks_shapes_and_pools():
    cfg = ClipConfig(dim=8, heads=2, n_frames=2, frame_size=8, patch_size=4, n_mfcc=3, mfcc_frames=6, vocab_size=5)
    enc = build_modality_encoder("audio", cfg)
    tok, m = enc({"audio": torch.randn(2, 3, 6)})
    assert tok.shape == (2, 1, 8) and m.all()  # mfcc_frames=6 < audio_chunk=16: one chunk
    with pytest.raises(ValueError, match=r"batch\['audio'\] has shape \(2, 3, 7\)"):
        enc({"audio": torch.randn(2, 3, 7)})
    with pytest.raises(ValueError, match="modality 'smell'"):
        build_modality_encoder("smell", cfg)
    pooled = build_modality_encoder("vision", ClipConfig(**{**cfg.__dict__, "token_mode": "pooled"}))
    tok, m = pooled({"vision": torch.rand(2, 2, 3, 8, 8), "vision_mask": torch.tensor([[True, False], [False, False]])})
    assert tok.shape == (2, 1, 8) and m.tolist() == [[True], [False]]


def test_load_pretrained(tmp_path):
    src, dst = VectorTokenizer(in_dim=3, n_tokens=2, dim=4), VectorTokenizer(in_dim=3, n_tokens=2, dim=4)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_pretrained(dst, tmp_path / "missing.pt")
    torch.save({"encoders." + k: v for k, v in src.state_dict().items()}, tmp_path / "enc.pt")
    load_pretrained(dst, tmp_path / "enc.pt")
    torch.testing.assert_close(dst.proj.weight, src.proj.weight)
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="no weights"):
        load_pretrained(dst, tmp_path / "foreign.pt")
    torch.save(VectorTokenizer(in_dim=5, n_tokens=2, dim=4).state_dict(), tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained(dst, tmp_path / "wrong.pt")


# ------------------------------------------------------------------------------------------ heads on embeddings
EMB = dict(input_kind="embeddings", vision_emb_dim=12, audio_emb_dim=10, text_emb_dim=6, audio_tokens=3,
           text_tokens=5)


def test_embedding_projection_is_linear_norm_plus_position():
    from models.encoders import EmbeddingProjection

    torch.manual_seed(0)
    proj = EmbeddingProjection(in_dim=5, dim=8, n_positions=4)
    x, mask = torch.randn(2, 4, 5), torch.tensor([[True, True, False, False], [True] * 4])
    tok, tmask = proj(x, mask)
    assert tok.shape == (2, 4, 8) and tmask is mask
    want = torch.nn.functional.layer_norm(x @ proj.proj.weight.T + proj.proj.bias, (8,), proj.norm.weight,
                                          proj.norm.bias) + sinusoidal_encoding(4, 8)
    torch.testing.assert_close(tok, want)
    with pytest.raises(ValueError, match="in_dim=0"):
        EmbeddingProjection(in_dim=0, dim=8, n_positions=4)


def test_pool_groups_is_a_mask_aware_mean_over_contiguous_runs():
    from models.encoders import pool_groups

    x = torch.arange(10, dtype=torch.float32).view(1, 5, 2)  # rows [0,1] [2,3] [4,5] [6,7] [8,9]
    mask = torch.tensor([[True, False, True, False, False]])
    pooled, m = pool_groups(x, mask, 3)  # k = 2: runs {0,1} {2,3} {4}
    assert pooled.tolist() == [[[0.0, 1.0], [4.0, 5.0], [0.0, 0.0]]] and m.tolist() == [[True, True, False]]
    pooled, m = pool_groups(x, torch.ones(1, 5, dtype=torch.bool), 2)  # k = 3: runs {0,1,2} {3,4}
    assert pooled.tolist() == [[[2.0, 3.0], [7.0, 8.0]]] and m.tolist() == [[True, True]]
    assert pool_groups(x, mask, 5)[0] is x
    with pytest.raises(ValueError, match="groups=0"):
        pool_groups(x, mask, 0)


def test_embedding_projection_pools_groups_before_projecting():
    from models.encoders import EmbeddingProjection, pool_groups

    torch.manual_seed(0)
    proj = EmbeddingProjection(in_dim=5, dim=8, n_positions=10, groups=3)  # k = 4: 3 tokens (4 + 4 + 2 vectors)
    x, mask = torch.randn(2, 10, 5), torch.ones(2, 10, dtype=torch.bool)
    mask[0, 4:] = False
    tok, tmask = proj(x, mask)
    assert tok.shape == (2, 3, 8) and tmask.tolist() == [[True, False, False], [True, True, True]]
    mean, _ = pool_groups(x, mask, 3)
    want = torch.nn.functional.layer_norm(mean @ proj.proj.weight.T + proj.proj.bias, (8,), proj.norm.weight,
                                          proj.norm.bias) + sinusoidal_encoding(3, 8)
    torch.testing.assert_close(tok, want)
    noisy = x.clone()
    noisy[0, 4:] = 1e3  # masked vectors do not reach the real token
    torch.testing.assert_close(proj(noisy, mask)[0][0, 0], tok[0, 0])


def test_clip_config_pools_embeddings_into_few_tokens_by_default():
    cfg = ClipConfig(dim=8, heads=2, n_frames=100, **{**EMB, "text_tokens": 64})
    vision, text = build_modality_encoder("vision", cfg), build_modality_encoder("text", cfg)
    tok, _ = vision({"vision_emb": torch.randn(2, 100, 12)})
    assert tok.shape == (2, 10, 8)  # 100 frame vectors → 10 tokens of 10 frames
    assert text.input_key == "text_sentence_emb"  # one sentence token: the stored sentence vector
    tok, mask = text({"text_sentence_emb": torch.randn(2, 6), "text_sentence_emb_mask": torch.tensor([True, False])})
    assert tok.shape == (2, 1, 8) and mask.tolist() == [[True], [False]]
    groups = build_modality_encoder("text", ClipConfig(dim=8, heads=2, **{**EMB, "text_tokens": 64,
                                                                         "text_emb_groups": 4}))
    assert groups.input_key == "text_emb"  # several tokens: pooled token vectors
    tok, mask = groups({"text_emb": torch.randn(2, 64, 6), "text_emb_mask": torch.arange(64).expand(2, 64) < 20})
    assert tok.shape == (2, 4, 8) and mask.tolist() == [[True, True, False, False]] * 2
    keep = ClipConfig(dim=8, heads=2, n_frames=100, vision_emb_groups=100, text_emb_groups=64, **EMB)
    assert build_modality_encoder("vision", keep)({"vision_emb": torch.randn(2, 100, 12)})[0].shape == (2, 100, 8)
    with pytest.raises(ValueError, match="text_emb_groups=0"):
        ClipConfig(text_emb_groups=0)


def test_one_text_token_is_a_projection_of_the_stored_sentence_vector_not_the_token_mean():
    from models.base import example_batch
    from models.registry import create_model

    torch.manual_seed(0)
    enc = build_modality_encoder("text", ClipConfig(dim=8, heads=2, **EMB))  # text_emb_groups=1 (default)
    sentence = torch.nn.functional.normalize(torch.randn(3, 6), dim=-1)
    tok, mask = enc({"text_sentence_emb": sentence, "text_sentence_emb_mask": torch.tensor([True, True, False])})
    proj = enc.net
    want = torch.nn.functional.layer_norm(sentence @ proj.proj.weight.T + proj.proj.bias, (8,), proj.norm.weight,
                                          proj.norm.bias)
    torch.testing.assert_close(tok[:2, 0], want[:2])  # the head's text token: LayerNorm(W s + b) of the sentence
    assert mask.tolist() == [[True], [True], [False]]
    zeroed = torch.nn.functional.layer_norm(proj.proj.bias, (8,), proj.norm.weight, proj.norm.bias)
    torch.testing.assert_close(tok[2, 0], zeroed)  # a masked sentence vector is zeroed: its values do not leak
    with pytest.raises(ValueError, match=r"text_sentence_emb_mask'\] has shape \(3, 1\); expected \(3,\)"):
        enc({"text_sentence_emb": sentence, "text_sentence_emb_mask": torch.ones(3, 1, dtype=torch.bool)})

    model = create_model("mcat", dim=8, heads=2, n_frames=4, **EMB)
    assert model.inputs == ("vision_emb", "audio_emb", "text_sentence_emb")  # the token vectors are not read
    model.eval()
    batch = example_batch(model, 2)
    other = {**batch, "text_sentence_emb": batch["text_sentence_emb"].flip(0)}  # only the sentence vectors change
    with torch.no_grad():
        assert not torch.allclose(model(batch).pred, model(other).pred)


def test_modality_encoder_reads_the_embedding_keys():
    cfg = ClipConfig(dim=8, heads=2, n_frames=4, **EMB)
    enc = build_modality_encoder("vision", cfg)
    assert enc.input_key == "vision_emb"
    tok, mask = enc({"vision_emb": torch.randn(2, 4, 12), "vision_emb_mask": torch.tensor([[1, 1, 0, 0]] * 2).bool()})
    assert tok.shape == (2, 4, 8) and mask.tolist() == [[True, True, False, False]] * 2
    assert build_modality_encoder("graph", cfg).input_key == "graph"  # vectors stay vectors
    with pytest.raises(ValueError, match=r"batch\['vision_emb'\] has shape \(2, 4, 11\); expected \(\*, 4, 12\)"):
        enc({"vision_emb": torch.randn(2, 4, 11)})
    with pytest.raises(ValueError, match="input_kind='pixels'"):
        ClipConfig(input_kind="pixels")


@pytest.mark.parametrize("name", ["sec2sec", "sec2sec-attn", "mcat", "van", "late-fusion", "mtaf", "vatt",
                                  "siamese", "simvc", "avm", "decision-average"])
def test_every_head_trains_on_embeddings_and_ignores_masked_vectors(tiny, name):
    fields = {f.name for f in dataclasses.fields(tiny.model(name).config)}
    model = tiny.model(name, **{k: v for k, v in EMB.items() if k in fields})
    assert not {"vision", "audio", "text", "vision_seg", "audio_seg"} & set(model.inputs), model.inputs
    assert any(k.endswith("_emb") for k in model.inputs), model.inputs
    model.eval()
    batch = tiny.batch(model, 3)
    out = model(batch)
    assert out.pred.shape == (3, model.spec.k) and torch.isfinite(out.loss)
    out.loss.backward()
    key = next(k for k in model.inputs if k.endswith("_emb"))
    masked = dict(batch)
    masked[f"{key}_mask"] = batch[f"{key}_mask"].clone()
    masked[f"{key}_mask"][:, -1] = False
    noisy = dict(masked)
    noisy[key] = batch[key].clone()
    noisy[key][:, -1] = 1e3  # a masked position's vector must not change the prediction
    with torch.no_grad():
        torch.testing.assert_close(model(masked).pred, model(noisy).pred)


def test_sec2sec_on_embeddings_keeps_its_coattention_lstm_and_head(tiny):
    raw = tiny.model("sec2sec")
    emb = tiny.model("sec2sec", input_kind="embeddings", vision_emb_dim=12, audio_emb_dim=10)
    assert emb.inputs == ("vision_seg_emb", "audio_seg_emb")
    shared = {k: v.shape for k, v in raw.state_dict().items() if not k.startswith("encoders.")}
    assert shared == {k: v.shape for k, v in emb.state_dict().items() if not k.startswith("encoders.")}
    assert sum(p.numel() for p in emb.encoders.parameters()) < sum(p.numel() for p in raw.encoders.parameters())
    b = tiny.batch(emb, 2)
    assert b["vision_seg_emb"].shape == (2, 3, 2, 12) and b["audio_seg_emb"].shape == (2, 3, 10)
    assert emb(b).pred.shape == (2, 2)


def test_pretrained_encoders_load_from_a_local_checkpoint(tmp_path, tiny):
    from models.engine import save_checkpoint

    src = tiny.model("mcat")
    save_checkpoint(tmp_path / "src.pt", src)
    dst = tiny.model("mcat", pretrained_path=str(tmp_path / "src.pt"))
    for (k, a), b in zip(src.encoders.state_dict().items(), dst.encoders.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(FileNotFoundError, match="pretrained_path"):
        tiny.model("van", pretrained_path=str(tmp_path / "nope.pt"))

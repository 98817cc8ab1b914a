"""features.embed: loading local checkpoints, preprocessing, digests, and the vectors each encoder produces."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from features import embed as E
from tests.embed_factory import (
    WORDS, run_shared, tiny_ast, tiny_bert, tiny_clap, tiny_clip_vision, tiny_glove, tiny_sentence_transformers,
    tiny_wav2vec2, tiny_whisper,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return {"clip": tiny_clip_vision(base / "clip"), "clip_vision": tiny_clip_vision(base / "cv", full_clip=False),
            "w2v": tiny_wav2vec2(base / "w2v"), "bert": tiny_bert(base / "bert"),
            "st": tiny_sentence_transformers(base / "st"), "glove": tiny_glove(base / "glove.txt")}


def _frames(n=5, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ digests / paths
def test_digest_follows_content_not_location(models, tmp_path):
    d = E.encoder_digest(models["clip"])
    copy = tmp_path / "copy"
    shutil.copytree(models["clip"], copy)
    assert E.encoder_digest(copy) == d
    (copy / ".cache").mkdir()
    (copy / ".cache" / "x.json").write_text("{}")  # hidden download caches are not part of the checkpoint
    assert E.encoder_digest(copy) == d
    pp = json.loads((copy / "preprocessor_config.json").read_text())
    pp["image_std"] = [0.5, 0.5, 0.5]
    (copy / "preprocessor_config.json").write_text(json.dumps(pp))
    assert E.encoder_digest(copy) != d  # preprocessing settings are part of the digest
    assert E.encoder_digest(models["glove"]) != E.encoder_digest(tiny_glove(tmp_path / "g.txt", seed=1))


def test_missing_or_wrong_paths_say_what_to_put_there(tmp_path, models):
    with pytest.raises(FileNotFoundError, match=r"vision_model='.*nope'.*never downloads.*image model directory"):
        E.VisionEncoder(tmp_path / "nope", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        E.VisionEncoder(tmp_path / "empty", device="cpu")
    with pytest.raises(ValueError, match="holds no weight or config files"):
        E.encoder_digest(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="text_model=.*GloVe"):
        E.TextEncoder(tmp_path / "nope.txt", device="cpu")
    with pytest.raises(ValueError, match="does not take images"):
        E.VisionEncoder(models["w2v"], device="cpu")
    with pytest.raises(ValueError, match="raw-waveform model"):
        E.AudioEncoder(models["clip_vision"], device="cpu")


# ------------------------------------------------------------------------------------------------ vision
def test_image_preprocessing_reads_the_processor_configs_as_written():
    clip = {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "size": {"shortest_edge": 224},
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
    p = E.image_preprocessing(clip, 224)
    assert (p.short_side, p.crop) == (224, 224) and p.mean[0] == 0.48145466 and p.rescale == pytest.approx(1 / 255)
    dino = {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "size": {"shortest_edge": 256}}
    assert (E.image_preprocessing(dino, 518).short_side, E.image_preprocessing(dino, 518).crop) == (256, 224)
    vit = {"do_resize": True, "size": {"height": 224, "width": 224}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    assert (E.image_preprocessing(vit, 224).short_side, E.image_preprocessing(vit, 224).crop) == (224, 224)
    resnet = {"crop_pct": 0.875, "do_resize": True, "size": {"shortest_edge": 224}}  # microsoft/resnet-50
    assert (E.image_preprocessing(resnet, None).short_side, E.image_preprocessing(resnet, None).crop) == (256, 224)
    old = {"size": 384, "crop_size": 384, "do_center_crop": True}  # older processors wrote plain ints
    assert E.image_preprocessing(old, None).crop == 384
    none = E.image_preprocessing({}, 32)  # no preprocessor_config.json: the model's image_size, mean/std 0.5
    assert (none.short_side, none.crop, none.mean, none.std) == (32, 32, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="image_std"):
        E.image_preprocessing({"image_std": [0, 1, 1]}, 32)


def test_vision_vectors_match_a_direct_forward_and_masked_frames_are_zero(models):
    import torch
    from transformers import CLIPVisionModelWithProjection

    enc = E.VisionEncoder(models["clip"], device="cpu", batch_size=2)
    assert enc.kind == "clip" and enc.dim == 16 and enc.patch_shape == (16, 32)  # 32²/8² patches, hidden 32
    frames, valid = _frames(5), np.array([True, True, False, True, True])
    vec, patches = enc.embed(frames, valid, patches=True)
    assert vec.shape == (5, 16) and vec.dtype == np.float32 and patches.shape == (5, 16, 32)
    assert patches.dtype == np.float16
    assert not vec[2].any() and not patches[2].any()
    ref = CLIPVisionModelWithProjection.from_pretrained(models["clip"], local_files_only=True).eval()
    mean, std = np.array(enc.preprocessing.mean), np.array(enc.preprocessing.std)
    x = ((frames[valid] / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
    with torch.no_grad():
        want = ref(pixel_values=torch.from_numpy(x)).image_embeds.numpy()
    np.testing.assert_allclose(vec[valid], want, atol=1e-4)  # batching (2 at a time) does not change the vectors
    with pytest.raises(ValueError, match=r"frames: expected uint8 \(N, 32, 32, 3\)"):
        enc.embed(_frames(2, size=16))


def test_vision_model_without_projection_uses_the_pooled_output(models):
    enc = E.VisionEncoder(models["clip_vision"], device="cpu")
    assert enc.kind == "clip_vision_model" and enc.dim == 32
    assert enc.embed(_frames(2))[0].shape == (2, 32)


# ------------------------------------------------------------------------------------------------ audio
def test_resample_and_segment_rule():
    y = np.sin(np.linspace(0, 2 * np.pi * 440, 44100 * 2)).astype(np.float32)
    r = E.resample(y, 44100, 16000)
    assert r.shape == (32000,) and r.dtype == np.float32
    assert E.resample(y, 16000, 16000) is not None and E.resample(y, 16000, 16000).shape == y.shape
    sr = 8000
    sig = np.concatenate([np.zeros(sr), 0.3 * np.random.default_rng(0).standard_normal(sr), 0.3 * np.ones(sr // 3)])
    # second 0 silent, second 1 sound, second 2 only a third of a second long, seconds 3.. absent
    assert E.segment_valid(sig.astype(np.float32), sr, 4).tolist() == [False, True, False, False]
    assert not E.segment_valid(None, sr, 3).any()


def test_audio_vectors_per_second_with_resampling_and_masks(models):
    enc = E.AudioEncoder(models["w2v"], device="cpu", batch_size=2)
    assert enc.sampling_rate == 16000 and enc.dim == 24
    rng = np.random.default_rng(1)
    y = (0.2 * rng.standard_normal(int(2.7 * 16000))).astype(np.float32)
    y[16000:32000] = 0.0  # a silent second
    vec, mask = enc.embed(y, 16000, 4)
    assert vec.shape == (4, 24) and mask.tolist() == [True, False, True, False]
    assert not vec[~mask].any() and np.abs(vec[mask]).sum(axis=1).min() > 0
    # from 44.1 kHz PCM (the audio stage's other rate): resampled first, close to the 16 kHz result
    y = (0.2 * rng.standard_normal(2 * 16000)).astype(np.float32)
    vec16, _ = enc.embed(y, 16000, 2)
    vec44, mask44 = enc.embed(E.resample(y, 16000, 44100), 44100, 2)
    assert mask44.tolist() == [True, True]
    cos = (vec44 * vec16).sum(axis=1) / np.linalg.norm(vec44, axis=1) / np.linalg.norm(vec16, axis=1)
    assert cos.min() > 0.95
    none_vec, none_mask = enc.embed(None, 16000, 3)
    assert none_vec.shape == (3, 24) and not none_mask.any()


# ------------------------------------------------------------------------------------------------ cross-video batches
def _counting(enc, sizes: list):
    """``enc`` with each forward's row count appended to ``sizes``."""

    def forward(x):
        sizes.append(len(x))
        return enc.forward(x)

    return dataclasses.replace(enc, forward=forward)


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_batches_across_videos_give_each_video_its_per_video_vectors(models, batch_size):
    """Frames of 20 videos of 1..20 rows (some masked) in shared batches: each video's vectors and patch tokens equal
    its own ``embed``; audio segments likewise; every forward but the last of a lane is full."""
    from features.batching import RowItem

    vision = E.VisionEncoder(models["clip"], device="cpu", batch_size=batch_size)
    audio = E.AudioEncoder(models["w2v"], device="cpu", batch_size=batch_size)
    rng = np.random.default_rng(batch_size)
    videos = {f"v{n}": (_frames(n, seed=n), rng.random(n) > 0.25) for n in range(1, 21)}
    clips = {f"a{n}": (0.2 * rng.standard_normal(int((n + 0.6) * 16000))).astype(np.float32) for n in range(1, 7)}
    items = [RowItem(key=k, rows=f, valid=v, lane="vision") for k, (f, v) in videos.items()]
    for k, y in clips.items():
        segs, mask = audio.segments(y, 16000, 6)
        items.append(RowItem(key=k, rows=segs, valid=mask, lane="audio"))
    rows = {"vision": [], "audio": []}
    lanes = {"vision": _counting(vision.rows(patches=True), rows["vision"]),
             "audio": _counting(audio.rows(), rows["audio"])}
    results = {r.key: r for r in run_shared(items[::2] + items[1::2], lanes, max_items=3, max_wait=30)}
    assert set(results) == {i.key for i in items} and all(r.error is None for r in results.values())
    for k, (frames, valid) in videos.items():
        vec, patches = vision.embed(frames, valid, patches=True)
        np.testing.assert_allclose(results[k].outputs[0], vec, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(results[k].outputs[1].astype(np.float32), patches.astype(np.float32),
                                   rtol=1e-2, atol=1e-2)  # float16 tokens
    for k, y in clips.items():
        vec, mask = audio.embed(y, 16000, 6)
        np.testing.assert_allclose(results[k].outputs[0], vec, rtol=1e-5, atol=1e-5)
    for lane, sizes in rows.items():
        assert all(s == batch_size for s in sizes[:-1]) and 1 <= sizes[-1] <= batch_size, (lane, sizes)
    assert sum(rows["vision"]) == sum(int(v.sum()) for _, v in videos.values())


def test_on_cpu_inputs_are_not_pinned_or_copied_and_autocast_is_off(models):
    import torch

    runner = E.VisionEncoder(models["clip"], device="cpu").runner
    x = np.ones((2, 3), np.float32)
    t = runner.to_device(x)
    assert t.device.type == "cpu" and not t.is_pinned() and np.shares_memory(t.numpy(), x)
    with runner.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32  # no bf16 on CPU


# ------------------------------------------------------------------------------------------------ text
def test_glove_reader_on_the_released_formats(tmp_path):
    # Stanford GloVe: "word v1 … vD", 5-decimal floats, LF; word2vec text: a "count dim" header line first
    p = tmp_path / "glove.6B.3d.txt"
    p.write_bytes(b"the 0.41800 0.24968 -0.41242\n, 0.013441 0.23682 -0.16899\n"
                  b"hello -0.1 0.2 0.3\nthe 9 9 9\n\n")
    index, vec = E.read_glove(p)
    assert list(index) == ["the", ",", "hello"] and vec.shape == (3, 3) and vec.dtype == np.float32
    np.testing.assert_allclose(vec[index["the"]], [0.418, 0.24968, -0.41242])  # the first occurrence wins
    w2v = tmp_path / "w2v.txt"
    w2v.write_bytes(b"2 2\nhi 1.0 2.0\r\nyo 3 4\r\n")  # CRLF line ends
    index, vec = E.read_glove(w2v)
    assert index == {"hi": 0, "yo": 1} and vec.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    # Common Crawl 840B has tokens with spaces: the last D fields are the vector
    cc = tmp_path / "cc.txt"
    cc.write_bytes(b"a 1 2\n. . . 3 4\n")
    assert list(E.read_glove(cc)[0]) == ["a", ". . ."]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a 1 2\nb 1 x\n")
    with pytest.raises(ValueError, match="line 2"):
        E.read_glove(bad)
    short = tmp_path / "short.txt"
    short.write_bytes(b"a 1 2 3\nb 1\n")
    with pytest.raises(ValueError, match="line 2: expected a word and 3 numbers"):
        E.read_glove(short)


def test_align_words_takes_the_midpoint_second():
    words = [["a", 0.1, 0.4], ["b", 0.9, 1.3], ["c", 2.9, 3.2], ["d", -1.0, -0.5], ["e", 5.0, 6.0]]
    assert E.align_words(words, 4).tolist() == [0, 1, 3, -1, -1]


@pytest.mark.parametrize("kind", ["bert", "st", "glove"])
def test_text_encoders_give_sentence_tokens_and_seconds(models, kind):
    enc = E.TextEncoder(models[kind], max_tokens=6, device="cpu", batch_size=2)
    words = [["hello", 0.1, 0.4], ["happy", 0.5, 0.8], ["world", 1.2, 1.6], ["music", 3.1, 3.4]]
    out = enc.embed(["hello happy world music", "", "zzzz qqqq", "very good video the a dance"],
                    [words, [], [], []], n_segments=4)
    d = enc.dim
    first = out[0]
    assert first["sentence"].shape == (d,) and first["tokens"].shape == (6, d) and first["per_second"].shape == (4, d)
    assert bool(first["sentence_valid"]) and first["per_second_mask"].tolist() == [True, True, False, True]
    assert not bool(out[1]["sentence_valid"]) and not out[1]["tokens_mask"].any() and not out[1]["sentence"].any()
    assert out[3]["tokens_mask"].all()  # truncated to max_tokens
    assert not out[3]["per_second_mask"].any()  # no timings, no seconds
    if kind == "glove":
        assert enc.dim == 6 and not bool(out[2]["sentence_valid"])  # no known word
        index, vectors = E.read_glove(models["glove"])
        np.testing.assert_allclose(first["per_second"][0], vectors[[index["hello"], index["happy"]]].mean(axis=0),
                                   rtol=1e-6)
        np.testing.assert_allclose(first["sentence"], vectors[[index[w] for w, *_ in words]].mean(axis=0), rtol=1e-6)
    else:
        assert enc.dim == 16 and bool(out[2]["sentence_valid"])  # [UNK] tokens still encode
    if kind == "st":
        assert enc.kind == "sentence-transformers" and np.linalg.norm(first["sentence"]) == pytest.approx(1.0)


def test_sentence_transformers_modules_are_read_not_guessed(tmp_path):
    p = tiny_sentence_transformers(tmp_path / "st", normalize=False)
    (p / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                             "pooling_mode_mean_tokens": False}))
    enc = E.TextEncoder(p, device="cpu")
    assert enc.pooling == "cls" and not enc.normalize
    mods = json.loads((p / "modules.json").read_text())
    mods.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (p / "modules.json").write_text(json.dumps(mods))
    with pytest.raises(ValueError, match="module 'sentence_transformers.models.Dense' is not supported"):
        E.TextEncoder(p, device="cpu")


def test_loaders_share_one_encoder_per_checkpoint_and_reload_new_weights(models, tmp_path):
    a = E.load_vision_encoder(models["clip"], device="cpu")
    assert E.load_vision_encoder(models["clip"], device="cpu") is a
    p = tiny_clip_vision(tmp_path / "c", seed=0)
    b = E.load_vision_encoder(p, device="cpu")
    shutil.rmtree(p)
    tiny_clip_vision(p, seed=5)
    c = E.load_vision_encoder(p, device="cpu")
    assert c is not b
    frames = _frames(1)
    assert not np.allclose(b.embed(frames)[0], c.embed(frames)[0])
    assert set(WORDS) <= set((models["bert"] / "vocab.txt").read_text().split())


@pytest.mark.parametrize("arch", ["vit", "dinov2", "resnet"])
def test_other_image_architectures_load_through_the_generic_path(tmp_path, arch):
    import torch
    import transformers as T

    torch.manual_seed(0)
    if arch == "vit":
        T.ViTModel(T.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               image_size=32, patch_size=8)).save_pretrained(tmp_path)
        want_dim, patches = 16, (16, 16)
    elif arch == "dinov2":
        T.Dinov2Model(T.Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                                     patch_size=8)).save_pretrained(tmp_path)
        want_dim, patches = 16, (16, 16)
    else:
        T.ResNetModel(T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])).save_pretrained(tmp_path)
        want_dim, patches = 16, None
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "size": {"shortest_edge": 36},
         "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}))
    enc = E.VisionEncoder(tmp_path, device="cpu")
    assert enc.dim == want_dim and enc.patch_shape == patches
    assert (enc.preprocessing.short_side, enc.preprocessing.crop) == (36, 32)
    vec, _ = enc.embed(_frames(3))
    assert vec.shape == (3, want_dim) and np.isfinite(vec).all()


@pytest.mark.parametrize("arch", ["hubert", "wavlm"])
def test_other_waveform_architectures_load(tmp_path, arch):
    import transformers as T

    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    model = T.HubertModel(T.HubertConfig(**small)) if arch == "hubert" else T.WavLMModel(T.WavLMConfig(**small))
    model.save_pretrained(tmp_path)
    enc = E.AudioEncoder(tmp_path, device="cpu")
    vec, mask = enc.embed((0.1 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32), 16000, 3)
    assert enc.dim == 16 and vec.shape == (3, 16) and mask.tolist() == [True, True, False]


# ------------------------------------------------------------------------------------ spectrogram audio encoders
def _clip(seconds: float, seed: int = 0, silent: tuple[int, ...] = (), sr: int = 16000) -> np.ndarray:
    """Noise at ``sr`` with the listed seconds silent."""
    y = (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)
    for s in silent:
        y[s * sr:(s + 1) * sr] = 0.0
    return y


def _reference(kind: str, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The vector of one second as the checkpoint's own classes compute it (feature extractor, then the model)."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    fe = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def vector(second: np.ndarray) -> np.ndarray:
        inputs = fe(second, sampling_rate=fe.sampling_rate, return_tensors="pt")
        with torch.no_grad():
            if kind == "clap":
                return model.get_audio_features(**inputs).pooler_output[0].numpy()
            return model(**inputs).pooler_output[0].numpy()

    return vector


@pytest.mark.parametrize("kind", ["ast", "clap"])
def test_ast_and_clap_embed_each_second_through_their_own_feature_extractor(tmp_path, kind):
    path = (tiny_ast if kind == "ast" else tiny_clap)(tmp_path / kind)
    enc = E.AudioEncoder(path, device="cpu", batch_size=2)
    want = {"ast": ("audio-spectrogram-transformer", 16), "clap": ("clap", 8)}[kind]  # AST: hidden; CLAP: projection
    assert (enc.kind, enc.dim, enc.sampling_rate, enc.row_seconds) == (*want, 16000, 1)
    y = _clip(3.7, silent=(1,))
    vec, mask = enc.embed(y, 16000, 5)
    assert vec.shape == (5, enc.dim) and vec.dtype == np.float32
    assert mask.tolist() == [True, False, True, True, False] and not vec[~mask].any()
    reference = _reference(kind, path)
    for s in np.flatnonzero(mask):  # batches of 2 give each second its own forward's vector
        second = y[s * 16000:(s + 1) * 16000]  # the last (0.7 s) zero-padded to a second, then as the extractor pads
        second = np.pad(second, (0, 16000 - second.size))
        np.testing.assert_allclose(vec[s], reference(second), atol=1e-5, err_msg=f"second {s}")
    if kind == "clap":  # the projected embedding is unit length
        np.testing.assert_allclose(np.linalg.norm(vec[mask], axis=1), 1.0, atol=1e-5)
    # from 44.1 kHz PCM: resampled to the extractor's rate first
    vec44, mask44 = enc.embed(E.resample(y, 16000, 44100), 44100, 5)
    both = mask & mask44  # the resampler's ringing can lift the silent second above the silence threshold
    assert both.sum() == 3
    cos = (vec44 * vec).sum(axis=1)[both] / np.linalg.norm(vec44[both], axis=1) / np.linalg.norm(vec[both], axis=1)
    assert cos.min() > 0.95


def test_whisper_pools_the_encoder_frames_of_each_second_of_its_windows(tmp_path):
    """Whisper's encoder runs once per window (4 s here, 30 s in the real checkpoints); each second's vector is the
    mean of its 50 encoder frames in that window's forward, masked seconds are zeros and a window without a valid
    second is not run."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    path = tiny_whisper(tmp_path / "whisper", chunk_length=4)
    enc = E.AudioEncoder(path, device="cpu", batch_size=2)
    assert (enc.kind, enc.sampling_rate, enc.row_seconds, enc.dim) == ("whisper", 16000, 4, 16)
    y = _clip(9.5, seed=2, silent=(5,))  # seconds 0-8 sound (5 silent), 9 half a second, 10-13 absent
    rows, mask = enc.segments(y, 16000, 14)
    assert rows.shape == (4, 64000) and mask.tolist() == [True] * 5 + [False] + [True] * 4 + [False] * 4
    assert enc.row_valid(mask).tolist() == [True, True, True, False]
    vec, mask2 = enc.embed(y, 16000, 14)
    assert vec.shape == (14, 16) and (mask2 == mask).all() and not vec[~mask].any()
    fe = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True).get_encoder().eval()
    for w in range(3):
        window = y[w * 64000:(w + 1) * 64000]  # the extractor pads the last one with zeros
        feats = fe(window, sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            frames = encoder(input_features=feats).last_hidden_state[0].numpy()  # (200, 16): 50 per second
        want = frames.reshape(4, 50, 16).mean(axis=1)
        for s in range(4 * w, min(4 * w + 4, 14)):
            if mask[s]:
                np.testing.assert_allclose(vec[s], want[s - 4 * w], atol=1e-5, err_msg=f"second {s}")
    with pytest.raises(ValueError, match=r"segments: expected float32 \(R, 64000\)"):
        enc.check_segments(np.zeros((2, 16000), np.float32))  # one-second rows are not its windows


@pytest.mark.parametrize("kind", ["ast", "whisper"])
def test_spectrogram_encoders_batch_across_videos_like_per_video_embedding(tmp_path, kind):
    from features.batching import RowItem

    enc = E.AudioEncoder((tiny_ast if kind == "ast" else tiny_whisper)(tmp_path / kind), device="cpu", batch_size=2)
    clips = {f"a{n}": _clip(n + 0.6, seed=n, silent=(n - 1,)) for n in range(1, 6)}
    items = []
    for k, y in clips.items():
        rows, mask = enc.segments(y, 16000, 6)
        items.append(RowItem(key=k, rows=rows, valid=enc.row_valid(mask), lane="audio", context=mask))
    results = {r.key: r for r in run_shared(items, {"audio": enc.rows()}, max_items=2)}
    assert all(r.error is None for r in results.values())
    for k, y in clips.items():
        want, mask = enc.embed(y, 16000, 6)
        got = E.audio_seconds(results[k].outputs[0], results[k].context)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=k)


def test_feature_extractor_settings_are_in_the_embed_audio_fingerprint(tmp_path):
    from features.extract_video import ExtractConfig

    path = tiny_ast(tmp_path / "ast")
    cfg = ExtractConfig(audio_model=str(path))
    params, vision = cfg.stage_params("embed_audio"), cfg.stage_params("embed_vision")
    y = _clip(2.0)
    before = E.AudioEncoder(path, device="cpu").embed(y, 16000, 2)[0]
    pp = json.loads((path / "preprocessor_config.json").read_text())
    pp["mean"] = pp["mean"] + 1.0  # AudioSet's statistics → another normalisation of the filterbanks
    (path / "preprocessor_config.json").write_text(json.dumps(pp, indent=2))
    assert cfg.stage_params("embed_audio") != params and cfg.stage_params("embed_vision") == vision
    after = E.load_audio_encoder(path, device="cpu").embed(y, 16000, 2)[0]  # the changed checkpoint is reloaded
    assert not np.allclose(after, before, atol=1e-4)


@pytest.mark.parametrize("speech", [False, True])
def test_ast_filterbank_implementation_is_in_the_embed_audio_fingerprint(tmp_path, monkeypatch, speech):
    """ASTFeatureExtractor computes torchaudio's Kaldi filterbanks when torchaudio is importable, else its NumPy ones:
    the switch it reads decides the embed_audio parameters of an AST checkpoint, and of no other model type."""
    from transformers import ASTFeatureExtractor
    from transformers.models.audio_spectrogram_transformer import feature_extraction_audio_spectrogram_transformer

    from features.extract_video import ExtractConfig

    ast, w2v = tiny_ast(tmp_path / "ast"), tiny_wav2vec2(tmp_path / "w2v")
    ast_cfg, w2v_cfg = ExtractConfig(audio_model=str(ast)), ExtractConfig(audio_model=str(w2v))
    monkeypatch.setattr(feature_extraction_audio_spectrogram_transformer, "is_speech_available", lambda: False)
    numpy_params, w2v_params = ast_cfg.stage_params("embed_audio"), w2v_cfg.stage_params("embed_audio")
    assert "ast_fbank" not in numpy_params  # the NumPy filterbank keeps the fingerprints it always had
    monkeypatch.setattr(feature_extraction_audio_spectrogram_transformer, "is_speech_available", lambda: speech)
    assert hasattr(ASTFeatureExtractor.from_pretrained(ast), "mel_filters") is not speech  # the extractor's branch
    got = ast_cfg.stage_params("embed_audio")
    assert got == (dict(numpy_params, ast_fbank="torchaudio") if speech else numpy_params)
    assert w2v_cfg.stage_params("embed_audio") == w2v_params


def test_checkpoints_that_are_not_frame_or_audio_encoders_are_refused(tmp_path, models):
    import transformers as T

    with pytest.raises(ValueError, match=r"audio_model='.*bert' has model_type 'bert' \(its model takes 'input_ids'\)"
                                         r".*expected an audio encoder directory.*AST, CLAP or Whisper"):
        E.AudioEncoder(models["bert"], device="cpu")
    with pytest.raises(ValueError, match=r"model_type 'clip_vision_model' \(its model takes 'pixel_values'\)"):
        E.AudioEncoder(models["clip_vision"], device="cpu")
    codec = tmp_path / "encodec"
    T.EncodecModel(T.EncodecConfig(num_filters=4, hidden_size=8, codebook_size=16, num_lstm_layers=1,
                                   upsampling_ratios=[2, 2], target_bandwidths=[1.5])).save_pretrained(codec)
    with pytest.raises(ValueError, match=r"model_type 'encodec' \(a model that generates or codes audio"):
        E.AudioEncoder(codec, device="cpu")  # takes input_values, as wav2vec 2.0 does
    video = tmp_path / "videomae"
    T.VideoMAEModel(T.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=16,
                                     num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
                    ).save_pretrained(video)
    with pytest.raises(ValueError, match=r"vision_model='.*videomae' is a 'videomae' video model.*expected an image "
                                         r"model that embeds one frame at a time"):
        E.VisionEncoder(video, device="cpu")
    ast = tiny_ast(tmp_path / "ast")
    (ast / "preprocessor_config.json").unlink()
    with pytest.raises(ValueError, match=r"'audio-spectrogram-transformer' checkpoint without a readable feature "
                                         r"extractor.*preprocessor_config.json"):
        E.AudioEncoder(ast, device="cpu")
    whisper = tiny_whisper(tmp_path / "whisper", chunk_length=4)
    from transformers import WhisperFeatureExtractor

    WhisperFeatureExtractor(feature_size=80, chunk_length=30).save_pretrained(whisper)  # another model's extractor
    with pytest.raises(ValueError, match=r"\(whisper\): one row of silence does not run through the model.*expected "
                                         r"the feature extractor saved with this checkpoint"):
        E.AudioEncoder(whisper, device="cpu")


# ------------------------------------------------------------------------------------------------------ face crops
def _box_detector(box):
    """A detector double that finds one face at ``box`` (x, y, w, h) in frames whose top-left pixel is not black."""
    return E.FaceDetector(name="stub", detect=lambda f: np.array([box], np.float32) if f[0, 0].any()
                          else np.zeros((0, 4), np.float32))


def test_face_crops_cut_the_largest_face_with_margin_and_mark_frames_without_one():
    frames = _frames(n=4, size=40)
    frames[1, 0, 0] = 0  # no face here
    valid = np.array([True, True, True, False])  # frame 3 was never decoded: not even searched
    two = E.FaceDetector(name="two", detect=lambda f: np.array([[0, 0, 4, 4], [10, 12, 8, 8]], np.float32)
                         if f[0, 0].any() else np.zeros((0, 4), np.float32))
    crops, found, boxes = E.face_crops(frames, valid, two, 16, margin=0.25)
    assert crops.shape == (4, 16, 16, 3) and crops.dtype == np.uint8
    assert found.tolist() == [True, False, True, False]
    # the 8×8 face at (10, 12) grows by 2 px a side: the 12×12 square at (8, 10), resized to 16
    import cv2
    np.testing.assert_array_equal(crops[0], cv2.resize(frames[0, 10:22, 8:20], (16, 16),
                                                       interpolation=cv2.INTER_LINEAR))
    np.testing.assert_allclose(boxes[0], [8 / 40, 10 / 40, 20 / 40, 22 / 40])
    assert not crops[1].any() and not crops[3].any() and np.isnan(boxes[[1, 3]]).all()
    # a face at the border: the square is shifted inside the frame, never padded
    crops, found, boxes = E.face_crops(frames[:1], valid[:1], _box_detector((34, 0, 6, 6)), 8, margin=0.5)
    np.testing.assert_allclose(boxes[0], [28 / 40, 0, 1, 12 / 40])
    with pytest.raises(ValueError, match=r"frames: expected uint8 \(N, H, W, 3\)"):
        E.face_crops(frames[..., 0], valid, two, 16)


def test_face_detector_files_load_through_their_suffix_and_say_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "_FACE_LOADERS", dict(E._FACE_LOADERS))  # the registration ends with the test

    def load_stub(path):
        box = json.loads(path.read_text())["box"]
        return _box_detector(box)

    E.register_face_detector(".facestub", load_stub)
    model = tmp_path / "detector.facestub"
    model.write_text(json.dumps({"box": [2, 2, 10, 10]}))
    det = E.load_face_detector(str(model))
    assert det.name == "stub" and det.detect(_frames(1, 16)[0]).tolist() == [[2, 2, 10, 10]]
    digest = E.face_detector_digest(str(model))
    model.write_text(json.dumps({"box": [3, 2, 10, 10]}))
    assert E.face_detector_digest(str(model)) != digest  # the detector's file is part of the stage fingerprint
    with pytest.raises(FileNotFoundError, match=r"vision_faces='.*nope.onnx'.*never downloads.*YuNet"):
        E.load_face_detector(str(tmp_path / "nope.onnx"))
    (tmp_path / "model.pkl").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"no face-detector loader for '\.pkl' files; expected one of .*'\.onnx'"):
        E.load_face_detector(str(tmp_path / "model.pkl"))
    (tmp_path / "broken.onnx").write_bytes(b"not a network")
    with pytest.raises(ValueError, match="broken.onnx"):
        E.load_face_detector(str(tmp_path / "broken.onnx"))
    with pytest.raises(ValueError, match="suffix='onnx'"):
        E.register_face_detector("onnx", load_stub)


def test_bundled_haar_cascade_finds_no_face_in_a_blank_frame_and_masks_it():
    det = E.load_face_detector("haar")  # the pinned OpenCV 4.x wheel ships the cascade
    assert det.name == f"cascade:{E.HAAR_CASCADE}"
    frames = np.full((2, 48, 48, 3), 128, np.uint8)
    crops, found, boxes = E.face_crops(frames, np.ones(2, bool), det, 16)
    assert not found.any() and not crops.any() and np.isnan(boxes).all()


def _portrait_path() -> str:
    """The portrait matplotlib ships (grace_hopper.jpg, 512×600): a real face that no test has to download."""
    from matplotlib import cbook

    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def test_a_local_cascade_file_loads_by_path_digests_by_content_and_finds_a_face(tmp_path):
    import cv2

    local = tmp_path / "mine" / E.HAAR_CASCADE
    local.parent.mkdir()
    shutil.copyfile(Path(cv2.data.haarcascades) / E.HAAR_CASCADE, local)
    det = E.load_face_detector(str(local))
    assert det.name == f"cascade:{E.HAAR_CASCADE}"
    assert E.face_detector_digest(str(local)) == E.face_detector_digest("haar")  # content and name, not folder
    photo = cv2.resize(cv2.cvtColor(cv2.imread(_portrait_path()), cv2.COLOR_BGR2RGB), (109, 128),
                       interpolation=cv2.INTER_AREA)
    faces = det.detect(photo)
    assert faces.shape == (1, 4), faces
    x, y, w, h = faces[0]  # the face sits in the upper middle of the portrait, about half its width
    np.testing.assert_allclose([(x + w / 2) / 109, (y + h / 2) / 128], [0.52, 0.36], atol=0.05)
    assert 0.35 < w / 109 < 0.6


def test_the_pinned_opencv_is_the_one_the_errors_tell_users_to_install():
    import tomllib

    deps = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["dependencies"]
    assert E.OPENCV_WITH_CASCADES in deps


def _opencv5(monkeypatch, tmp_path, *, contrib: bool) -> None:
    """This OpenCV as the 5.x wheels lay it out: ``cv2.data.haarcascades`` names a folder without cascade files, and
    ``cv2.CascadeClassifier`` exists only in opencv-contrib-python-headless."""
    import cv2

    monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path / "cv2-data"), raising=False)
    if not contrib:
        monkeypatch.delattr(cv2, "CascadeClassifier", raising=False)


@pytest.mark.parametrize("contrib", [False, True])
def test_an_opencv_without_cascades_is_refused_at_config_time_with_what_to_install(tmp_path, monkeypatch, contrib):
    from features.extract_video import ExtractConfig

    cascade = tmp_path / "faces.xml"
    if not contrib:
        cascade.write_bytes(b"<opencv_storage/>")
    _opencv5(monkeypatch, tmp_path, contrib=contrib)
    haar = (r"vision_faces='haar': this OpenCV \(.*\) ships no haarcascade_frontalface_default\.xml.*"
            r"pip install 'opencv-python-headless>=4\.8,<5'.*YuNet \.onnx.*cascade \.xml")
    with pytest.raises(ValueError, match=haar):
        E.load_face_detector("haar")
    # the stage's parameters are computed before any video is decoded: the flow and the CLI stop there
    with pytest.raises(ValueError, match=haar):
        ExtractConfig(vision_faces="haar").stage_params("embed_vision")
    if not contrib:  # a local cascade needs CascadeClassifier: 4.x, or contrib 5.x
        xml = (r"vision_faces='.*faces\.xml' is a Haar/LBP cascade, which OpenCV .* cannot run.*"
               r"pip install 'opencv-python-headless>=4\.8,<5'.*opencv-contrib-python-headless 5\.x.*YuNet \.onnx")
        with pytest.raises(ValueError, match=xml):
            ExtractConfig(vision_faces=str(cascade)).stage_params("embed_vision")
        with pytest.raises(ValueError, match=xml):
            E.load_face_detector(str(cascade))


def _photo_video(path: Path, face_seconds: int, blank_seconds: int) -> Path:
    """A video of the portrait matplotlib ships (grace_hopper.jpg, 512×600) scaled to 128×150: ``face_seconds`` of
    the photo, then ``blank_seconds`` of flat grey."""
    import subprocess

    total = face_seconds + blank_seconds
    vf = f"scale=128:150,drawbox=x=0:y=0:w=iw:h=ih:color=gray:t=fill:enable='gte(t,{face_seconds})',format=yuv420p"
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-loop", "1", "-framerate", "5",
                    "-i", _portrait_path(), "-t", str(total), "-vf", vf, "-c:v", "libx264", "-preset", "ultrafast",
                    "-crf", "12", str(path)], check=True, capture_output=True, timeout=60)
    return path


def test_embed_vision_with_the_bundled_cascade_embeds_the_face_and_masks_faceless_frames(tmp_path):
    from features.extract_video import ExtractConfig, extract_video

    video = _photo_video(tmp_path / "portrait.mp4", face_seconds=2, blank_seconds=1)
    clip = tiny_clip_vision(tmp_path / "clip", image_size=64, crop=64, short=64)
    row = {"video_id": "hopper", "source_path": str(video)}
    base = ExtractConfig(profiles=("per_second",), n_segments=3, asr="none", vision_model=str(clip))
    whole = extract_video(row, ["probe", "embed_vision"], base)["embed_vision"]
    out = extract_video(row, ["probe", "embed_vision"], base.model_copy(update={"vision_faces": "haar"}))
    ev = out["embed_vision"]
    assert ev.record["face_detector"] == f"cascade:{E.HAAR_CASCADE}", ev
    a, w = ev.arrays, whole.arrays
    assert w["per_second_valid"].tolist() == [True, True, True]
    assert a["per_second_valid"].tolist() == [True, True, False]  # the grey second has no face: masked
    assert not a["per_second"][2].any() and np.isnan(a["per_second_face_box"][2]).all()
    assert np.isnan(a["per_second_times"][2])
    np.testing.assert_array_equal(a["per_second_times"][:2], w["per_second_times"][:2])
    # faces are searched in the 128² centre square; the face in the photo is centred near (0.52, 0.34) of that
    # square and about 0.45 of its side wide, so its crop (+25 % margin a side) is about 0.7 wide
    box = a["per_second_face_box"][:2]
    np.testing.assert_allclose((box[:, :2] + box[:, 2:]) / 2, [[0.52, 0.34]] * 2, atol=0.04)
    np.testing.assert_allclose(box[:, 2] - box[:, 0], [0.7, 0.7], atol=0.08)
    assert (np.abs(a["per_second"][:2]).sum(axis=1) > 0).all()
    assert not np.allclose(a["per_second"][:2], w["per_second"][:2], atol=1e-4)  # the face, not the whole frame


# ==================================================================================================================
# Checkpoints as users have them on disk: sharded and dual-format Hugging Face directories, hub-cache snapshots and
# `hf download --local-dir` folders, processor configs saved by transformers 5, sentence-transformers layouts,
# GloVe / word2vec / fastText text files with their quirks. Each is loaded through the user path
# (VisionEncoder / AudioEncoder / TextEncoder / encoder_digest), and the digest covers exactly the files loaded.
# ==================================================================================================================
def _reads(monkeypatch) -> list:
    """Record which files encoder_digest actually reads (instead of taking a recorded or memoised sha256)."""
    read = []
    real = E._read_sha256

    def spy(path):
        read.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(E, "_read_sha256", spy)
    return read


def _perturb_safetensors(path: Path, key: str = "visual_projection.weight") -> None:
    """Double tensor ``key`` of a safetensors file, keeping its format metadata (as save_pretrained writes)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = fh.metadata()
    tensors[key] = tensors[key] * 2
    save_file(tensors, str(path), metadata=meta)


def test_sharded_safetensors_load_and_every_shard_is_in_the_digest(tmp_path, monkeypatch):
    whole = tiny_clip_vision(tmp_path / "whole", seed=3)
    sharded = tiny_clip_vision(tmp_path / "sharded", seed=3, max_shard_size="40KB")
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2 and not (sharded / "model.safetensors").exists()
    assert all((sharded / s).is_file() for s in shards)
    frames = _frames(2)
    want = E.VisionEncoder(whole, device="cpu").embed(frames)[0]
    np.testing.assert_allclose(E.VisionEncoder(sharded, device="cpu").embed(frames)[0], want, atol=1e-6)
    d = E.encoder_digest(sharded)
    read = _reads(monkeypatch)
    assert E.encoder_digest(sharded) == d and read == []  # re-planning: a stat per file, nothing read
    (sharded / "README.md").write_text("# notes\n")
    assert E.encoder_digest(sharded) == d
    owner = index["weight_map"]["visual_projection.weight"]
    _perturb_safetensors(sharded / owner)
    assert E.encoder_digest(sharded) != d and read == [owner]  # only the changed shard is read again
    assert not np.allclose(E.VisionEncoder(sharded, device="cpu").embed(frames)[0], want)  # and it is loaded
    (sharded / shards[-1]).unlink()
    with pytest.raises(FileNotFoundError, match=rf"vision_model='.*sharded'.*lists the shard '{shards[-1]}', which "
                                                 r"is missing.*expected every shard"):
        E.encoder_digest(sharded, arg="vision_model")
    with pytest.raises(FileNotFoundError, match=f"shard '{shards[-1]}'"):
        E.VisionEncoder(sharded, device="cpu")


def test_a_hub_snapshot_with_every_format_loads_safetensors_and_digests_only_them(tmp_path, monkeypatch):
    import torch
    from transformers import CLIPVisionModelWithProjection

    snap = tiny_clip_vision(tmp_path / "snap", seed=0)
    other = tiny_clip_vision(tmp_path / "other", seed=7)
    # what bert-base-uncased / openai/clip-* repos hold beside model.safetensors: the same weights in other formats
    state = CLIPVisionModelWithProjection.from_pretrained(other, local_files_only=True).state_dict()
    torch.save(state, snap / "pytorch_model.bin")  # different weights: proves which file is loaded
    (snap / "tf_model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    (snap / "flax_model.msgpack").write_bytes(b"\x80" + bytes(32))
    (snap / "onnx").mkdir()
    (snap / "onnx" / "model.onnx").write_bytes(b"\x08\x07" + bytes(32))
    (snap / "training_args.bin").write_bytes(b"PK" + bytes(16))
    (snap / "README.md").write_text("---\nlicense: mit\n---\n")
    frames = _frames(2)
    ref = tiny_clip_vision(tmp_path / "ref", seed=0)  # the same weights, safetensors only
    np.testing.assert_allclose(E.VisionEncoder(snap, device="cpu").embed(frames)[0],
                               E.VisionEncoder(ref, device="cpu").embed(frames)[0], atol=1e-6)
    (snap / "model.safetensors").rename(tmp_path / "aside.safetensors")
    bin_only = E.VisionEncoder(snap, device="cpu").embed(frames)[0]  # older snapshots: pytorch_model.bin only
    np.testing.assert_allclose(bin_only, E.VisionEncoder(other, device="cpu").embed(frames)[0], atol=1e-6)
    d_bin = E.encoder_digest(snap)
    (tmp_path / "aside.safetensors").rename(snap / "model.safetensors")
    read = _reads(monkeypatch)
    d = E.encoder_digest(snap)
    assert d != d_bin and "pytorch_model.bin" not in read and "tf_model.h5" not in read
    from features.extract_video import ExtractConfig

    cfg = ExtractConfig(vision_model=str(snap))
    params = cfg.stage_params("embed_vision")  # what embed_vision's fingerprint hashes
    for name in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "onnx/model.onnx", "training_args.bin",
                 "README.md"):
        (snap / name).write_bytes((snap / name).read_bytes() + b"\0")
    assert E.encoder_digest(snap) == d and cfg.stage_params("embed_vision") == params  # unread files: no change
    _perturb_safetensors(snap / "model.safetensors")
    assert E.encoder_digest(snap) != d and cfg.stage_params("embed_vision") != params
    tf_only = tmp_path / "tf-only"
    tf_only.mkdir()
    shutil.copy(snap / "config.json", tf_only)
    shutil.copy(snap / "tf_model.h5", tf_only)
    with pytest.raises(ValueError, match=r"vision_model='.*tf-only' holds no PyTorch weights: expected "
                                         r"model\.safetensors.*tf_model\.h5"):
        E.VisionEncoder(tf_only, device="cpu")


def test_hub_cache_and_local_dir_downloads_give_the_digest_without_reading_the_weights(tmp_path, monkeypatch):
    from tests.embed_factory import hub_cache_snapshot, local_dir_metadata

    plain = tiny_clip_vision(tmp_path / "plain", seed=4)
    (plain / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    want = E.encoder_digest(plain)
    snap = hub_cache_snapshot(plain, tmp_path / "hub")
    assert (snap / "model.safetensors").is_symlink()
    read = _reads(monkeypatch)
    assert E.encoder_digest(snap) == want  # same bytes, same digest, whichever way they arrived
    blob = (snap / "model.safetensors").resolve().name  # an LFS blob is named by its sha256: not read
    assert blob not in read and (snap / "config.json").resolve().name in read
    assert E.VisionEncoder(snap, device="cpu").dim == 16  # transformers follows the links
    local = tmp_path / "local"  # `hf download org/tiny --local-dir local`
    shutil.copytree(plain, local)
    local_dir_metadata(local, "model.safetensors")
    read.clear()
    assert E.encoder_digest(local) == want and "model.safetensors" not in read
    fresh = tmp_path / "local2"  # a file newer than its download record is read, as huggingface_hub does
    shutil.copytree(plain, fresh)
    local_dir_metadata(fresh, "model.safetensors", etag="0" * 64)
    st = (fresh / "model.safetensors").stat()
    import os
    os.utime(fresh / "model.safetensors", (st.st_atime, st.st_mtime + 10))
    read.clear()
    assert E.encoder_digest(fresh) == want and "model.safetensors" in read


def test_processor_configs_saved_by_transformers_5_are_read(tmp_path):
    """`Processor.save_pretrained` in transformers 5 writes one processor_config.json with the image processor /
    feature extractor nested in it, and no preprocessor_config.json."""
    from transformers import (BertTokenizerFast, CLIPImageProcessor, CLIPProcessor, Wav2Vec2CTCTokenizer,
                              Wav2Vec2FeatureExtractor, Wav2Vec2Processor)

    clip = tiny_clip_vision(tmp_path / "clip", seed=0)
    (clip / "preprocessor_config.json").unlink()
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    image = CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32},
                               image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6])
    CLIPProcessor(image_processor=image, tokenizer=BertTokenizerFast(str(tmp_path / "vocab.txt"))).save_pretrained(
        clip)
    assert not (clip / "preprocessor_config.json").exists()
    pp = E.VisionEncoder(clip, device="cpu").preprocessing
    assert (pp.short_side, pp.crop, pp.mean, pp.std) == (40, 32, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    d = E.encoder_digest(clip)
    cfg = json.loads((clip / "processor_config.json").read_text())
    cfg["image_processor"]["image_std"] = [0.5, 0.5, 0.5]
    (clip / "processor_config.json").write_text(json.dumps(cfg))
    assert E.encoder_digest(clip) != d
    w2v = tiny_wav2vec2(tmp_path / "w2v")
    (w2v / "preprocessor_config.json").unlink()
    (tmp_path / "vocab.json").write_text(json.dumps({"<pad>": 0, "<unk>": 1, "|": 2, "a": 3}))
    Wav2Vec2Processor(feature_extractor=Wav2Vec2FeatureExtractor(sampling_rate=8000, do_normalize=False),
                      tokenizer=Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))).save_pretrained(w2v)
    assert not (w2v / "preprocessor_config.json").exists()
    enc = E.AudioEncoder(w2v, device="cpu")
    assert enc.sampling_rate == 8000 and not enc.normalize
    assert E.processor_config(tmp_path / "nothing-here", "image") == {}
    with pytest.raises(ValueError, match="kind='video'"):
        E.processor_config(clip, "video")


def _bert_hidden(model_dir: Path, words: list[str], max_length: int = 64) -> np.ndarray:
    """The token vectors (n, D) BertModel gives for ``words`` (a direct forward, the reference)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    enc = tok([words], is_split_into_words=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return AutoModel.from_pretrained(model_dir, local_files_only=True).eval()(**enc).last_hidden_state[0].numpy()


@pytest.mark.parametrize("pooling", ["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"])
def test_sentence_transformers_pooling_modes_match_their_definitions(tmp_path, pooling):
    st = tiny_sentence_transformers(tmp_path / "st", pooling=pooling, normalize=pooling == "cls")
    enc = E.TextEncoder(st, device="cpu")
    assert enc.kind == "sentence-transformers" and enc.pooling == pooling
    words = ["very", "good", "video", "the", "music"]
    h = _bert_hidden(st, words)  # [CLS] very good video the music [SEP]
    n = len(h)
    want = {"cls": h[0], "max": h.max(0), "mean": h.mean(0), "mean_sqrt_len_tokens": h.sum(0) / np.sqrt(n),
            "weightedmean": (h * np.arange(1, n + 1)[:, None]).sum(0) / (n * (n + 1) / 2),
            "lasttoken": h[-1]}[pooling]
    if pooling == "cls":  # 2_Normalize follows
        want = want / np.linalg.norm(want)
    out = enc.embed([" ".join(words)])[0]
    np.testing.assert_allclose(out["sentence"], want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["tokens"][:n], h, rtol=1e-4, atol=1e-5)


def test_sentence_transformers_subfolder_layout_config_and_digest(tmp_path):
    st = tiny_sentence_transformers(tmp_path / "st", transformer_dir="0_Transformer", max_seq_length=4,
                                    do_lower_case=True, pooling="cls", normalize=False)
    assert not (st / "config.json").exists() and (st / "0_Transformer" / "config.json").is_file()
    enc = E.TextEncoder(st, max_tokens=8, device="cpu")
    assert enc.limit == 4 and enc.lowercase
    out = enc.embed(["VERY Good video music dance"])[0]
    assert out["tokens_mask"].sum() == 4  # max_seq_length: [CLS] very good [SEP]
    h = _bert_hidden(st / "0_Transformer", ["very", "good", "video", "music", "dance"], max_length=4)
    np.testing.assert_allclose(out["sentence"], h[0], rtol=1e-4, atol=1e-5)
    d = E.encoder_digest(st, arg="text_model")
    for unused in ("README.md", "config_sentence_transformers.json"):
        (st / unused).write_text((st / unused).read_text() + "\n")
    (st / "onnx").mkdir()
    (st / "onnx" / "model.onnx").write_bytes(bytes(8))  # exports the hub repos carry
    assert E.encoder_digest(st, arg="text_model") == d
    (st / "0_Transformer" / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8}))
    d2 = E.encoder_digest(st, arg="text_model")
    assert d2 != d
    cfg = json.loads((st / "1_Pooling" / "config.json").read_text())
    (st / "1_Pooling" / "config.json").write_text(json.dumps({**cfg, "pooling_mode_mean_tokens": True}))
    assert E.encoder_digest(st, arg="text_model") != d2
    with pytest.raises(ValueError, match=r"text_model: '.*1_Pooling/config.json' sets the pooling modes "
                                         r"\['cls', 'mean'\]; expected exactly one"):
        E.TextEncoder(st, device="cpu")
    (st / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 16,
                                                             "pooling_mode": "lasttoken"}))
    assert E.TextEncoder(st, device="cpu").pooling == "lasttoken"  # the string form Pooling(**config) accepts


def _glove_line(word: str, vec) -> bytes:
    return (word + " " + " ".join(f"{v:.5f}" for v in vec)).encode("utf-8") + b"\n"


def test_glove_840b_quirks_and_rare_malformed_lines(tmp_path):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(1500)]
    vecs = rng.standard_normal((len(words), 3)).astype(np.float32)
    special = {",": 0, ". . .": 1, "at name@domain.com": 2, "\u00a0": 3, "caf\u00e9": 4}
    body = [_glove_line(w, vecs[i]) for i, w in enumerate(words)]
    head = [_glove_line(w, vecs[i] + 10) for w, i in special.items()]
    bad = [b"broken 0.1 0.2\n"]  # one malformed line (too few numbers) among 1,507
    p = tmp_path / "glove.840B.3d.txt"
    p.write_bytes(b"".join(head + body[:750] + bad + body[750:] + [b"w7\xe2\x80 1 2 3\n"]))
    with pytest.warns(UserWarning, match=r"text_model='.*glove.840B.3d.txt': skipped 1 malformed line\(s\) of "
                                         r"1507 .*line 756: expected a word and 3 numbers, got 3 fields"):
        index, vectors = E.read_glove(p)
    assert len(index) == 1506 and "broken" not in index
    for w, i in special.items():
        np.testing.assert_allclose(vectors[index[w]], vecs[i] + 10, atol=1e-5)
    assert "w7\ufffd" in index  # a word cut mid-character (word2vec.c) is kept, its bytes replaced
    np.testing.assert_allclose(vectors[index["w1499"]], vecs[1499], atol=1e-5)
    with pytest.warns(UserWarning, match="skipped 1 malformed"):
        enc = E.TextEncoder(p, device="cpu")
    np.testing.assert_allclose(enc.embed(["caf\u00e9, hmm"])[0]["sentence"], vecs[4] + 10, atol=1e-5)
    not_vectors = tmp_path / "notes.txt"
    not_vectors.write_text("".join(f"line {i} of prose\n" for i in range(50)))
    with pytest.raises(ValueError, match=r"text_model='.*notes.txt' is not a GloVe / word2vec text file .*line 1"):
        E.read_glove(not_vectors)


def test_vec_header_gzip_and_zip_files(tmp_path):
    # fastText .vec: "count dim" header, a trailing space after the last number, CRLF from a Windows copy
    vec = tmp_path / "wiki.tiny.vec"
    vec.write_bytes(b"3 2\nhello 0.1 0.2 \r\nworld 0.3 0.4 \r\n</s> 0.5 0.6 \r\n")
    index, vectors = E.read_glove(vec)
    assert list(index) == ["hello", "world", "</s>"]
    np.testing.assert_allclose(vectors, [[.1, .2], [.3, .4], [.5, .6]], rtol=1e-6)
    plain = tiny_glove(tmp_path / "g.txt", header=True)
    gz = tiny_glove(tmp_path / "cc.tiny.vec.gz", header=True, gz=True)
    a, b = E.read_glove(plain), E.read_glove(gz)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    enc = E.TextEncoder(gz, device="cpu")
    assert enc.kind == "glove" and enc.dim == 6
    d = E.encoder_digest(gz, arg="text_model")
    tiny_glove(gz, header=True, gz=True, seed=1)
    assert E.encoder_digest(gz, arg="text_model") != d
    import zipfile
    z = tmp_path / "glove.6B.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(plain, "glove.6B.50d.txt")
    with pytest.raises(ValueError, match=r"text_model='.*glove.6B.zip' is a zip archive; expected the text file "
                                         r"inside it"):
        E.TextEncoder(z, device="cpu")

"""Tiny randomly initialised encoders saved in the real on-disk formats, for the embedding tests.

Each builder writes what a user's downloaded checkpoint holds — ``config.json`` + ``model.safetensors`` from
``save_pretrained``, a ``preprocessor_config.json`` with the keys Hugging Face processors write, a fast tokenizer's
``tokenizer.json`` + ``vocab.txt``, a sentence-transformers ``modules.json`` tree, a GloVe text file — so the code
under test loads them exactly as it would load a real checkpoint. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = ["hello", "world", "happy", "sad", "video", "music", "dance", "talk", "good", "bad", "very", "the", "a"]


def tiny_clip_vision(path: Path, *, seed: int = 0, image_size: int = 32, crop: int | None = None,
                     short: int | None = None, full_clip: bool = True, max_shard_size: str | None = None) -> Path:
    """A CLIP checkpoint (full ``CLIPModel`` by default, as openai/clip-* ship) with a 32² input; with
    ``max_shard_size`` (e.g. "40KB") saved sharded, as large checkpoints are: ``model.safetensors.index.json`` +
    ``model-0000i-of-0000n.safetensors``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=image_size, patch_size=8, projection_dim=16)
    if full_clip:
        cfg = CLIPConfig(vision_config=vision, text_config=dict(hidden_size=32, intermediate_size=64,
                                                                num_hidden_layers=1, num_attention_heads=4,
                                                                vocab_size=100, max_position_embeddings=16),
                         projection_dim=16)
        model = CLIPModel(cfg)
    else:
        model = CLIPVisionModel(CLIPVisionConfig(**vision))
    model.save_pretrained(path, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    crop = crop or image_size
    pp = {"crop_size": {"height": crop, "width": crop}, "do_center_crop": True, "do_normalize": True,
          "do_rescale": True, "do_resize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
          "image_processor_type": "CLIPImageProcessor", "image_std": [0.26862954, 0.26130258, 0.27577711],
          "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": short or image_size}}
    (path / "preprocessor_config.json").write_text(json.dumps(pp, indent=2))
    return path


def tiny_wav2vec2(path: Path, *, seed: int = 0, sampling_rate: int = 16000, hidden: int = 24) -> Path:
    """A wav2vec 2.0 checkpoint with a small conv front end (one output frame per 320 samples, as the real one)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         conv_dim=(16, 16, 16, 16, 16, 16, 16), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                         conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2, vocab_size=32)
    Wav2Vec2Model(cfg).save_pretrained(path)
    pp = {"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
          "padding_side": "right", "padding_value": 0.0, "return_attention_mask": False,
          "sampling_rate": sampling_rate}
    (path / "preprocessor_config.json").write_text(json.dumps(pp, indent=2))
    return path


def tiny_ast(path: Path, *, seed: int = 0, num_mel_bins: int = 32, max_length: int = 100,
             mean: float = -4.2677393, std: float = 4.5689974) -> Path:
    """An Audio Spectrogram Transformer (AST) checkpoint as MIT/ast-finetuned-audioset-* ships it — the
    ``ASTForAudioClassification`` weights and the ``ASTFeatureExtractor``'s ``preprocessor_config.json`` — with 32
    mel bins and 100 frames (the real one: 128 × 1,024). The extractor's mean / std are AudioSet's."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(seed)
    cfg = ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                    num_mel_bins=num_mel_bins, max_length=max_length, frequency_stride=8, time_stride=8,
                    num_labels=3)
    model = ASTForAudioClassification(cfg)
    with torch.no_grad():  # its init leaves the [CLS] / position embeddings and biases zero: make every weight count
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    model.save_pretrained(path)
    ASTFeatureExtractor(num_mel_bins=num_mel_bins, max_length=max_length, mean=mean, std=std).save_pretrained(path)
    return path


def tiny_whisper(path: Path, *, seed: int = 0, chunk_length: int = 4) -> Path:
    """A Whisper checkpoint as openai/whisper-* ship it — ``WhisperForConditionalGeneration`` weights,
    ``generation_config.json`` and the ``WhisperFeatureExtractor``'s ``preprocessor_config.json`` — with 80 mel bins
    and a ``chunk_length``-second window (the real one: 30 s; 100 mel frames and 50 encoder frames per second in
    both)."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    cfg = WhisperConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                        max_source_positions=50 * chunk_length, max_target_positions=16, vocab_size=64,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperForConditionalGeneration(cfg).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80, chunk_length=chunk_length).save_pretrained(path)
    return path


def tiny_clap(path: Path, *, seed: int = 0, sampling_rate: int = 16000) -> Path:
    """A CLAP checkpoint as laion/clap-htsat-unfused ships it — the full ``ClapModel`` (text and audio towers) and
    a ``ClapFeatureExtractor`` with ``truncation="rand_trunc"`` and ``padding="repeatpad"`` — with 16 mel bins and a
    1-s ``max_length_s`` (the real one: 64 bins, 10 s at 48 kHz)."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    torch.manual_seed(seed)
    audio = dict(spec_size=64, patch_size=4, num_mel_bins=16, window_size=4, depths=[1, 1], num_attention_heads=[2, 2],
                 patch_embeds_hidden_size=8, hidden_size=16, projection_dim=8, enable_fusion=False)
    text = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=64,
                max_position_embeddings=32, projection_dim=8)
    ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=8)).save_pretrained(path)
    ClapFeatureExtractor(feature_size=16, sampling_rate=sampling_rate, hop_length=sampling_rate // 100,
                         fft_window_size=400, frequency_max=sampling_rate // 2, max_length_s=1, truncation="rand_trunc",
                         padding="repeatpad").save_pretrained(path)
    return path


def _bert_tokenizer(path: Path) -> None:
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True).save_pretrained(path)


def tiny_bert(path: Path, *, seed: int = 0, hidden: int = 16) -> Path:
    """A BERT checkpoint with a fast WordPiece tokenizer over :data:`WORDS`."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    _bert_tokenizer(path)
    BertModel(BertConfig(vocab_size=5 + len(WORDS), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(path)
    return path


POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


def tiny_sentence_transformers(path: Path, *, seed: int = 0, normalize: bool = True, pooling: str = "mean",
                               transformer_dir: str = "", max_seq_length: int = 64,
                               do_lower_case: bool = False) -> Path:
    """A sentence-transformers directory in its documented layout: ``modules.json``; the Transformer's files (at
    the root as v2+ save it, or in ``transformer_dir`` such as ``0_Transformer`` as older releases did) with
    ``sentence_bert_config.json``; ``1_Pooling/config.json`` with every ``pooling_mode_*`` flag (v3 writes all
    six and ``include_prompt``); ``2_Normalize`` (an empty folder); ``config_sentence_transformers.json`` and a
    README as the hub repos have."""
    model_dir = path / transformer_dir if transformer_dir else path
    tiny_bert(model_dir, seed=seed)
    modules = [{"idx": 0, "name": "0", "path": transformer_dir, "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (path / "2_Normalize").mkdir()
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    (path / "1_Pooling").mkdir()
    flags = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
             "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
             "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
    cfg = {"word_embedding_dimension": 16, **{flag: mode == pooling for mode, flag in flags.items()},
           "include_prompt": True}
    (path / "1_Pooling" / "config.json").write_text(json.dumps(cfg, indent=2))
    (model_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length,
                                                                    "do_lower_case": do_lower_case}))
    (path / "config_sentence_transformers.json").write_text(json.dumps(
        {"__version__": {"sentence_transformers": "3.0.1", "transformers": "4.41.2", "pytorch": "2.3.0"},
         "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))
    (path / "README.md").write_text("---\ntags:\n- sentence-transformers\n---\n# tiny\n")
    return path


def tiny_glove(path: Path, *, dim: int = 6, seed: int = 0, header: bool = False, gz: bool = False) -> Path:
    """A GloVe text file (``word v1 … vD``, 5-decimal floats as the Stanford releases), optionally with word2vec's
    ``count dim`` header line, optionally gzip-compressed (as fastText ships ``cc.en.300.vec.gz``)."""
    import gzip

    rng = np.random.default_rng(seed)
    lines = [f"{len(WORDS)} {dim}"] if header else []
    for w in WORDS:
        lines.append(" ".join([w, *(f"{v:.5f}" for v in rng.standard_normal(dim))]))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def hub_cache_snapshot(src: Path, cache: Path, repo: str = "org/tiny", revision: str = "a" * 40) -> Path:
    """``src``'s files laid out as huggingface_hub's cache keeps a download: ``models--org--tiny/blobs/<id>`` with
    id = the sha256 of a weight file (LFS) or the git blob sha1 of a small file, ``snapshots/<revision>/<name>``
    relative symlinks to the blobs, ``refs/main`` holding the revision. Returns the snapshot folder (what
    ``snapshot_download`` returns and users pass)."""
    import hashlib
    import os

    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / revision
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    for f in sorted(x for x in src.rglob("*") if x.is_file()):
        data = f.read_bytes()
        lfs = f.suffix in (".safetensors", ".bin", ".h5", ".msgpack", ".onnx")
        blob = hashlib.sha256(data).hexdigest() if lfs else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (repo_dir / "blobs" / blob).write_bytes(data)
        link = snap / f.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo_dir / "blobs" / blob, link.parent))
    return snap


def local_dir_metadata(root: Path, name: str, *, etag: str | None = None, timestamp: float | None = None) -> Path:
    """The record ``hf download --local-dir`` keeps of one downloaded file:
    ``.cache/huggingface/download/<name>.metadata`` = commit hash, etag (the sha256 of an LFS file), download time
    (seconds since the epoch), one per line."""
    import hashlib

    f = root / name
    etag = etag or hashlib.sha256(f.read_bytes()).hexdigest()
    timestamp = f.stat().st_mtime + 0.5 if timestamp is None else timestamp
    meta = root / ".cache" / "huggingface" / "download" / f"{name}.metadata"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(f"{'b' * 40}\n{etag}\n{timestamp}\n")
    return meta


def run_shared(items: list, lanes: dict, **limits) -> list:
    """Each of ``items``' :class:`features.batching.RowResult`, its rows batched across the items by one
    :class:`features.batching.SharedBatcher` per lane (``item.lane`` names its encoder in ``lanes``), as the extraction
    flow runs them; every item is submitted from this thread, which then waits on the results."""
    from features.batching import SharedBatcher

    services = {lane: SharedBatcher(enc, lane=lane, **limits) for lane, enc in lanes.items()}
    try:
        clients = {lane: service.client() for lane, service in services.items()}
        futures = [clients[item.lane].submit(item) for item in items]
        for client in clients.values():
            client.pause()
        return [future.result(timeout=300) for future in futures]
    finally:
        for service in services.values():
            service.close()

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
                     short: int | None = None, full_clip: bool = True) -> Path:
    """A CLIP checkpoint (full ``CLIPModel`` by default, as openai/clip-* ship) with a 32² input."""
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
        CLIPModel(cfg).save_pretrained(path)
    else:
        CLIPVisionModel(CLIPVisionConfig(**vision)).save_pretrained(path)
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


def tiny_sentence_transformers(path: Path, *, seed: int = 0, normalize: bool = True) -> Path:
    """A sentence-transformers directory as v2/v3 write it: the model at the root, ``1_Pooling``, ``2_Normalize``."""
    tiny_bert(path, seed=seed)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (path / "2_Normalize").mkdir()
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 16, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    return path


def tiny_glove(path: Path, *, dim: int = 6, seed: int = 0, header: bool = False) -> Path:
    """A GloVe text file (``word v1 … vD``, 5-decimal floats as the Stanford releases), optionally with word2vec's
    ``count dim`` header line."""
    rng = np.random.default_rng(seed)
    lines = [f"{len(WORDS)} {dim}"] if header else []
    for w in WORDS:
        lines.append(" ".join([w, *(f"{v:.5f}" for v in rng.standard_normal(dim))]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

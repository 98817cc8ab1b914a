"""Pretrained encoders as cached embeddings: frames, 1-second audio segments and transcripts → vectors.

Three encoders, each loaded from a **local** path only (nothing is ever downloaded):

* :class:`VisionEncoder` — a Hugging Face image model directory (CLIP, SigLIP, ViT, DINOv2, ResNet, …: any
  ``config.json`` + weights that ``AutoModel`` or ``CLIPVisionModelWithProjection`` loads). One vector per frame (CLIP:
  the projected ``image_embeds``; otherwise ``pooler_output``, else the first token), optionally the patch tokens.
* :class:`AudioEncoder` — a Hugging Face audio model directory: a raw-waveform model (wav2vec 2.0, HuBERT, WavLM,
  data2vec-audio: the mean of its output frames), AST (its pooled token) or CLAP (its projected audio embedding), each
  fed one 1-second segment at a time, or Whisper's encoder, fed 30-s windows and mean-pooled over each second's 50
  encoder frames. One vector per 1-second segment. Text, image, video and speech-generation checkpoints are refused.
* :class:`TextEncoder` — a Hugging Face text model directory (BERT, MPNet, MiniLM, …: WordPiece fast tokenizers), a
  sentence-transformers directory (``modules.json`` + Transformer + Pooling [+ Normalize]) or a GloVe / word2vec /
  fastText ``.vec`` text file (``word v1 v2 …`` lines, plain or gzip-compressed).
  A sentence vector (mean-pooled, or the sentence-transformers pooling), the token sequence with its mask, and one
  vector per second from the words whose timings fall in it.

Optional face crops (``vision_faces``): :func:`load_face_detector` loads OpenCV's bundled Haar cascade (``"haar"``:
the opencv-python-headless 4.x wheel that vidpipe pins ships it) or a local detector file (a YuNet ``.onnx``, a
cascade ``.xml``, or any suffix given a loader with :func:`register_face_detector`); :func:`face_crops` cuts the
largest face of each frame, and a frame without a face is masked (not valid), never encoded as a zero or whole frame.

Preprocessing is numpy/OpenCV (``torchvision`` cannot be imported beside this project's CPU torch): images are
resized so the short side is the checkpoint's ``size`` (shortest edge) and centre-cropped to its ``crop_size`` — done
by the frame sampler (:mod:`features.video`, area filter) — then rescaled and normalised with the checkpoint's
``image_mean`` / ``image_std`` (:func:`processor_config`: ``preprocessor_config.json``, or the ``image_processor``
entry of ``processor_config.json``; defaults 0.5 / 0.5 without either). Checkpoints whose
processor squashes the frame to a square without cropping get the centre crop instead. Audio is resampled from the
audio stage's PCM to the encoder's ``sampling_rate`` (``scipy.signal.resample_poly``); for waveform models, when the
checkpoint's processor says ``do_normalize``, each segment is scaled to zero mean and unit variance; AST, CLAP and
Whisper get their spectrograms from the checkpoint's own feature extractor (``AutoFeatureExtractor``, on the
CPU: NumPy, and torch's STFT for Whisper; AST's uses torchaudio's Kaldi filterbank where torchaudio is installed,
which :func:`audio_preprocessing_params` puts into the stage's fingerprint).

:func:`encoder_digest` hashes exactly the files a checkpoint's loader reads (weights, configs, processor configs,
tokenizer files; relative name and sha256), so swapping a checkpoint changes the fingerprint of exactly the stage
that reads it, and a README or a TensorFlow copy beside the weights changes nothing.

Inference runs under ``torch.inference_mode`` in batches of ``batch_size`` items, bf16 autocast and pinned-memory
transfers on CUDA; one forward at a time per loaded encoder (a lock), so worker threads that share an encoder do not
oversubscribe the CPU, and memory is bounded by the batch, never by the video's length. ``VisionEncoder.rows`` and
``AudioEncoder.rows`` give the encoder to :mod:`features.batching`, which fills the batches with the rows of many
videos; ``embed`` runs one video's rows through the same batcher.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from features.batching import RowEncoder, encode_rows
from features.fingerprint import fingerprint

__all__ = [
    "AudioEncoder",
    "FaceDetector",
    "HAAR_CASCADE",
    "ImagePreprocessing",
    "OPENCV_WITH_CASCADES",
    "TextEncoder",
    "VisionEncoder",
    "align_words",
    "audio_preprocessing_params",
    "audio_seconds",
    "encoder_digest",
    "face_crops",
    "face_detector_digest",
    "image_preprocessing",
    "load_audio_encoder",
    "load_face_detector",
    "load_text_encoder",
    "load_vision_encoder",
    "processor_config",
    "read_glove",
    "register_face_detector",
    "resample",
    "segment_valid",
]

# Weight files transformers' ``from_pretrained`` reads from a local directory, in its order of preference (a config
# may name another with ``transformers_weights``); TensorFlow / Flax files, ONNX / OpenVINO exports, ``*.fp16``
# variants and Trainer state (optimizer.pt, training_args.bin) are never read, so they are not part of the digest.
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
# Files besides the weights that decide what a checkpoint computes: model config, image / audio processor configs
# (``processor_config.json`` nests them in checkpoints saved by transformers 5), tokenizers.
_CONFIG_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json",
                 "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SHA256: dict[str, tuple[tuple[int, int, int], str]] = {}  # absolute path → (size, mtime_ns, inode), sha256
_DIGEST_LOCK = threading.Lock()


# ---------------------------------------------------------------------------------------------------- paths, digests
def _missing(arg: str, path: Any, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{arg}={str(path)!r} does not exist; vidpipe never downloads weights: put {what} there "
        "(download it yourself, e.g. `hf download MODEL --local-dir PATH` on a machine with network access)")


def _hf_dir(path: Any, arg: str, what: str) -> Path:
    if path is None or not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{arg}={path!r}: expected the path of {what}")
    p = Path(path)
    if not p.exists():
        raise _missing(arg, path, what)
    if not p.is_dir() or not (p / "config.json").is_file():
        raise ValueError(f"{arg}={str(path)!r} is not a Hugging Face model directory (no config.json in it); "
                         f"expected {what}")
    _weight_files(p, arg)  # no weights, or a shard missing: said here, in the argument's words
    return p


@functools.lru_cache(maxsize=64)
def _index_shards(index: str, stamp: tuple[int, int, int]) -> tuple[str, ...]:
    """The shard file names a ``*.index.json`` lists (its ``weight_map`` values), memoised on the index's stat."""
    data = _json(Path(index))
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, Mapping) or not weight_map:
        raise ValueError(f"{index!r} has no weight_map; expected a sharded checkpoint's index "
                         '({"metadata": …, "weight_map": {"tensor name": "shard file", …}})')
    return tuple(sorted({str(v) for v in weight_map.values()}))


def _weight_files(root: Path, arg: str, names: set[str] | None = None) -> list[Path]:
    """The weight files ``from_pretrained(root)`` loads: ``model.safetensors``, else the sharded safetensors index
    and every shard it lists, else ``pytorch_model.bin`` (or its index and shards).

    Raises:
        ValueError: none of them. FileNotFoundError: a shard the index lists is missing.
    """
    config = _json(root / "config.json", arg=arg)
    explicit = config.get("transformers_weights") if isinstance(config, Mapping) else None
    if names is None:  # one listing instead of a stat per candidate name (planning calls this per video)
        names = set(os.listdir(root))
    for name in [explicit] if isinstance(explicit, str) and explicit else _WEIGHT_FILES:
        f = root / name
        if (name not in names and "/" not in name) or not f.is_file():
            continue
        if not name.endswith(".index.json"):
            return [f]
        st = f.stat()
        shards = [root / s for s in _index_shards(str(f), (st.st_size, st.st_mtime_ns, st.st_ino))]
        for s in shards:
            if not s.is_file():
                raise FileNotFoundError(f"{arg}={str(root)!r}: {name} lists the shard {s.name!r}, which is missing "
                                        "(an interrupted download?); expected every shard the index names")
        return [f, *shards]
    wanted = repr(explicit) if isinstance(explicit, str) and explicit else (
        "model.safetensors, model.safetensors.index.json with its shards, or pytorch_model.bin")
    raise ValueError(f"{arg}={str(root)!r} holds no PyTorch weights: expected {wanted} (TensorFlow / Flax-only "
                     "checkpoints, tf_model.h5 or flax_model.msgpack, cannot be loaded)")


def _st_modules(root: Path, arg: str) -> list[tuple[str, Path, str]]:
    """``(kind, folder, type)`` of each module a sentence-transformers ``modules.json`` lists, in order; ``kind`` is
    the last part of the module's class name ``type`` (``Transformer``, ``Pooling``, ``Normalize``, ``Dense``, …)."""
    modules = _json(root / "modules.json", arg=arg)
    if not isinstance(modules, list) or not all(isinstance(m, Mapping) for m in modules):
        raise ValueError(f"{arg}={str(root)!r}: modules.json is not a list of modules; expected "
                         '[{"idx": 0, "name": "0", "path": "", '
                         '"type": "sentence_transformers.models.Transformer"}, …]')
    return [(str(m.get("type", "")).rsplit(".", 1)[-1], root / str(m.get("path", "")), str(m.get("type", "")))
            for m in modules]


def _hf_files(root: Path, arg: str) -> list[Path]:
    names = set(os.listdir(root))
    return [root / n for n in _CONFIG_FILES if n in names and (root / n).is_file()] + _weight_files(root, arg, names)


def _checkpoint_files(p: Path, arg: str) -> list[Path]:
    """The files that decide what the encoder at ``p`` computes, which are the files its loader reads."""
    if p.is_file():
        return [p]
    if (p / "modules.json").is_file():  # sentence-transformers: modules.json, then each module's folder
        files = [p / "modules.json"]
        for kind, folder, _ in _st_modules(p, arg):
            if kind == "Transformer":
                files += _hf_files(folder, arg) + [f for f in [folder / "sentence_bert_config.json"] if f.is_file()]
            else:
                files += [folder / n for n in ("config.json", "model.safetensors", "pytorch_model.bin")
                          if (folder / n).is_file()]
        return list(dict.fromkeys(files))
    if (p / "config.json").is_file():
        return _hf_files(p, arg)
    raise ValueError(f"{arg}={str(p)!r} is neither a Hugging Face model directory (no config.json) nor a "
                     "sentence-transformers directory (no modules.json); it holds no weight or config files "
                     "vidpipe can load: expected a local model directory or a GloVe text file")


def _hub_sha256(root: Path, f: Path, real: Path, mtime: float) -> str | None:
    """The sha256 of ``f``'s content that a Hugging Face download already recorded, or None.

    A hub-cache snapshot file is a link to ``blobs/<sha256 of its content>`` (large, LFS-stored files); a
    ``hf download --local-dir`` file has ``.cache/huggingface/download/<name>.metadata`` (commit, etag = the sha256
    of an LFS file, download time), which huggingface_hub trusts while the file is not newer than the download
    (one second of slack): so does this.
    """
    if real != f.absolute() and real.parent.name == "blobs" and _SHA256_HEX.fullmatch(real.name):
        return real.name
    try:
        rel = f.relative_to(root).as_posix()
        meta = (root / ".cache" / "huggingface" / "download" / f"{rel}.metadata").read_text().splitlines()
        etag, stamp = meta[1].strip().strip('"'), float(meta[2])
    except (ValueError, IndexError, OSError):
        return None
    return etag if _SHA256_HEX.fullmatch(etag) and mtime - 1 <= stamp else None


def _read_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks (memory does not grow with the file)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _file_sha256(root: Path, f: Path) -> str:
    key = os.path.abspath(f)
    st = os.stat(key)  # the link's target, for a hub-cache snapshot
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    with _DIGEST_LOCK:
        hit = _SHA256.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    real = f.resolve()
    value = _hub_sha256(root, f, real, st.st_mtime) or _read_sha256(real)
    with _DIGEST_LOCK:
        _SHA256[key] = (stamp, value)
    return value


def encoder_digest(path: str | os.PathLike[str], *, arg: str = "path") -> str:
    """Content digest of a checkpoint: the sha256 of each file its loader reads, with the file's relative name.

    Which files: a single file (GloVe, a face detector) alone; a Hugging Face directory's configs, processor
    configs, tokenizer files and exactly the weight files ``from_pretrained`` loads (``model.safetensors``, else
    a sharded index and its shards, else ``pytorch_model.bin``); a sentence-transformers directory's
    ``modules.json``, its Transformer folder as above with ``sentence_bert_config.json``, and each other module's
    config and weights. READMEs, TensorFlow / Flax / ONNX copies, ``.cache`` and Trainer state are left out, so
    they neither cost a read nor change the fingerprint.

    Cost: planning calls this once per video, so a file's sha256 is memoised for the life of the process on its
    ``(size, mtime_ns, inode)`` (re-planning costs a ``stat`` per file). A fresh process reads each weight file
    once (sha256: 1.4 GB/s of CPU time, measured at load 19 on a 2-core machine), except files whose sha256 a
    Hugging Face download already recorded (hub-cache blobs, ``--local-dir`` metadata; see :func:`_hub_sha256`),
    which are not read at all. The digest is the same whichever way the same bytes arrived.

    Raises:
        FileNotFoundError: ``path`` does not exist, or a shard its index lists is missing.
        ValueError: neither a file, a Hugging Face directory nor a sentence-transformers directory; no weights.
    """
    p = Path(path)
    if not p.exists():
        raise _missing(arg, path, "a local model directory or file")
    root = p if p.is_dir() else p.parent
    parts = [f"{f.relative_to(root).as_posix()}:{_file_sha256(root, f)}" for f in _checkpoint_files(p, arg)]
    return fingerprint("encoder-weights", 2, None, parts)


def _json(path: Path, *, arg: str | None = None) -> Any:
    """A JSON file's content; ``{}`` when there is no such file."""
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        where = f"{arg}: " if arg else ""
        raise ValueError(f"{where}{str(path)!r} is not valid JSON ({exc}); expected the JSON file a Hugging Face / "
                         "sentence-transformers save writes there") from exc


def processor_config(root: str | os.PathLike[str], kind: str) -> dict:
    """The image-processor (``kind="image"``) or feature-extractor (``kind="audio"``) settings of a checkpoint, read
    as transformers reads them: the nested ``image_processor`` / ``feature_extractor`` (or ``audio_processor``)
    entry of ``processor_config.json`` (a processor saved by transformers 5 writes only that file), else
    ``preprocessor_config.json``; ``{}`` without either."""
    root = Path(root)
    keys = {"image": ("image_processor",), "audio": ("feature_extractor", "audio_processor")}.get(kind)
    if keys is None:
        raise ValueError(f"kind={kind!r}: expected 'image' or 'audio'")
    nested = _json(root / "processor_config.json")
    for key in keys:
        if isinstance(nested, Mapping) and isinstance(nested.get(key), Mapping):
            return dict(nested[key])
    flat = _json(root / "preprocessor_config.json")
    return dict(flat) if isinstance(flat, Mapping) else {}


def _device(device: str) -> str:
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={device!r}: expected 'auto', 'cpu' or 'cuda'")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available")
    return device


@contextlib.contextmanager
def _quiet_loading():
    """Silence transformers' load reports and progress bars while a checkpoint loads: a full CLIP checkpoint read as
    its image tower lists every text weight as "unexpected", which is expected here. Errors still raise."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


class _Runner:
    """Shared inference plumbing: device, one-forward-at-a-time lock, autocast and pinned transfers."""

    def __init__(self, model: Any, device: str, batch_size: int) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: expected an int >= 1")
        self.device = _device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def to_device(self, x: np.ndarray):
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x))
        if self.device == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def autocast(self):
        import torch

        return torch.autocast(device_type=self.device, dtype=torch.bfloat16, enabled=self.device == "cuda")


# ---------------------------------------------------------------------------------------------------- vision
@dataclass(frozen=True)
class ImagePreprocessing:
    """How frames become ``pixel_values`` (read from the checkpoint's ``preprocessor_config.json``)."""

    short_side: int  # the frame's short side is resized to this
    crop: int  # then the centre crop×crop square is taken (crop <= short_side)
    mean: tuple[float, float, float]  # per-channel mean after rescaling (RGB)
    std: tuple[float, float, float]  # per-channel std (RGB)
    rescale: float  # pixel values × this before normalising (1/255)


def _side(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        if value.get("shortest_edge"):
            return int(value["shortest_edge"])
        if value.get("height") and value.get("width"):
            return int(min(value["height"], value["width"]))
    return None


def image_preprocessing(pp: Mapping[str, Any], image_size: int | None) -> ImagePreprocessing:
    """Resize / crop / normalisation settings from a processor config dict (see the module docstring)."""
    size = _side(pp.get("size")) if pp.get("do_resize", True) else None
    crop = _side(pp.get("crop_size")) if pp.get("do_center_crop", "crop_size" in pp) else None
    pct = pp.get("crop_pct")
    if size and crop is None and isinstance(pct, (int, float)) and 0 < pct < 1:
        # ConvNeXt / ResNet processors: resize the short side to size / crop_pct, then centre-crop size
        size, crop = int(size / pct), size
    short = size or crop or image_size or 224
    crop = crop or (image_size if image_size and image_size <= short else short)
    if crop > short:
        short = crop
    norm = pp.get("do_normalize", True)
    mean = tuple(float(v) for v in pp.get("image_mean", (0.5, 0.5, 0.5))) if norm else (0.0, 0.0, 0.0)
    std = tuple(float(v) for v in pp.get("image_std", (0.5, 0.5, 0.5))) if norm else (1.0, 1.0, 1.0)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"preprocessor image_mean={mean}, image_std={std}: expected 3 values each, std > 0")
    rescale = float(pp.get("rescale_factor", 1 / 255)) if pp.get("do_rescale", True) else 1.0
    return ImagePreprocessing(short_side=int(short), crop=int(crop), mean=mean, std=std,  # type: ignore[arg-type]
                              rescale=rescale)


#: video model types (their input is a clip of frames): refused as ``vision_model``
_VIDEO_KINDS = frozenset({"timesformer", "videomae", "vivit", "vjepa2", "x_clip"})


class VisionEncoder:
    """A local Hugging Face image model that maps frames to vectors (see the module docstring).

    Args:
        path: the model directory (``config.json``, weights, optionally ``preprocessor_config.json``).
        device: "auto" | "cpu" | "cuda".
        batch_size: frames per forward pass.
    """

    def __init__(self, path: str | os.PathLike[str], *, device: str = "auto", batch_size: int = 32) -> None:
        from transformers import AutoConfig, AutoModel, CLIPVisionModelWithProjection

        root = _hf_dir(path, "vision_model", "an image model directory (e.g. openai/clip-vit-base-patch16)")
        config = AutoConfig.from_pretrained(root, local_files_only=True)
        kind = config.model_type
        if kind in _VIDEO_KINDS or getattr(getattr(config, "vision_config", config), "num_frames", None):
            raise ValueError(f"vision_model={str(path)!r} is a {kind!r} video model (clips of frames, pixel_values "
                             "(B, T, 3, H, W)); expected an image model that embeds one frame at a time, such as "
                             "CLIP, ViT, DINOv2 or ResNet")
        with _quiet_loading():
            if kind == "clip" or "CLIPVisionModelWithProjection" in (getattr(config, "architectures", None) or []):
                # a full CLIP checkpoint, or its image tower with the projection: the projected image_embeds
                model = CLIPVisionModelWithProjection.from_pretrained(root, local_files_only=True)
                vision_cfg = getattr(config, "vision_config", config)
            elif kind in ("siglip", "siglip2"):
                model = AutoModel.from_pretrained(root, local_files_only=True).vision_model
                vision_cfg = config.vision_config
            else:
                model = AutoModel.from_pretrained(root, local_files_only=True)
                vision_cfg = config
        if getattr(model, "main_input_name", "pixel_values") != "pixel_values":
            raise ValueError(f"vision_model={str(path)!r} is a {kind!r} model, which does not take images "
                             "(pixel_values); expected an image model such as CLIP, ViT, DINOv2 or ResNet")
        self.path = str(path)
        self.kind = kind
        image_size = getattr(vision_cfg, "image_size", None)
        image_size = image_size[0] if isinstance(image_size, (list, tuple)) else image_size
        self.preprocessing = image_preprocessing(processor_config(root, "image"), image_size)
        self.runner = _Runner(model, device, batch_size)
        crop = self.preprocessing.crop
        vec, patches = self._forward(np.zeros((1, crop, crop, 3), np.uint8), patches=True)
        self.dim = int(vec.shape[1])
        self.patch_shape = None if patches is None else tuple(int(s) for s in patches.shape[1:])

    def _pixels(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) RGB → normalised float32 (B, 3, H, W)."""
        pp = self.preprocessing
        x = frames.astype(np.float32) * np.float32(pp.rescale)
        x = (x - np.asarray(pp.mean, np.float32)) / np.asarray(pp.std, np.float32)
        return np.ascontiguousarray(np.moveaxis(x, -1, 1))

    def _forward(self, frames: np.ndarray, *, patches: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Vectors (B, D) and, with ``patches``, the patch tokens (B, P, D_h) of a batch of frames; the patch
        tokens are copied off the device only when asked for."""
        import torch

        r = self.runner
        with r._lock, torch.inference_mode(), r.autocast():
            out = r.model(pixel_values=r.to_device(self._pixels(frames)))
        vec = getattr(out, "image_embeds", None)
        if vec is None:
            vec = getattr(out, "pooler_output", None)
        hidden = getattr(out, "last_hidden_state", None)
        if vec is None:
            vec = hidden[:, 0] if hidden.dim() == 3 else hidden.mean(dim=(2, 3))
        tokens = hidden[:, 1:] if patches and hidden is not None and hidden.dim() == 3 and hidden.shape[1] > 1 \
            else None
        vec = vec.reshape(vec.shape[0], -1).float().cpu().numpy()
        return vec, None if tokens is None else tokens.float().cpu().numpy()

    def check_frames(self, frames: np.ndarray) -> None:
        """Raise ``ValueError`` unless ``frames`` is uint8 (N, crop, crop, 3), the encoder's input."""
        crop = self.preprocessing.crop
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (crop, crop, 3):
            raise ValueError(f"frames: expected uint8 (N, {crop}, {crop}, 3), got {frames.dtype} {frames.shape}")

    def rows(self, *, patches: bool = False) -> RowEncoder:
        """This encoder for :mod:`features.batching`: frames in; the vector (D,) float32 and, with ``patches``, the
        patch tokens (P, D_h) float16 of each frame out.

        Raises:
            ValueError: ``patches`` for a model without patch tokens.
        """
        if patches and self.patch_shape is None:
            raise ValueError(f"vision_model={self.path!r} ({self.kind}) returns no patch tokens")
        outputs: tuple = (((self.dim,), np.float32),)
        if patches:
            outputs += ((self.patch_shape, np.float16),)

        def forward(frames: np.ndarray) -> tuple[np.ndarray, ...]:
            vec, tokens = self._forward(frames, patches=patches)
            return (vec, tokens) if patches else (vec,)

        return RowEncoder(forward=forward, outputs=outputs, batch_size=self.runner.batch_size,
                          check=self.check_frames)

    def embed(self, frames: np.ndarray, valid: np.ndarray | None = None, *,
              patches: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Vectors of the valid frames (zeros elsewhere) and, with ``patches``, their patch tokens.

        Shapes:
            frames (N, crop, crop, 3) uint8 RGB, valid (N,) bool → vectors (N, D) float32,
            patch tokens (N, P, D_h) float16 or None
        """
        frames = np.asarray(frames)
        self.check_frames(frames)
        outputs = encode_rows(self.rows(patches=patches), frames, valid)
        return outputs[0], outputs[1] if patches else None


# ---------------------------------------------------------------------------------------------------- faces
#: the cascade that ``vision_faces="haar"`` loads from OpenCV's package data (``cv2.data.haarcascades``): the
#: opencv-python-headless 4.x wheels ship it; the OpenCV 5 wheels (contrib included) ship no cascade file
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
#: the OpenCV that ships :data:`HAAR_CASCADE` and runs cascades (the pin in pyproject.toml)
OPENCV_WITH_CASCADES = "opencv-python-headless>=4.8,<5"


@dataclass(frozen=True)
class FaceDetector:
    """A face detector: ``detect(frame)`` gives the faces of one RGB uint8 (H, W, 3) frame as (K, 4) float32
    ``(x, y, w, h)`` boxes in pixels (K = 0 without a face). ``name`` says which model it is (records, errors)."""

    name: str
    detect: Callable[[np.ndarray], np.ndarray]


def _require_cascades(spec: str) -> None:
    """Raise what to install when this OpenCV has no ``CascadeClassifier`` (opencv-python-headless 5.x)."""
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise ValueError(f"vision_faces={spec!r} is a Haar/LBP cascade, which OpenCV {cv2.__version__} cannot run "
                         "(its main module has no CascadeClassifier since 5.0): install the OpenCV vidpipe pins, "
                         f"`pip install '{OPENCV_WITH_CASCADES}'` (or opencv-contrib-python-headless 5.x in place "
                         "of opencv-python-headless), or pass a YuNet .onnx file (face_detection_yunet_2023mar.onnx "
                         "from the OpenCV model zoo)")


def _cascade_detector(path: Path) -> FaceDetector:
    """A Haar/LBP cascade file (:func:`_detector_file` has checked that this OpenCV runs cascades)."""
    import cv2

    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ValueError(f"vision_faces={str(path)!r} is not a cascade OpenCV can read")
    lock = threading.Lock()  # a CascadeClassifier is not safe to share between threads

    def detect(frame: np.ndarray) -> np.ndarray:
        grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        side = min(grey.shape)
        with lock:
            boxes = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                             minSize=(max(12, side // 12), max(12, side // 12)))
        return np.asarray(boxes, np.float32).reshape(-1, 4)

    return FaceDetector(name=f"cascade:{path.name}", detect=detect)


def _yunet_detector(path: Path) -> FaceDetector:
    import cv2

    if not hasattr(cv2, "FaceDetectorYN"):
        raise ValueError(f"vision_faces={str(path)!r}: OpenCV {cv2.__version__} has no FaceDetectorYN (YuNet); "
                         "expected OpenCV >= 4.5.4")
    try:
        net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.6)
    except cv2.error as exc:
        raise ValueError(f"vision_faces={str(path)!r} is not a YuNet face detector OpenCV can load: {exc}") from exc
    lock = threading.Lock()

    def detect(frame: np.ndarray) -> np.ndarray:
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        with lock:
            net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, faces = net.detect(bgr)
        return np.zeros((0, 4), np.float32) if faces is None else np.asarray(faces[:, :4], np.float32)

    return FaceDetector(name=f"yunet:{path.name}", detect=detect)


#: file suffix → loader of a local face-detector model file (:func:`register_face_detector` adds one)
_FACE_LOADERS: dict[str, Callable[[Path], FaceDetector]] = {".xml": _cascade_detector, ".onnx": _yunet_detector}


def register_face_detector(suffix: str, loader: Callable[[Path], FaceDetector]) -> None:
    """Make ``vision_faces=PATH`` with a name ending in ``suffix`` load ``loader(PATH)`` (e.g. another detector
    family, or a test double). Built in: ``.xml`` (an OpenCV Haar/LBP cascade) and ``.onnx`` (YuNet)."""
    if not isinstance(suffix, str) or not suffix.startswith(".") or len(suffix) < 2:
        raise ValueError(f"suffix={suffix!r}: expected a file suffix such as '.onnx'")
    _FACE_LOADERS[suffix.lower()] = loader


def _haar_path() -> Path:
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / HAAR_CASCADE
    if not folder or not path.is_file() or not hasattr(cv2, "CascadeClassifier"):
        raise ValueError(f"vision_faces='haar': this OpenCV ({cv2.__version__}) ships no {HAAR_CASCADE} (the OpenCV "
                         "5 wheels carry no cascade): install the OpenCV vidpipe pins, "
                         f"`pip install '{OPENCV_WITH_CASCADES}'`, or pass vision_faces=PATH, a local face "
                         "detector file: a YuNet .onnx (face_detection_yunet_2023mar.onnx from the OpenCV model zoo), "
                         "or a cascade .xml (OpenCV 4.x, or opencv-contrib-python-headless 5.x)")
    return path


def _detector_file(spec: str) -> tuple[Path, Callable[[Path], FaceDetector]]:
    """The model file of ``vision_faces=spec`` and its loader, once checked that this install can run it."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"vision_faces={spec!r}: expected 'haar' or the path of a local face-detector model file")
    path = _haar_path() if spec == "haar" else Path(spec)
    if not path.exists():
        raise _missing("vision_faces", spec, "a face-detector model file (a YuNet .onnx or an OpenCV cascade .xml)")
    loader = _FACE_LOADERS.get(path.suffix.lower())
    if loader is None:
        raise ValueError(f"vision_faces={spec!r}: no face-detector loader for {path.suffix!r} files; expected one of "
                         f"{sorted(_FACE_LOADERS)} or 'haar'")
    if loader is _cascade_detector:
        _require_cascades(spec)
    return path, loader


def face_detector_digest(spec: str) -> str:
    """Content digest of the detector ``vision_faces=spec`` loads (its model file), for the stage fingerprint.

    The stage's parameters (:meth:`ExtractConfig.stage_params`) call it before any video runs, so a detector this
    install cannot run (a cascade without OpenCV's ``CascadeClassifier``, an unknown suffix) is refused there.
    """
    return encoder_digest(_detector_file(spec)[0], arg="vision_faces")


def load_face_detector(spec: str) -> FaceDetector:
    """The face detector of ``vision_faces``: ``"haar"`` (OpenCV's bundled frontal-face cascade) or a local model
    file whose suffix names its loader (:func:`register_face_detector`). Never downloads.

    Raises:
        FileNotFoundError: the file does not exist. ValueError: an unknown suffix, a cascade this OpenCV cannot run
        (with what to install), or a file the loader refuses.
    """
    path, loader = _detector_file(spec)
    return loader(path)


def face_crops(frames: np.ndarray, valid: np.ndarray, detector: FaceDetector, size: int, *,
               margin: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The largest face of each valid frame, as a square crop resized to ``size``; frames without one are marked.

    The detector's box (x, y, w, h) grows by ``margin`` of its side on every side, becomes the square of its longer
    side around the same centre, and is shifted (then clipped) to lie inside the frame. Boxes are returned as
    fractions of the frame's width and height, ``(x0, y0, x1, y1)``, nan where no face was found.

    Shapes:
        frames (N, H, W, 3) uint8 RGB, valid (N,) bool → crops (N, size, size, 3) uint8 (zeros where not found),
        found (N,) bool, boxes (N, 4) float32
    """
    import cv2

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    if size < 1 or margin < 0:
        raise ValueError(f"size={size}, margin={margin}: expected size >= 1 and margin >= 0")
    n, h, w = frames.shape[:3]
    crops = np.zeros((n, size, size, 3), np.uint8)
    found = np.zeros(n, bool)
    boxes = np.full((n, 4), np.nan, np.float32)
    for i in np.flatnonzero(np.asarray(valid, bool)):
        faces = np.asarray(detector.detect(frames[i]), np.float32).reshape(-1, 4)
        faces = faces[(faces[:, 2] > 0) & (faces[:, 3] > 0)]
        if not len(faces):
            continue
        x, y, bw, bh = faces[np.argmax(faces[:, 2] * faces[:, 3])]
        side = min(max(bw, bh) * (1 + 2 * margin), h, w)
        x0 = int(round(min(max(x + bw / 2 - side / 2, 0), w - side)))
        y0 = int(round(min(max(y + bh / 2 - side / 2, 0), h - side)))
        s = max(1, int(round(side)))
        patch = frames[i, y0:y0 + s, x0:x0 + s]
        crops[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)
        found[i] = True
        boxes[i] = (x0 / w, y0 / h, (x0 + patch.shape[1]) / w, (y0 + patch.shape[0]) / h)
    return crops, found, boxes


# ---------------------------------------------------------------------------------------------------- audio
def resample(y: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``), exact ratio; identity when the rates match.

    Shapes:
        y (n,) → (ceil(n · sr_to / sr_from),) float32
    """
    if sr_from == sr_to:
        return np.asarray(y, np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(int(sr_from), int(sr_to))
    return resample_poly(np.asarray(y, np.float64), sr_to // g, sr_from // g).astype(np.float32)


def segment_valid(y: np.ndarray | None, sr: int, n_segments: int, *, silence_db: float = -60.0) -> np.ndarray:
    """Which 1-second segments hold audio, by the audio stage's rule: at least half a second exists and it is not
    silent (its loudest 25 ms frame is above ``silence_db``).

    Shapes:
        y (n,) at ``sr`` → (S,) bool
    """
    from features.audio import AudioParams, is_silent

    params = AudioParams(sr=sr, n_segments=n_segments, silence_db=silence_db)
    mask = np.zeros(n_segments, bool)
    if y is None:
        return mask
    for s in range(n_segments):
        piece = y[s * sr:(s + 1) * sr]
        mask[s] = piece.size >= sr / 2 and not is_silent(piece, params)
    return mask


#: model types of the raw-waveform encoders: ``AutoModel`` takes the waveform as ``input_values`` and returns frames
_WAVEFORM_KINDS = frozenset({"wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech",
                             "unispeech-sat", "sew", "sew-d"})
#: model types whose input is a spectrogram that the checkpoint's own feature extractor computes
_SPECTROGRAM_KINDS = frozenset({"audio-spectrogram-transformer", "clap", "whisper"})
#: audio model types that generate speech or music, or code audio into tokens: they make audio, they do not embed it
_AUDIO_GENERATORS = frozenset({"bark", "csm", "dac", "dia", "encodec", "fastspeech2_conformer", "mimi", "musicgen",
                               "musicgen_melody", "seamless_m4t", "seamless_m4t_v2", "speecht5", "vits", "xcodec"})
_AUDIO_EXPECTED = ("expected an audio encoder directory: a raw-waveform model (wav2vec 2.0, HuBERT, WavLM, "
                   "data2vec-audio, UniSpeech, SEW), AST, CLAP or Whisper")


@dataclass(frozen=True)
class _AudioInput:
    """How one kind of audio model reads rows of waveform and what its outputs become.

    ``features`` runs on the CPU outside the encoder's lock (numpy: the checkpoint's feature extractor, or
    normalisation); ``vectors`` runs the model on the features, already on the device.

    Shapes:
        rows (B, row_seconds · sampling_rate) → features {name: (B, …)} → vectors (B, D) when ``row_seconds``
        is 1, else (B, row_seconds, D)
    """

    sampling_rate: int  # the model's input rate (Hz)
    row_seconds: int  # seconds of audio per input row: 1, or Whisper's window
    features: Callable[[np.ndarray], dict[str, np.ndarray]]
    vectors: Callable[[Any, dict[str, Any]], Any]
    normalize: bool = False  # waveform models: each row scaled to zero mean, unit variance


def _audio_refusal(path: Any, config: Any) -> ValueError:
    """The error for a checkpoint that is not an audio encoder this stage can run, saying what it is."""
    from transformers import MODEL_MAPPING

    kind = config.model_type
    if kind in _AUDIO_GENERATORS:
        what = "a model that generates or codes audio, not an encoder of it"
    else:
        try:
            what = f"its model takes {MODEL_MAPPING[type(config)].main_input_name!r}"
        except (KeyError, ValueError, AttributeError):
            what = "not an audio model"
    return ValueError(f"audio_model={str(path)!r} has model_type {kind!r} ({what}); {_AUDIO_EXPECTED}")


def _waveform_input(model: Any, root: Path) -> _AudioInput:
    """wav2vec 2.0 and kin: the waveform itself (normalised when the processor says ``do_normalize``); the vector
    is the mean of the output frames."""
    pp = processor_config(root, "audio")
    normalize = bool(pp.get("do_normalize", True))

    def features(rows: np.ndarray) -> dict[str, np.ndarray]:
        x = rows.astype(np.float32)
        if normalize:
            x = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-7)
        return {"input_values": x}

    rate = int(pp.get("sampling_rate") or getattr(model.config, "sampling_rate", 16000) or 16000)
    return _AudioInput(sampling_rate=rate, row_seconds=1, features=features, normalize=normalize,
                       vectors=lambda m, x: m(**x).last_hidden_state.mean(dim=1))


def _feature_extractor(root: Path, path: Any, kind: str) -> Any:
    """The checkpoint's own feature extractor (``preprocessor_config.json``, or the ``feature_extractor`` entry of
    ``processor_config.json``): the spectrogram models are fed exactly the features they were trained on."""
    from transformers import AutoFeatureExtractor

    try:
        return AutoFeatureExtractor.from_pretrained(root, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"audio_model={str(path)!r} is a {kind!r} checkpoint without a readable feature extractor "
                         f"({exc}); expected its preprocessor_config.json beside the weights, as the Hugging Face "
                         "repository ships it (or save one with the extractor's save_pretrained)") from exc


def _extractor_call(fe: Any, rows: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    out = fe(list(rows), sampling_rate=fe.sampling_rate, return_tensors="np")
    return {name: np.asarray(out[name]) for name in names}


def _spectrogram_input(model: Any, fe: Any, path: Any) -> _AudioInput:
    """AST and CLAP: each 1-s row becomes the extractor's spectrogram (padded as the extractor pads: AST with zero
    frames to its ``max_length``, CLAP by repeating the second to ``max_length_s``). AST's vector is its pooled
    [CLS]/distillation token, CLAP's the normalised projection ``get_audio_features`` returns."""
    rate = int(fe.sampling_rate)
    if model.config.model_type == "clap":
        if getattr(fe, "nb_max_samples", rate) < rate:  # a longer input would be cropped at random or fused
            raise ValueError(f"audio_model={str(path)!r}: its feature extractor keeps {fe.nb_max_samples} samples "
                             f"(max_length_s) at {rate} Hz; expected at least one second")

        def clap(m: Any, x: dict[str, Any]) -> Any:
            out = m.get_audio_features(**x)
            return out if hasattr(out, "dim") else out.pooler_output

        return _AudioInput(sampling_rate=rate, row_seconds=1, vectors=clap,
                           features=lambda rows: _extractor_call(fe, rows, ("input_features", "is_longer")))
    return _AudioInput(sampling_rate=rate, row_seconds=1, vectors=lambda m, x: m(**x).pooler_output,
                       features=lambda rows: _extractor_call(fe, rows, ("input_values",)))


def _whisper_input(encoder: Any, fe: Any, path: Any) -> _AudioInput:
    """Whisper's encoder reads log-mel windows of exactly ``chunk_length`` seconds (30 s: 3,000 mel frames → 1,500
    encoder frames of 20 ms). Encoding one window per second would repeat the same window 30 times, so each row is
    one window of the clip and each second's vector is the mean of the encoder frames inside it (50 per second); the
    last window is zero-padded by the extractor, as Whisper pads its own input."""
    rate, n_samples = int(fe.sampling_rate), int(fe.n_samples)
    if n_samples % rate:
        raise ValueError(f"audio_model={str(path)!r}: its feature extractor's window is {n_samples} samples at "
                         f"{rate} Hz; expected a whole number of seconds (chunk_length)")
    seconds = n_samples // rate
    frames = int(encoder.config.max_source_positions)
    edges = [round(s * frames / seconds) for s in range(seconds + 1)]  # encoder frames of each second

    def vectors(m: Any, x: dict[str, Any]) -> Any:
        import torch

        h = m(**x).last_hidden_state  # (B, frames, D)
        return torch.stack([h[:, a:b].mean(dim=1) for a, b in zip(edges, edges[1:])], dim=1)

    return _AudioInput(sampling_rate=rate, row_seconds=seconds, vectors=vectors,
                       features=lambda rows: _extractor_call(fe, rows, ("input_features",)))


def _audio_model(root: Path, path: Any) -> tuple[Any, _AudioInput]:
    """The model to run (Whisper: its encoder only) and how it reads rows, by the checkpoint's ``model_type``.

    Raises:
        ValueError: a checkpoint of another kind (text, image, video, speech generation, …), or a spectrogram model
            without its feature extractor.
    """
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(root, local_files_only=True)
    kind = config.model_type
    if kind not in _WAVEFORM_KINDS and kind not in _SPECTROGRAM_KINDS:
        raise _audio_refusal(path, config)
    fe = _feature_extractor(root, path, kind) if kind in _SPECTROGRAM_KINDS else None
    with _quiet_loading():
        model = AutoModel.from_pretrained(root, local_files_only=True)
    if kind == "whisper":
        encoder = model.get_encoder()
        return encoder, _whisper_input(encoder, fe, path)
    if fe is not None:
        return model, _spectrogram_input(model, fe, path)
    return model, _waveform_input(model, root)


def audio_preprocessing_params(path: str | os.PathLike[str]) -> dict[str, str]:
    """What decides an audio checkpoint's input beyond its files (:func:`encoder_digest`), for the ``embed_audio``
    fingerprint: ``{"ast_fbank": "torchaudio"}`` for an AST checkpoint when transformers' ``ASTFeatureExtractor``
    computes its filterbanks with torchaudio's Kaldi ``fbank`` (torchaudio importable) instead of its NumPy
    filterbank, whose values differ slightly; ``{}`` for the NumPy one and for every other model type (their
    extractors have one implementation), so those fingerprints do not depend on the install."""
    config = _json(Path(path) / "config.json", arg="audio_model")
    if not isinstance(config, Mapping) or config.get("model_type") != "audio-spectrogram-transformer":
        return {}
    from transformers.models.audio_spectrogram_transformer import feature_extraction_audio_spectrogram_transformer as fe

    return {"ast_fbank": "torchaudio"} if fe.is_speech_available() else {}


def audio_seconds(row_vectors: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One vector per second from an :class:`AudioEncoder`'s row outputs: rows of one second are the seconds;
    windows of k seconds are split into their seconds (the padding past the clip's last second dropped). Masked
    seconds are zeros.

    Shapes:
        row_vectors (R, D) or (R, k, D), mask (S,) → (S, D) float32
    """
    mask = np.asarray(mask, bool)
    vec = np.asarray(row_vectors, np.float32)
    vec = vec.reshape(-1, vec.shape[-1])[: mask.size]
    if len(vec) != mask.size:
        raise ValueError(f"row_vectors: {len(vec)} seconds of vectors for a mask of {mask.size} seconds")
    return np.where(mask[:, None], vec, np.float32(0))


class AudioEncoder:
    """A local Hugging Face audio encoder: one vector per 1-second segment.

    Raw-waveform models (wav2vec 2.0, HuBERT, WavLM, data2vec-audio, UniSpeech, SEW: ``input_values``) read each
    second's waveform; AST and CLAP read each second through the checkpoint's own feature extractor
    (``AutoFeatureExtractor``: its ``preprocessor_config.json``, on the CPU); Whisper's encoder reads whole windows
    (see :func:`_whisper_input`). The extractor's settings are part of :func:`encoder_digest` (its config file), so
    changing them changes the stage's fingerprint.

    Args:
        path: the model directory (``config.json``, weights, and ``preprocessor_config.json`` with the feature
            extractor's settings; waveform models read only ``sampling_rate`` and ``do_normalize`` from it).
        device: "auto" | "cpu" | "cuda".
        batch_size: rows (seconds, or Whisper windows) per forward pass.
    """

    def __init__(self, path: str | os.PathLike[str], *, device: str = "auto", batch_size: int = 32) -> None:
        root = _hf_dir(path, "audio_model", "an audio model directory (e.g. facebook/wav2vec2-base-960h, "
                                            "MIT/ast-finetuned-audioset-10-10-0.4593 or openai/whisper-base)")
        model, self.input = _audio_model(root, path)
        self.path = str(path)
        self.kind = model.config.model_type
        self.sampling_rate = self.input.sampling_rate
        self.row_seconds = self.input.row_seconds
        self.normalize = self.input.normalize
        self.runner = _Runner(model, device, batch_size)
        try:
            out = self._forward(np.zeros((1, self.row_seconds * self.sampling_rate), np.float32))
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ValueError(f"audio_model={self.path!r} ({self.kind}): one row of silence does not run through "
                             f"the model ({exc}); expected the feature extractor saved with this checkpoint") from exc
        self.dim = int(out.shape[-1])

    def _forward(self, rows: np.ndarray) -> np.ndarray:
        """(B, D) vectors of 1-s rows, or (B, row_seconds, D) of Whisper windows."""
        import torch

        features = self.input.features(rows)
        r = self.runner
        with r._lock, torch.inference_mode(), r.autocast():
            out = self.input.vectors(r.model, {k: r.to_device(v) for k, v in features.items()})
        return out.float().cpu().numpy()

    def segments(self, y: np.ndarray | None, sr: int, n_segments: int) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's input rows and the per-second mask of :func:`segment_valid`: ``y`` resampled to the
        encoder's rate and cut into rows of ``row_seconds`` (1 s; Whisper: its window), the last one zero-padded;
        a row holding no valid second is zeros (:meth:`row_valid` says which rows to encode).

        Shapes:
            y (n,) float at ``sr`` (None: no audio track) → rows (ceil(S / row_seconds), row_seconds ·
            sampling_rate) float32, mask (S,) bool
        """
        if not isinstance(n_segments, int) or n_segments < 1:
            raise ValueError(f"n_segments={n_segments!r}: expected an int >= 1")
        mask = segment_valid(y, sr, n_segments)
        width = self.row_seconds * self.sampling_rate
        valid = self.row_valid(mask)
        rows = np.zeros((len(valid), width), np.float32)
        if mask.any():
            y = resample(np.asarray(y)[: n_segments * sr], sr, self.sampling_rate)
            for r in np.flatnonzero(valid):
                piece = y[r * width:(r + 1) * width]
                rows[r, :piece.size] = piece
        return rows, mask

    def row_valid(self, mask: np.ndarray) -> np.ndarray:
        """Which rows hold a valid second (rows of one second: ``mask`` itself).

        Shapes:
            mask (S,) → (ceil(S / row_seconds),) bool
        """
        k = self.row_seconds
        mask = np.asarray(mask, bool)
        return np.pad(mask, (0, -mask.size % k)).reshape(-1, k).any(axis=1)

    def check_segments(self, segments: np.ndarray) -> None:
        """Raise ``ValueError`` unless ``segments`` is float32 (R, row_seconds · sampling_rate), the encoder's
        input."""
        width = self.row_seconds * self.sampling_rate
        if segments.dtype != np.float32 or segments.ndim != 2 or segments.shape[1] != width:
            raise ValueError(f"segments: expected float32 (R, {width}), got {segments.dtype} {segments.shape}")

    def rows(self) -> RowEncoder:
        """This encoder for :mod:`features.batching`: rows of :meth:`segments` in, their vectors out ((D,) float32
        per 1-s row, (row_seconds, D) per Whisper window; :func:`audio_seconds` turns them into seconds)."""
        shape = (self.dim,) if self.row_seconds == 1 else (self.row_seconds, self.dim)
        return RowEncoder(forward=lambda rows: (self._forward(rows),), outputs=((shape, np.float32),),
                          batch_size=self.runner.batch_size, check=self.check_segments)

    def embed(self, y: np.ndarray | None, sr: int, n_segments: int) -> tuple[np.ndarray, np.ndarray]:
        """One vector per 1-second segment of ``y`` (resampled to the encoder's rate); masked segments are zeros.

        A partial last segment is zero-padded to one second; segments are masked by :func:`segment_valid`.

        Shapes:
            y (n,) float at ``sr`` (None: no audio track) → vectors (S, D) float32, mask (S,) bool
        """
        rows, mask = self.segments(y, sr, n_segments)
        return audio_seconds(encode_rows(self.rows(), rows, self.row_valid(mask))[0], mask), mask


# ---------------------------------------------------------------------------------------------------- text
_GLOVE_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def _open_vectors(p: Path, arg: str):
    """A text handle on a word-vector file, gunzipped when it is gzip (by its magic bytes, whatever its name)."""
    import gzip

    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ValueError(f"{arg}={str(p)!r} is a zip archive; expected the text file inside it: unzip it and pass "
                         "one file (glove.6B.zip holds glove.6B.50d.txt … glove.6B.300d.txt)")
    # newline="\n": only LF ends a line (a stray CR or U+2028 inside a token does not split it); CRLF's CR is stripped
    kw = dict(encoding="utf-8", errors="replace", newline="\n")
    return gzip.open(p, "rt", **kw) if magic[:2] == b"\x1f\x8b" else open(p, **kw)


def _vector_width(fields: list[str]) -> int:
    """D of a word-vector line without a header: its trailing numbers, leaving at least one field for the word."""
    n = 0
    for f in reversed(fields[1:]):
        try:
            float(f)
        except ValueError:
            break
        n += 1
    return n


def read_glove(path: str | os.PathLike[str], *, arg: str = "text_model") -> tuple[dict[str, int], np.ndarray]:
    """Read a GloVe (``word v1 … vD``) or word2vec / fastText ``.vec`` text file (the same lines after a
    ``count D`` header), plain or gzip-compressed (``.gz``).

    As the released files are: fields are separated by single spaces and the last D fields are the vector, the rest
    is the word, so tokens containing spaces (Common Crawl 840B's ``. . .``, ``at name@domain.com``) or made of
    other whitespace (U+00A0) keep their vectors; trailing spaces (fastText) and CRLF line ends are ignored; a
    byte sequence that is not UTF-8 (word2vec.c truncates words mid-character) is replaced, not fatal; the first
    occurrence of a repeated word wins. Malformed lines (too few fields, a field that is not a number) are skipped
    with one warning when they are rare (at most 1 line in 1,000, as in a few real releases); more than that means
    the file is not a word-vector text file, which raises.

    Returns:
        ``(index, vectors)``: word → row, and the (V, D) float32 matrix.

    Raises:
        FileNotFoundError: no such file. ValueError: a zip archive, or not a word-vector text file (the first bad
        line is named).
    """
    import warnings

    p = Path(path)
    if not p.is_file():
        raise _missing(arg, path, "a GloVe text file (e.g. glove.6B.100d.txt), a word2vec / fastText .vec file or "
                       "a model directory")
    index: dict[str, int] = {}
    rows: list[np.ndarray] = []
    dim, lines, bad, first_bad = None, 0, 0, ""
    with _open_vectors(p, arg) as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.rstrip("\n").rstrip("\r").rstrip(" ").split(" ")
            if fields == [""]:
                continue
            lines += 1
            if lineno == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                dim = int(fields[1])  # word2vec / fastText header: count, width
                continue
            dim = dim or _vector_width(fields)
            vec = None
            if dim >= 1 and len(fields) >= dim + 1:
                with contextlib.suppress(ValueError):
                    vec = np.asarray(fields[len(fields) - dim:], dtype=np.float32)
            if vec is None:
                bad += 1
                first_bad = first_bad or (f"line {lineno}: expected a word and {dim} numbers, got {len(fields)} "
                                          f"fields starting {line[:40]!r}")
                if bad > 10 + lines // 1000:  # fail fast on a file that is not word vectors at all
                    break
                continue
            word = " ".join(fields[: len(fields) - dim])
            if word not in index:
                index[word] = len(rows)
                rows.append(vec)
    if bad and (bad * 1000 > lines or not rows):
        raise ValueError(f"{arg}={str(path)!r} is not a GloVe / word2vec text file ('word v1 … vD' lines): "
                         f"{first_bad}")
    if not rows:
        raise ValueError(f"{arg}={str(path)!r} holds no word vectors; expected 'word v1 … vD' lines")
    if bad:
        warnings.warn(f"{arg}={str(path)!r}: skipped {bad} malformed line(s) of {lines} ({first_bad})", stacklevel=2)
    return index, np.stack(rows)


def align_words(words: Sequence[Sequence[Any]], n_segments: int) -> np.ndarray:
    """Second of each timed word: ``floor((start + end) / 2)``, or -1 when it lies outside ``[0, S)``.

    Shapes:
        words: (W,) of ``(word, start s, end s)`` → (W,) int64
    """
    out = np.full(len(words), -1, np.int64)
    for i, w in enumerate(words):
        mid = (float(w[1]) + float(w[2])) / 2
        if math.isfinite(mid) and 0 <= mid < n_segments:
            out[i] = int(mid)
    return out


def _per_second(vectors: np.ndarray, seconds: np.ndarray, n_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``vectors`` rows per second (``seconds`` = -1 rows ignored)."""
    out = np.zeros((n_segments, vectors.shape[1]), np.float32)
    mask = np.zeros(n_segments, bool)
    for s in range(n_segments):
        rows = seconds == s
        if rows.any():
            out[s] = vectors[rows].mean(axis=0)
            mask[s] = True
    return out, mask


#: sentence-transformers pooling modes and the Pooling config flag of each (its default: mean on, the others off)
_POOLING_FLAGS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                  "mean": "pooling_mode_mean_tokens", "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                  "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}


def _st_pooling(cfg: Any, folder: Path) -> str:
    """The one pooling mode a sentence-transformers Pooling ``config.json`` sets (its ``pooling_mode`` string, or
    the ``pooling_mode_*`` flags with sentence-transformers' defaults)."""
    where = f"text_model: {str(folder / 'config.json')!r}"
    if not isinstance(cfg, Mapping):
        raise ValueError(f"{where} is not a JSON object; expected the Pooling module's config")
    mode = cfg.get("pooling_mode")
    if isinstance(mode, str):
        if mode.lower() not in _POOLING_FLAGS:
            raise ValueError(f"{where}: pooling_mode={mode!r}; expected one of {sorted(_POOLING_FLAGS)}")
        return mode.lower()
    on = [m for m, flag in _POOLING_FLAGS.items() if cfg.get(flag, m == "mean")]
    if len(on) != 1:
        raise ValueError(f"{where} sets the pooling modes {on}; expected exactly one of {sorted(_POOLING_FLAGS)} "
                         "(several are concatenated by sentence-transformers, a width vidpipe does not store)")
    return on[0]


def _pool(tok: np.ndarray, mode: str) -> np.ndarray:
    """The sentence vector of a transcript's token vectors ``h_1 … h_n``, as sentence-transformers pools them:
    cls ``h_1``; lasttoken ``h_n``; max ``max_i h_i``; mean ``Σ h_i / n``; mean_sqrt_len_tokens ``Σ h_i / √n``;
    weightedmean ``Σ i·h_i / Σ i``.

    Shapes:
        tok (n, D) → (D,)
    """
    if mode == "cls":
        return tok[0]
    if mode == "lasttoken":
        return tok[-1]
    if mode == "max":
        return tok.max(axis=0)
    if mode == "mean_sqrt_len_tokens":
        return tok.sum(axis=0) / np.float32(math.sqrt(len(tok)))
    if mode == "weightedmean":
        w = np.arange(1, len(tok) + 1, dtype=np.float32)
        return (tok * w[:, None]).sum(axis=0) / w.sum()
    return tok.mean(axis=0)


class TextEncoder:
    """Transcript → sentence vector, token sequence and per-second vectors (see the module docstring).

    Args:
        path: a Hugging Face text model directory, a sentence-transformers directory, or a GloVe text file.
        max_tokens: L, tokens kept in the stored sequence (longer transcripts are truncated).
        device: "auto" | "cpu" | "cuda".
        batch_size: transcripts per forward pass.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_tokens: int = 64, device: str = "auto",
                 batch_size: int = 32) -> None:
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens={max_tokens!r}: expected an int >= 1")
        p = Path(path) if isinstance(path, (str, os.PathLike)) and str(path) else None
        if p is None:
            raise ValueError(f"text_model={path!r}: expected the path of a model directory or GloVe file")
        if not p.exists():
            raise _missing("text_model", path, "a text model directory (e.g. bert-base-uncased, "
                           "sentence-transformers/all-MiniLM-L6-v2) or a GloVe text file")
        self.path = str(path)
        self.max_tokens = max_tokens
        self.pooling, self.normalize, self.lowercase = "mean", False, False
        self.max_seq_length: int | None = None  # sentence-transformers' truncation length, when it sets one
        if p.is_file():
            self.kind = "glove"
            self.index, self.vectors = read_glove(p)
            self.dim = int(self.vectors.shape[1])
            return
        model_dir = p
        if (p / "modules.json").is_file():
            self.kind = "sentence-transformers"
            model_dir = self._sentence_transformers(p)
        else:
            self.kind = "transformers"
        _hf_dir(model_dir, "text_model", "a text model directory")
        from transformers import AutoModel, AutoTokenizer

        with _quiet_loading():
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(f"text_model={self.path!r}: its tokenizer has no fast (tokenizer.json / Rust) version; "
                             "word timings need word ids: save the tokenizer with tokenizers installed")
        with _quiet_loading():
            model = AutoModel.from_pretrained(model_dir, local_files_only=True)
        positions = getattr(model.config, "max_position_embeddings", 512) or 512
        self.limit = int(min(self.max_seq_length or getattr(self.tokenizer, "model_max_length", 512) or 512,
                             positions, 4096))
        self.runner = _Runner(model, device, batch_size)
        self.dim = int(model.config.hidden_size)

    def _sentence_transformers(self, root: Path) -> Path:
        """Read a sentence-transformers directory as sentence-transformers does: the Transformer's folder and its
        ``sentence_bert_config.json`` (``max_seq_length``, ``do_lower_case``), the Pooling mode, whether a Normalize
        step follows. Other modules (Dense, …) change the sentence vector's width and are refused."""
        model_dir = None
        for kind, folder, full in _st_modules(root, "text_model"):
            if kind == "Transformer" and model_dir is None:
                model_dir = folder
                cfg = _json(folder / "sentence_bert_config.json", arg="text_model")
                length = cfg.get("max_seq_length") if isinstance(cfg, Mapping) else None
                if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 1):
                    raise ValueError(f"text_model={self.path!r}: sentence_bert_config.json max_seq_length={length!r}; "
                                     "expected an int >= 1")
                self.max_seq_length = length
                self.lowercase = bool(cfg.get("do_lower_case", False)) if isinstance(cfg, Mapping) else False
            elif kind == "Pooling":
                self.pooling = _st_pooling(_json(folder / "config.json", arg="text_model"), folder)
            elif kind == "Normalize":
                self.normalize = True
            else:
                raise ValueError(f"text_model={self.path!r}: sentence-transformers module {full!r} is not supported "
                                 f"({folder.name}/); expected Transformer, Pooling and optionally Normalize "
                                 "(a Dense layer changes the sentence vector's width)")
        if model_dir is None:
            raise ValueError(f"text_model={self.path!r}: modules.json lists no Transformer module; expected "
                             "sentence_transformers.models.Transformer first")
        return model_dir

    def embed(self, texts: Sequence[str], words: Sequence[Sequence[Sequence[Any]]] | None = None,
              n_segments: int = 15) -> list[dict[str, np.ndarray]]:
        """Embed transcripts; ``words[i]`` = ``[(word, start, end), …]`` of transcript i (empty: no timings).

        With timings the timed words are what is encoded (the transcript text is their join); without, the text.

        Returns:
            one dict per transcript with the arrays of ``features.schema.schema("embed_text")``.

        Shapes:
            sentence (D,), sentence_valid (), tokens (L, D), tokens_mask (L,), per_second (S, D), per_second_mask (S,)
        """
        if words is not None and len(words) != len(texts):
            raise ValueError(f"words: expected one list per text ({len(texts)}), got {len(words)}")
        items = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"texts[{i}]: expected a str, got {type(text).__name__}")
            timed = [w for w in (words[i] if words is not None else []) or [] if len(w) >= 3 and str(w[0]).strip()]
            items.append((text, timed))
        if self.kind == "glove":
            return [self._glove_one(text, timed, n_segments) for text, timed in items]
        out = []
        for start in range(0, len(items), self.runner.batch_size):
            out += self._transformer_batch(items[start:start + self.runner.batch_size], n_segments)
        return out

    def _result(self, tok: np.ndarray, sentence: np.ndarray | None, seconds: np.ndarray,
                n_segments: int) -> dict[str, np.ndarray]:
        l_max = self.max_tokens
        tokens = np.zeros((l_max, self.dim), np.float32)
        keep = min(len(tok), l_max)
        tokens[:keep] = tok[:keep]
        mask = np.zeros(l_max, bool)
        mask[:keep] = True
        valid = sentence is not None
        if sentence is None:
            sentence = np.zeros(self.dim, np.float32)
        elif self.normalize:
            sentence = sentence / max(float(np.linalg.norm(sentence)), 1e-12)
        per_s, per_mask = _per_second(tok, seconds, n_segments) if len(tok) else (
            np.zeros((n_segments, self.dim), np.float32), np.zeros(n_segments, bool))
        return {"sentence": sentence.astype(np.float32), "sentence_valid": np.array(valid), "tokens": tokens,
                "tokens_mask": mask, "per_second": per_s, "per_second_mask": per_mask}

    def _glove_one(self, text: str, timed: list, n_segments: int) -> dict[str, np.ndarray]:
        if timed:
            pairs = [(m.lower(), sec) for w, sec in zip(timed, align_words(timed, n_segments))
                     for m in _GLOVE_WORD.findall(str(w[0]))]
        else:
            pairs = [(m.lower(), -1) for m in _GLOVE_WORD.findall(text)]
        known = [(self.index[w], s) for w, s in pairs if w in self.index]
        if not known:
            return self._result(np.zeros((0, self.dim), np.float32), None, np.zeros(0, np.int64), n_segments)
        rows = np.asarray([k for k, _ in known])
        tok = self.vectors[rows]
        return self._result(tok, tok.mean(axis=0), np.asarray([s for _, s in known]), n_segments)

    def _transformer_batch(self, items: list[tuple[str, list]], n_segments: int) -> list[dict[str, np.ndarray]]:
        import torch

        texts = [[str(w[0]).strip() for w in timed] if timed else text.split() for text, timed in items]
        if self.lowercase:  # sentence-transformers' do_lower_case
            texts = [[w.lower() for w in t] for t in texts]
        nonempty = [i for i, t in enumerate(texts) if t]
        results: list[dict[str, np.ndarray] | None] = [None] * len(items)
        if nonempty:
            enc = self.tokenizer([texts[i] for i in nonempty], is_split_into_words=True, padding=True,
                                 truncation=True, max_length=self.limit, return_tensors="pt")
            r = self.runner
            with r._lock, torch.inference_mode(), r.autocast():
                out = r.model(**{k: r.to_device(v.numpy()) for k, v in enc.items()})
            hidden = out.last_hidden_state.float().cpu().numpy()
            attn = enc["attention_mask"].numpy().astype(bool)
            for j, i in enumerate(nonempty):
                _, timed = items[i]
                tok = hidden[j][attn[j]]
                sentence = _pool(tok, self.pooling)
                word_ids = enc.word_ids(j)
                word_sec = align_words(timed, n_segments) if timed else np.full(len(texts[i]), -1)
                seconds = np.asarray([word_sec[w] if w is not None else -1
                                      for w, a in zip(word_ids, attn[j]) if a], np.int64)
                results[i] = self._result(tok, sentence, seconds, n_segments)
        empty = np.zeros((0, self.dim), np.float32)
        return [res if res is not None else self._result(empty, None, np.zeros(0, np.int64), n_segments)
                for res in results]


# ---------------------------------------------------------------------------------------------------- loading
@functools.lru_cache(maxsize=4)
def _cached(kind: str, path: str, digest: str, device: str, batch_size: int, max_tokens: int) -> Any:
    if kind == "vision":
        return VisionEncoder(path, device=device, batch_size=batch_size)
    if kind == "audio":
        return AudioEncoder(path, device=device, batch_size=batch_size)
    return TextEncoder(path, max_tokens=max_tokens, device=device, batch_size=batch_size)


_LOAD_LOCK = threading.Lock()


def _load(kind: str, path: str, device: str, batch_size: int, max_tokens: int = 64) -> Any:
    digest = encoder_digest(path, arg=f"{kind}_model")  # a changed checkpoint at the same path is reloaded
    with _LOAD_LOCK:
        return _cached(kind, os.fspath(path), digest, device, batch_size, max_tokens)


def load_vision_encoder(path: str | os.PathLike[str], *, device: str = "auto", batch_size: int = 32) -> VisionEncoder:
    """The :class:`VisionEncoder` at ``path``, shared by every caller in this process (loaded once per checkpoint)."""
    return _load("vision", os.fspath(path), device, batch_size)


def load_audio_encoder(path: str | os.PathLike[str], *, device: str = "auto", batch_size: int = 32) -> AudioEncoder:
    """The :class:`AudioEncoder` at ``path``, shared by every caller in this process."""
    return _load("audio", os.fspath(path), device, batch_size)


def load_text_encoder(path: str | os.PathLike[str], *, max_tokens: int = 64, device: str = "auto",
                      batch_size: int = 32) -> TextEncoder:
    """The :class:`TextEncoder` at ``path``, shared by every caller in this process."""
    return _load("text", os.fspath(path), device, batch_size, max_tokens)

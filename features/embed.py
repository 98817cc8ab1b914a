"""Pretrained encoders as cached embeddings: frames, 1-second audio segments and transcripts → vectors.

Three encoders, each loaded from a **local** path only (nothing is ever downloaded):

* :class:`VisionEncoder` — a Hugging Face image model directory (CLIP, SigLIP, ViT, DINOv2, ResNet, …: any
  ``config.json`` + weights that ``AutoModel`` or ``CLIPVisionModelWithProjection`` loads). One vector per frame (CLIP:
  the projected ``image_embeds``; otherwise ``pooler_output``, else the first token), optionally the patch tokens.
* :class:`AudioEncoder` — a Hugging Face waveform model directory (wav2vec 2.0, HuBERT, WavLM, data2vec-audio: models
  whose input is ``input_values``). One vector per 1-second segment: the mean of the encoder's output frames.
* :class:`TextEncoder` — a Hugging Face text model directory (BERT, MPNet, MiniLM, …: WordPiece fast tokenizers), a
  sentence-transformers directory (``modules.json`` + Transformer + Pooling [+ Normalize]) or a GloVe / word2vec text
  file (``word v1 v2 …`` lines).
  A sentence vector (mean-pooled, or the sentence-transformers pooling), the token sequence with its mask, and one
  vector per second from the words whose timings fall in it.

Optional face crops (``vision_faces``): :func:`load_face_detector` loads OpenCV's bundled Haar cascade (``"haar"``,
OpenCV 4.x wheels) or a local detector file (a YuNet ``.onnx``, a cascade ``.xml``, or any suffix given a loader with
:func:`register_face_detector`); :func:`face_crops` cuts the largest face of each frame, and a frame without a face is
masked (not valid), never encoded as a zero or whole frame.

Preprocessing is numpy/OpenCV (``torchvision`` cannot be imported beside this project's CPU torch): images are
resized so the short side is the checkpoint's ``size`` (shortest edge) and centre-cropped to its ``crop_size`` — done
by the frame sampler (:mod:`features.video`, area filter) — then rescaled and normalised with the checkpoint's
``image_mean`` / ``image_std`` from ``preprocessor_config.json`` (defaults 0.5 / 0.5 without one). Checkpoints whose
processor squashes the frame to a square without cropping get the centre crop instead. Audio is resampled from the
audio stage's PCM to the encoder's ``sampling_rate`` (``scipy.signal.resample_poly``) and, when the checkpoint's
processor says ``do_normalize``, each segment is scaled to zero mean and unit variance.

:func:`encoder_digest` hashes every weight, config and vocabulary file of a checkpoint (relative name, size and
content), so swapping a checkpoint changes the fingerprint of exactly the stage that reads it.

Inference runs under ``torch.inference_mode`` in batches of ``batch_size`` items, bf16 autocast and pinned-memory
transfers on CUDA; one forward at a time per loaded encoder (a lock), so worker threads that share an encoder do not
oversubscribe the CPU, and memory is bounded by the batch, never by the video's length.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from features.fingerprint import DigestCache, fingerprint

__all__ = [
    "AudioEncoder",
    "FaceDetector",
    "HAAR_CASCADE",
    "ImagePreprocessing",
    "TextEncoder",
    "VisionEncoder",
    "align_words",
    "encoder_digest",
    "face_crops",
    "face_detector_digest",
    "image_preprocessing",
    "load_audio_encoder",
    "load_face_detector",
    "load_text_encoder",
    "load_vision_encoder",
    "read_glove",
    "register_face_detector",
    "resample",
    "segment_valid",
]

# Files that decide what a checkpoint computes: weights, configs, vocabularies, GloVe text.
_DIGEST_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model", ".vec", ".msgpack", ".h5")
_DIGESTS = DigestCache()  # checkpoint files' digests, memoised on stat for the life of the process
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
    return p


def _stat_digest(path: Path) -> str:
    with _DIGEST_LOCK:  # DigestCache is not thread-safe; extraction plans from several threads
        return _DIGESTS.digest(path.resolve())


def encoder_digest(path: str | os.PathLike[str], *, arg: str = "path") -> str:
    """Content digest of a checkpoint: every weight / config / vocabulary file (relative name, size, blake2b).

    A directory is walked recursively (hidden entries such as ``.cache`` skipped); a single file (GloVe) is hashed
    alone. Digests are memoised on ``(path, size, mtime_ns, inode)``, so re-planning costs a ``stat`` per file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a directory without any weight or config file.
    """
    p = Path(path)
    if not p.exists():
        raise _missing(arg, path, "a local model directory or file")
    if p.is_file():
        files = [(p.name, p)]
    else:
        files = sorted((f.relative_to(p).as_posix(), f) for f in p.rglob("*")
                       if f.is_file() and f.name.endswith(_DIGEST_SUFFIXES)
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
        if not files:
            raise ValueError(f"{arg}={str(path)!r} holds no weight or config files ({', '.join(_DIGEST_SUFFIXES)})")
    parts = [f"{rel}:{f.stat().st_size}:{_stat_digest(f)}" for rel, f in files]
    return fingerprint("encoder-weights", 1, None, parts)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}") from exc


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
        self.preprocessing = image_preprocessing(_json(root / "preprocessor_config.json"), image_size)
        self.runner = _Runner(model, device, batch_size)
        vec, patches = self._forward(np.zeros((1, self.preprocessing.crop, self.preprocessing.crop, 3), np.uint8))
        self.dim = int(vec.shape[1])
        self.patch_shape = None if patches is None else tuple(int(s) for s in patches.shape[1:])

    def _pixels(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) RGB → normalised float32 (B, 3, H, W)."""
        pp = self.preprocessing
        x = frames.astype(np.float32) * np.float32(pp.rescale)
        x = (x - np.asarray(pp.mean, np.float32)) / np.asarray(pp.std, np.float32)
        return np.ascontiguousarray(np.moveaxis(x, -1, 1))

    def _forward(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
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
        patches = hidden[:, 1:] if hidden is not None and hidden.dim() == 3 and hidden.shape[1] > 1 else None
        vec = vec.reshape(vec.shape[0], -1).float().cpu().numpy()
        return vec, None if patches is None else patches.float().cpu().numpy()

    def embed(self, frames: np.ndarray, valid: np.ndarray | None = None, *,
              patches: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Vectors of the valid frames (zeros elsewhere) and, with ``patches``, their patch tokens.

        Shapes:
            frames (N, crop, crop, 3) uint8 RGB, valid (N,) bool → vectors (N, D) float32,
            patch tokens (N, P, D_h) float16 or None
        """
        frames = np.asarray(frames)
        crop = self.preprocessing.crop
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (crop, crop, 3):
            raise ValueError(f"frames: expected uint8 (N, {crop}, {crop}, 3), got {frames.dtype} {frames.shape}")
        n = len(frames)
        valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
        vectors = np.zeros((n, self.dim), np.float32)
        tokens = None
        if patches:
            if self.patch_shape is None:
                raise ValueError(f"vision_model={self.path!r} ({self.kind}) returns no patch tokens")
            tokens = np.zeros((n, *self.patch_shape), np.float16)
        idx = np.flatnonzero(valid)
        for start in range(0, len(idx), self.runner.batch_size):
            rows = idx[start:start + self.runner.batch_size]
            vec, pt = self._forward(frames[rows])
            vectors[rows] = vec
            if tokens is not None and pt is not None:
                tokens[rows] = pt.astype(np.float16)
        return vectors, tokens


# ---------------------------------------------------------------------------------------------------- faces
#: the cascade that ``vision_faces="haar"`` loads from OpenCV's package data (OpenCV 4.x wheels ship it)
HAAR_CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class FaceDetector:
    """A face detector: ``detect(frame)`` gives the faces of one RGB uint8 (H, W, 3) frame as (K, 4) float32
    ``(x, y, w, h)`` boxes in pixels (K = 0 without a face). ``name`` says which model it is (records, errors)."""

    name: str
    detect: Callable[[np.ndarray], np.ndarray]


def _cascade_detector(path: Path) -> FaceDetector:
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise ValueError(f"vision_faces={str(path)!r} is a Haar/LBP cascade, which OpenCV {cv2.__version__} cannot "
                         "load (cascades left OpenCV's main module in 5.0); install opencv-python-headless<5 or use "
                         "a YuNet .onnx file (face_detection_yunet_2023mar.onnx from the OpenCV model zoo)")
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
        raise ValueError(f"vision_faces='haar': this OpenCV ({cv2.__version__}) ships no {HAAR_CASCADE} (OpenCV 5 "
                         "dropped the cascades); install opencv-python-headless<5, or pass the path of a local "
                         "face detector: a cascade .xml or a YuNet .onnx (face_detection_yunet_2023mar.onnx)")
    return path


def face_detector_digest(spec: str) -> str:
    """Content digest of the detector ``vision_faces=spec`` loads (its model file), for the stage fingerprint."""
    return encoder_digest(_haar_path() if spec == "haar" else spec, arg="vision_faces")


def load_face_detector(spec: str) -> FaceDetector:
    """The face detector of ``vision_faces``: ``"haar"`` (OpenCV's bundled frontal-face cascade) or a local model
    file whose suffix names its loader (:func:`register_face_detector`). Never downloads.

    Raises:
        FileNotFoundError: the file does not exist. ValueError: an unknown suffix, or a file the loader refuses.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"vision_faces={spec!r}: expected 'haar' or the path of a local face-detector model file")
    path = _haar_path() if spec == "haar" else Path(spec)
    if not path.exists():
        raise _missing("vision_faces", spec, "a face-detector model file (a YuNet .onnx or an OpenCV cascade .xml)")
    loader = _FACE_LOADERS.get(path.suffix.lower())
    if loader is None:
        raise ValueError(f"vision_faces={spec!r}: no face-detector loader for {path.suffix!r} files; expected one of "
                         f"{sorted(_FACE_LOADERS)} or 'haar'")
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


class AudioEncoder:
    """A local Hugging Face waveform model (``input_values``): one vector per 1-second segment.

    Args:
        path: the model directory (``config.json``, weights, optionally ``preprocessor_config.json`` with
            ``sampling_rate`` and ``do_normalize``).
        device: "auto" | "cpu" | "cuda".
        batch_size: segments per forward pass.
    """

    def __init__(self, path: str | os.PathLike[str], *, device: str = "auto", batch_size: int = 32) -> None:
        from transformers import AutoModel

        root = _hf_dir(path, "audio_model", "a waveform model directory (e.g. facebook/wav2vec2-base-960h)")
        with _quiet_loading():
            model = AutoModel.from_pretrained(root, local_files_only=True)
        if getattr(model, "main_input_name", None) != "input_values":
            raise ValueError(
                f"audio_model={str(path)!r} is a {model.config.model_type!r} model taking "
                f"{getattr(model, 'main_input_name', '?')!r}; expected a raw-waveform model (input_values): "
                "wav2vec 2.0, HuBERT, WavLM or data2vec-audio")
        pp = _json(root / "preprocessor_config.json")
        self.path = str(path)
        self.kind = model.config.model_type
        self.sampling_rate = int(pp.get("sampling_rate") or getattr(model.config, "sampling_rate", 16000) or 16000)
        self.normalize = bool(pp.get("do_normalize", True))
        self.runner = _Runner(model, device, batch_size)
        self.dim = int(self._forward(np.zeros((1, self.sampling_rate), np.float32)).shape[1])

    def _forward(self, segments: np.ndarray) -> np.ndarray:
        import torch

        x = segments.astype(np.float32)
        if self.normalize:
            x = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-7)
        r = self.runner
        with r._lock, torch.inference_mode(), r.autocast():
            out = r.model(input_values=r.to_device(x))
        return out.last_hidden_state.float().mean(dim=1).cpu().numpy()

    def embed(self, y: np.ndarray | None, sr: int, n_segments: int) -> tuple[np.ndarray, np.ndarray]:
        """One vector per 1-second segment of ``y`` (resampled to the encoder's rate); masked segments are zeros.

        A partial last segment is zero-padded to one second; segments are masked by :func:`segment_valid`.

        Shapes:
            y (n,) float at ``sr`` (None: no audio track) → vectors (S, D) float32, mask (S,) bool
        """
        if not isinstance(n_segments, int) or n_segments < 1:
            raise ValueError(f"n_segments={n_segments!r}: expected an int >= 1")
        vectors = np.zeros((n_segments, self.dim), np.float32)
        mask = segment_valid(y, sr, n_segments)
        if not mask.any():
            return vectors, mask
        rate = self.sampling_rate
        y = resample(np.asarray(y)[: n_segments * sr], sr, rate)
        rows = np.flatnonzero(mask)
        segs = np.zeros((len(rows), rate), np.float32)
        for i, s in enumerate(rows):
            piece = y[s * rate:(s + 1) * rate]
            segs[i, :piece.size] = piece
        step = self.runner.batch_size
        for start in range(0, len(rows), step):
            vectors[rows[start:start + step]] = self._forward(segs[start:start + step])
        return vectors, mask


# ---------------------------------------------------------------------------------------------------- text
_GLOVE_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def read_glove(path: str | os.PathLike[str], *, arg: str = "text_model") -> tuple[dict[str, int], np.ndarray]:
    """Read a GloVe (``word v1 … vD``) or word2vec text file (the same lines after a ``count D`` header).

    Words may contain spaces in some releases (Common Crawl's 840B file): the last D fields are the vector, the
    rest is the word. Blank lines are skipped; the first occurrence of a repeated word wins.

    Returns:
        ``(index, vectors)``: word → row, and the (V, D) float32 matrix.

    Raises:
        FileNotFoundError: no such file. ValueError: inconsistent widths or non-numeric values (line number given).
    """
    p = Path(path)
    if not p.is_file():
        raise _missing(arg, path, "a GloVe text file (e.g. glove.6B.100d.txt) or a model directory")
    index: dict[str, int] = {}
    rows: list[np.ndarray] = []
    dim = None
    with open(p, encoding="utf-8", errors="strict") as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.rstrip("\n").rstrip("\r").rstrip(" ").split(" ")
            if not fields or fields == [""]:
                continue
            if lineno == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                dim = int(fields[1])  # word2vec header: count, width
                continue
            if dim is None:
                dim = len(fields) - 1
            if len(fields) < dim + 1 or dim < 1:
                raise ValueError(f"{str(path)!r} line {lineno}: expected a word and {dim} numbers, got "
                                 f"{len(fields)} fields")
            word = " ".join(fields[: len(fields) - dim])
            try:
                vec = np.asarray(fields[len(fields) - dim:], dtype=np.float32)
            except ValueError as exc:
                raise ValueError(f"{str(path)!r} line {lineno}: {exc}") from exc
            if word not in index:
                index[word] = len(rows)
                rows.append(vec)
    if not rows:
        raise ValueError(f"{str(path)!r} holds no word vectors")
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
        self.pooling, self.normalize = "mean", False
        if p.is_file():
            self.kind = "glove"
            self.index, self.vectors = read_glove(p)
            self.dim = int(self.vectors.shape[1])
            return
        model_dir = p
        modules = _json(p / "modules.json") if (p / "modules.json").is_file() else None
        if modules is not None:
            self.kind = "sentence-transformers"
            model_dir = self._sentence_transformers(p, modules)
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
        self.limit = int(min(getattr(self.tokenizer, "model_max_length", 512) or 512,
                             getattr(model.config, "max_position_embeddings", 512) or 512, 4096))
        self.runner = _Runner(model, device, batch_size)
        self.dim = int(model.config.hidden_size)

    def _sentence_transformers(self, root: Path, modules: Any) -> Path:
        """Read ``modules.json``: the Transformer's folder, the Pooling mode, whether a Normalize step follows."""
        if not isinstance(modules, list):
            raise ValueError(f"text_model={self.path!r}: modules.json is not a list of modules")
        model_dir = None
        for m in modules:
            kind = str(m.get("type", ""))
            sub = root / str(m.get("path", ""))
            if kind.endswith(".Transformer"):
                model_dir = sub
            elif kind.endswith(".Pooling"):
                cfg = _json(sub / "config.json")
                if cfg.get("pooling_mode_cls_token"):
                    self.pooling = "cls"
                elif cfg.get("pooling_mode_max_tokens"):
                    self.pooling = "max"
                elif cfg.get("pooling_mode_mean_tokens", True):
                    self.pooling = "mean"
            elif kind.endswith(".Normalize"):
                self.normalize = True
            else:
                raise ValueError(f"text_model={self.path!r}: sentence-transformers module {kind!r} is not supported; "
                                 "supported: Transformer, Pooling, Normalize")
        if model_dir is None:
            raise ValueError(f"text_model={self.path!r}: modules.json lists no Transformer module")
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
                if self.pooling == "cls":
                    sentence = tok[0]
                elif self.pooling == "max":
                    sentence = tok.max(axis=0)
                else:
                    sentence = tok.mean(axis=0)
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

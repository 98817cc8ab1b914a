"""Speech transcripts with word timings, through a small speech-recognition backend interface.

A dataset's own transcript is preferred (the pipeline builds ``Transcript(text, [], "dataset")``); otherwise an
:class:`AsrBackend` turns mono PCM into a :class:`Transcript`:

* :class:`PocketSphinxBackend` — pocketsphinx 5 with its bundled US-English acoustic model, language model and
  dictionary: offline, no download, CPU only. Accuracy on real speech is modest; it is the dependable default.
* :class:`WhisperBackend` — faster-whisper (a CTranslate2 model directory) or openai-whisper (a ``.pt`` checkpoint)
  loaded from a **local path only**; nothing is downloaded at run time.

:func:`get_backend` picks one by name, so configuration can say ``asr_backend="whisper", model_path=...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["AsrBackend", "PocketSphinxBackend", "Transcript", "WhisperBackend", "get_backend"]

_ASR_SR = 16000  # both backends' models work on 16 kHz mono
_ALT_PRONUNCIATION = re.compile(r"\(\d+\)$")  # pocketsphinx marks alternative pronunciations as "word(2)"
# Below this RMS level (dBFS) in every 25 ms frame a clip is silence: recognisers hallucinate words on silence.
_SILENCE_DBFS = -60.0


@dataclass
class Transcript:
    """What was said in a clip."""

    text: str  # the transcript, words separated by single spaces ("" when nothing was recognised)
    words: list[tuple[str, float, float]] = field(default_factory=list)  # (word, start s, end s) in time order
    source: str = "dataset"  # "dataset" or "asr:<backend name>"

    def to_record(self) -> dict[str, object]:
        """Plain JSON-able values: text, source and the word timings as ``[[word, start, end], ...]``."""
        return {"text": self.text, "source": self.source,
                "words": [[w, float(s), float(e)] for w, s, e in self.words]}


@runtime_checkable
class AsrBackend(Protocol):
    """A speech recogniser: ``transcribe(y, sr)`` of mono float PCM returns a :class:`Transcript`."""

    name: str  # short name recorded in Transcript.source as "asr:<name>"

    def transcribe(self, y: np.ndarray, sr: int) -> Transcript:
        """Transcribe mono float samples in [-1, 1] at ``sr`` Hz. Shapes: y (n_samples,)."""
        ...


def _mono_16k(y: np.ndarray, sr: int) -> np.ndarray:
    """Validate mono float PCM and resample it to 16 kHz (librosa/soxr). Shapes: (n,) → (m,) float32."""
    arr = np.asarray(y)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"y: expected a 1-D float array of mono samples, got shape {arr.shape} {arr.dtype}")
    if not (isinstance(sr, int) and sr > 0):
        raise ValueError(f"sr={sr!r}: expected a positive int sample rate")
    arr = arr.astype(np.float32, copy=False)
    if sr != _ASR_SR and arr.size:
        import librosa

        arr = librosa.resample(arr, orig_sr=sr, target_sr=_ASR_SR).astype(np.float32)
    return arr


def _is_silent(pcm: np.ndarray) -> bool:
    """Loudest 25 ms frame below ``_SILENCE_DBFS`` (``20·log10(rms)``). Shapes: pcm (n,) at 16 kHz."""
    frame = _ASR_SR // 40
    usable = pcm[: pcm.size // frame * frame].reshape(-1, frame) if pcm.size >= frame else pcm.reshape(1, -1)
    rms = np.sqrt(np.mean(np.square(usable, dtype=np.float64), axis=1))
    return bool(20.0 * np.log10(max(float(rms.max()), 1e-12)) < _SILENCE_DBFS)


class PocketSphinxBackend:
    """Offline English ASR with pocketsphinx 5's bundled model; word timings from its segmentation.

    Args:
        **config: pocketsphinx ``Config`` options overriding the bundled defaults (e.g. ``hmm``, ``lm``, ``dict``
            paths of another local model, or ``beam``).
    """

    name = "pocketsphinx"

    def __init__(self, **config: object) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ImportError(
                "the pocketsphinx backend needs the 'pocketsphinx' package: pip install pocketsphinx") from exc
        self._decoder = Decoder(loglevel="FATAL", **config)
        self._frame_rate = float(self._decoder.config["frate"])

    def transcribe(self, y: np.ndarray, sr: int) -> Transcript:
        """Recognise one utterance.

        pocketsphinx wants 16 kHz mono int16: the signal is resampled and scaled by 32767 (clipped to [-1, 1]).
        A silent clip (every 25 ms frame below -60 dBFS) is not decoded: recognisers invent words in silence.
        No hypothesis at all (pocketsphinx's ``seg()`` is ``None`` for an utterance too short to decode, such as a
        0.06-s track) is an empty transcript, as is one made of fillers only.
        Fillers (``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``) are dropped and ``word(2)`` becomes ``word``. A word
        spans frames ``[start_frame, end_frame]`` at ``frate`` (100) frames per second, so
        ``start = start_frame / frate`` and ``end = (end_frame + 1) / frate``, clipped to the clip's length.

        Shapes:
            y: (n_samples,) float
        """
        pcm = _mono_16k(y, sr)
        source = f"asr:{self.name}"
        if pcm.size == 0 or _is_silent(pcm):
            return Transcript("", [], source)
        duration = pcm.size / _ASR_SR
        raw = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        decoder = self._decoder
        decoder.start_utt()
        decoder.process_raw(raw, no_search=False, full_utt=True)
        decoder.end_utt()
        words: list[tuple[str, float, float]] = []
        for seg in decoder.seg() or ():
            token = seg.word
            if not token or token[0] in "<[(":
                continue
            token = _ALT_PRONUNCIATION.sub("", token)
            start = min(seg.start_frame / self._frame_rate, duration)
            end = min((seg.end_frame + 1) / self._frame_rate, duration)
            words.append((token, start, max(start, end)))
        return Transcript(" ".join(w for w, _, _ in words), words, source)


class WhisperBackend:
    """Whisper ASR from a local model: faster-whisper for a CTranslate2 directory, openai-whisper for a ``.pt`` file.

    Args:
        model_path: local model directory (faster-whisper) or checkpoint file (openai-whisper). Nothing is
            downloaded: convert or download the model beforehand and pass its path.
        device: "cpu" or "cuda".
        compute_type: faster-whisper precision, e.g. "int8" (CPU) or "float16" (GPU).
        language: ISO code such as "en", or None to detect.
        beam_size: decoding beam width.

    Raises:
        ValueError: ``model_path`` does not exist.
        ImportError: the package the model needs is not installed (the message says which to pip install).
    """

    name = "whisper"

    def __init__(self, model_path: str | Path, *, device: str = "cpu", compute_type: str = "int8",
                 language: str | None = None, beam_size: int = 1) -> None:
        path = Path(model_path).expanduser()
        if not path.exists():
            raise ValueError(
                f"model_path={str(model_path)!r}: no such file or directory; whisper models are never downloaded at "
                "run time — put a faster-whisper model directory or an openai-whisper .pt file there"
            )
        self.language = language
        self.beam_size = beam_size
        if path.is_dir():
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise ImportError(
                    f"{path} is a model directory, which needs faster-whisper: pip install faster-whisper"
                ) from exc
            self._kind = "faster"
            self._model = WhisperModel(str(path), device=device, compute_type=compute_type, local_files_only=True)
        else:
            try:
                import whisper
            except ImportError as exc:
                raise ImportError(f"{path} is a checkpoint file, which needs openai-whisper: pip install openai-whisper"
                                  ) from exc
            self._kind = "openai"
            self._model = whisper.load_model(str(path), device=device)

    def transcribe(self, y: np.ndarray, sr: int) -> Transcript:
        """Transcribe with word timestamps; no segments (or none with text) is an empty transcript.

        Shapes: y (n_samples,) float."""
        pcm = _mono_16k(y, sr)
        source = f"asr:{self.name}"
        if pcm.size == 0 or _is_silent(pcm):
            return Transcript("", [], source)
        words: list[tuple[str, float, float]] = []
        texts: list[str] = []
        if self._kind == "faster":
            segments, _ = self._model.transcribe(pcm, language=self.language, beam_size=self.beam_size,
                                                 word_timestamps=True)
            for seg in segments or ():
                texts.append((seg.text or "").strip())
                words += [(w.word.strip(), float(w.start), float(w.end)) for w in (seg.words or [])]
        else:
            result = self._model.transcribe(pcm, language=self.language, beam_size=self.beam_size,
                                            word_timestamps=True, fp16=False)
            for seg in (result or {}).get("segments") or ():
                texts.append(str(seg.get("text") or "").strip())
                words += [(str(w["word"]).strip(), float(w["start"]), float(w["end"])) for w in seg.get("words") or ()]
        return Transcript(" ".join(t for t in texts if t), [w for w in words if w[0]], source)


_BACKENDS = {"pocketsphinx": PocketSphinxBackend, "whisper": WhisperBackend}


def get_backend(name: str, **options: object) -> AsrBackend:
    """Construct an ASR backend by name: "pocketsphinx" (offline default) or "whisper" (needs ``model_path``).

    Raises:
        ValueError: unknown ``name``.
    """
    try:
        cls = _BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"name={name!r}: expected one of {sorted(_BACKENDS)}") from None
    return cls(**options)

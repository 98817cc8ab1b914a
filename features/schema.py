"""What each extraction stage writes per video, declared once: array names, dtypes, shapes and record fields.

Every consumer reads these declarations instead of retyping names: the extraction checks each output against its
stage's :class:`StageSchema` before committing it (:meth:`StageSchema.check`), :mod:`features.packs` and
:func:`features.packs.node_features` read arrays through :meth:`StageSchema.name`, ``vidpipe inspect --schema`` prints
them, and the stage table of docs/ARCHITECTURE.md is :func:`markdown_table` (a test keeps the two equal).

Shapes use the house letters: S seconds (1-s segments), T frames per segment, N sampled frames of a profile (S·T for
``per_second``, ``n_frames`` for ``uniform``), H×W pixels, C audio coefficients (``n_mfcc``, or mel bands for
``logmel``), F audio frames, V vocabulary size, L transcript tokens, D an encoder's width, P patches. An array name
containing ``{profile}`` is written once per frame profile (``per_second``, ``uniform``, ``uniform_224``).

The module also names the stages, the dataset-level artifacts and the dataset-name rule, so that the store, the
flows and the CLI share one spelling. It imports only the standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["STAGES", "EMBED_STAGES", "SOURCE_STAGE", "PROFILES", "GRAPH_ARTIFACT", "GRAPH_SONGS_ARTIFACT",
           "VOCABULARY_ARTIFACT", "DATASET_PATTERN", "DATASET_RE", "ArraySpec", "FieldSpec", "StageSchema",
           "STAGE_SCHEMAS", "schema", "markdown_table"]

#: extraction stages in dependency order
STAGES = ("probe", "frames", "audio", "transcripts", "metadata", "text")
#: pretrained-encoder stages (features.embed): each runs when its model path is configured, or is asked for by name
EMBED_STAGES = ("embed_vision", "embed_audio", "embed_text")
#: failure-record stage of a video whose source file is missing: one record per video instead of one per stage
SOURCE_STAGE = "source"
#: frame sampling profiles (features.video): 1-s segments (Sec2Sec), N uniform frames (MCAT), N uniform 224² frames
PROFILES = ("per_second", "uniform", "uniform_224")

#: dataset-level artifacts: the frozen GAT embeddings of the videos (and of the songs), the text stage's vocabulary
GRAPH_ARTIFACT = "graph"
GRAPH_SONGS_ARTIFACT = "graph-songs"
VOCABULARY_ARTIFACT = "vocabulary"

#: a dataset (store) name: a letter or digit, then up to 63 letters, digits, ``.``, ``_`` or ``-``
DATASET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DATASET_RE = re.compile(DATASET_PATTERN)


@dataclass(frozen=True, kw_only=True)
class ArraySpec:
    """One array a stage writes per video."""

    name: str  # array name; "{profile}" stands for each frame profile
    dtype: str  # NumPy dtype name
    shape: tuple[str, ...]  # one house letter (or a fixed size) per axis; () for a scalar
    doc: str  # what it holds, in one line
    optional: bool = False  # written only under the setting its doc names

    def render_shape(self) -> str:
        """The shape as documentation writes it: ``(S, T)``, ``(V,)``, ``()``."""
        return "(" + ", ".join(self.shape) + ("," if len(self.shape) == 1 else "") + ")"


@dataclass(frozen=True, kw_only=True)
class FieldSpec:
    """One field of a stage's per-video record (JSON in the index record, a column of the stage's table)."""

    name: str
    type: str  # Python type as written in annotations
    doc: str  # what it holds, in one line


@dataclass(frozen=True, kw_only=True)
class StageSchema:
    """The declared output of one extraction stage: its arrays and its record's fields."""

    stage: str
    doc: str  # what the stage computes, in one line
    arrays: tuple[ArraySpec, ...] = ()
    record: tuple[FieldSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The declaration as plain JSON: ``{"doc", "arrays": [{"name", "dtype", "shape", "doc", "optional"}],
        "record": [{"name", "type", "doc"}]}`` with shapes rendered as in the docs."""
        return {"doc": self.doc,
                "arrays": [{"name": a.name, "dtype": a.dtype, "shape": a.render_shape(), "doc": a.doc,
                            "optional": a.optional} for a in self.arrays],
                "record": [{"name": f.name, "type": f.type, "doc": f.doc} for f in self.record]}

    def name(self, array: str, profile: str | None = None) -> str:
        """The stored name of the declared ``array`` (for a ``{profile}`` array, of ``profile``'s copy).

        Raises:
            KeyError: ``array`` is not declared for this stage (a consumer asking for an array no stage writes).
            ValueError: a ``{profile}`` array without a profile from :data:`PROFILES`.
        """
        if array not in {a.name for a in self.arrays}:
            raise KeyError(f"array={array!r} is not declared for stage {self.stage!r}; declared: "
                           f"{[a.name for a in self.arrays]}")
        if "{profile}" not in array:
            return array
        if profile not in PROFILES:
            raise ValueError(f"profile={profile!r}: expected one of {list(PROFILES)} for array {array!r}")
        return array.format(profile=profile)

    def spec_of(self, stored: str) -> ArraySpec | None:
        """The declaration a stored array name matches, or None when it is not declared."""
        for spec in self.arrays:
            if spec.name == stored or ("{profile}" in spec.name
                                       and any(spec.name.format(profile=p) == stored for p in PROFILES)):
                return spec
        return None

    def check(self, arrays: Mapping[str, Any] | None, record: Mapping[str, Any] | None) -> None:
        """Refuse an output that does not match the declaration (names, dtypes, number of axes, fixed sizes).

        Every array must be declared and have its dtype and axes; every non-optional array without ``{profile}``
        must be present; every record field must be declared.

        Raises:
            ValueError: naming the stage, the offending array or field, what it was and what is declared.
        """
        for stored, value in (arrays or {}).items():
            spec = self.spec_of(stored)
            if spec is None:
                raise ValueError(f"stage {self.stage!r} wrote array {stored!r}, which features.schema does not "
                                 f"declare; declared: {[a.name for a in self.arrays]}")
            dtype, shape = str(getattr(value, "dtype", type(value).__name__)), tuple(getattr(value, "shape", ()))
            fixed = [(i, int(d)) for i, d in enumerate(spec.shape) if d.isdigit()]
            if dtype != spec.dtype or len(shape) != len(spec.shape) or any(shape[i] != d for i, d in fixed):
                raise ValueError(f"stage {self.stage!r} array {stored!r}: got {dtype} {shape}, declared "
                                 f"{spec.dtype} {spec.render_shape()}")
        absent = [a.name for a in self.arrays
                  if not a.optional and "{profile}" not in a.name and a.name not in (arrays or {})]
        if absent:
            raise ValueError(f"stage {self.stage!r} did not write its declared array(s) {absent}")
        undeclared = sorted(set(record or {}) - {f.name for f in self.record})
        if undeclared:
            raise ValueError(f"stage {self.stage!r} wrote record field(s) {undeclared}, which features.schema does "
                             f"not declare; declared: {[f.name for f in self.record]}")


def _frame_arrays(what: str, dtype: str, shape: tuple[str, ...]) -> tuple[ArraySpec, ...]:
    """A profile's frames-like array with its validity and timestamps (the frames and embed_vision stages)."""
    return (ArraySpec(name="{profile}", dtype=dtype, shape=shape, doc=what),
            ArraySpec(name="{profile}_valid", dtype="bool", shape=("N",), doc="the frame was decoded (else zeros)"),
            ArraySpec(name="{profile}_times", dtype="float32", shape=("N",), doc="its time in seconds, nan if not "
                      "valid"))


_ENCODER_FIELDS = (FieldSpec(name="model", type="str", doc="the encoder's local path"),
                   FieldSpec(name="encoder", type="str", doc="its kind (e.g. clip, vit, wav2vec2, glove)"),
                   FieldSpec(name="dim", type="int", doc="D, its output width"))
_PROFILE_FIELDS = (FieldSpec(name="profiles", type="list[str]", doc="the profiles written"),
                   FieldSpec(name="valid_frames", type="dict[str, int]", doc="valid frames per profile"))

_PROBE_FIELDS = (
    ("duration", "float", "seconds, container duration (else the video stream's)"),
    ("fps", "float", "average frame rate of the video stream"),
    ("n_frames", "int", "frame count (the container's, else round(duration * fps))"),
    ("width", "int", "stored picture width"), ("height", "int", "stored picture height"),
    ("rotation", "int", "0, 90, 180 or 270: degrees clockwise to turn the picture for display"),
    ("display_width", "int", "width as displayed (aspect ratio and rotation applied)"),
    ("display_height", "int", "height as displayed"),
    ("video_codec", "str", "ffmpeg codec name of the video stream decoded"),
    ("audio_codec", "str | None", "codec of the audio stream decoded, None without audio"),
    ("has_video", "bool", "always True (files without video are refused)"),
    ("has_audio", "bool", "the file has an audio stream"),
    ("sample_rate", "int | None", "sample rate in Hz of the audio stream decoded"),
    ("channels", "int | None", "channel count of the audio stream decoded"),
    ("container", "str", "ffmpeg format name"),
    ("variable_frame_rate", "bool", "frame intervals of the first packets vary by more than 25 %"),
    ("start_time", "float", "container start time in seconds"),
    ("sample_aspect_ratio", "float", "pixel aspect ratio"), ("size_bytes", "int", "file size in bytes"),
    ("video_stream", "int", "ffmpeg index of the video stream decoded (cover art skipped)"),
    ("audio_stream", "int | None", "ffmpeg index of the audio stream decoded (default-flagged, else first)"),
    ("field_order", "str", "progressive, tt, bb, tb, bt (interlaced: deinterlaced when decoded) or unknown"),
)
_METADATA_FIELDS = (
    ("duration", "float", "seconds (probe)"), ("width", "int", "display width"), ("height", "int", "display height"),
    ("aspect", "float", "width / height, 0 without a height"), ("fps", "float", "frame rate (probe)"),
    ("has_audio", "bool", "the file has an audio stream"),
    ("upload_hour", "int", "UTC hour of create_time, -1 when unknown"),
    ("upload_weekday", "int", "weekday of create_time (Monday 0), -1 when unknown"),
    ("desc_words", "int", "words in the caption"),
    ("hashtags", "int", "the manifest's hashtag_count, else '#' in the caption"),
    ("caption_chars", "int", "the manifest's caption_length, else the caption's length"),
    ("has_song", "bool", "the manifest names a song"),
    ("log_author_followers", "float", "log(1 + uploader followers), nan when the dataset lacks it"),
    ("log_author_following", "float", "log(1 + accounts the uploader follows), nan when absent"),
    ("log_author_hearts", "float", "log(1 + likes the uploader received), nan when absent"),
    ("log_author_videos", "float", "log(1 + the uploader's video count), nan when absent"),
    ("verified", "float", "1.0 / 0.0 the uploader is verified, nan when absent"),
)

#: stage → its declared output; the order is the stages' dependency order
STAGE_SCHEMAS: Mapping[str, StageSchema] = {s.stage: s for s in (
    StageSchema(stage="probe", doc="ffprobe facts of the file (features.probe.ProbeInfo)",
                record=tuple(FieldSpec(name=n, type=t, doc=d) for n, t, d in _PROBE_FIELDS)),
    StageSchema(stage="frames", doc="RGB frames sampled per profile (features.video)",
                arrays=_frame_arrays("RGB frames, N = S·T (per_second) or n_frames (uniform*)", "uint8",
                                     ("N", "H", "W", "3")),
                record=(*_PROFILE_FIELDS,
                        FieldSpec(name="warnings", type="list[str]", doc="decoder warnings (e.g. corrupt packets)"))),
    StageSchema(stage="audio", doc="per-second and whole-clip MFCC / log-mel (features.audio)", arrays=(
        ArraySpec(name="segments", dtype="float32", shape=("S", "3", "C", "F"),
                  doc="per 1-s segment: feature, Δ, ΔΔ (Sec2Sec's audio image)"),
        ArraySpec(name="segments_mask", dtype="bool", shape=("S",), doc="the segment holds non-silent audio"),
        ArraySpec(name="clip", dtype="float32", shape=("C", "F"), doc="whole-clip matrix, padded / cropped to F"),
        ArraySpec(name="clip_valid", dtype="bool", shape=(), doc="the clip has non-silent audio"),
        ArraySpec(name="clip_frame_valid", dtype="bool", shape=("F",), doc="the frame holds audio (False on padding)"),
        ArraySpec(name="egemaps", dtype="float32", shape=("88",), doc="eGeMAPS functionals (egemaps=True)",
                  optional=True),
        ArraySpec(name="egemaps_valid", dtype="bool", shape=(), doc="they were computed (egemaps=True)",
                  optional=True),
    ), record=(FieldSpec(name="has_audio", type="bool", doc="the file has an audio track"),
               FieldSpec(name="silent", type="bool", doc="the track is silent (or absent)"),
               FieldSpec(name="samples", type="int", doc="PCM samples decoded"))),
    StageSchema(stage="transcripts", doc="the dataset's transcript, or speech recognition (features.transcribe)",
                record=(FieldSpec(name="text", type="str", doc="the transcript"),
                        FieldSpec(name="source", type="str", doc="dataset, none, asr:<backend>[:no-audio]"),
                        FieldSpec(name="words", type="list[list]", doc="[word, start s, end s] from ASR"))),
    StageSchema(stage="metadata", doc="content-agnostic upload-time features (features.metadata, MTAF Table 1)",
                record=tuple(FieldSpec(name=n, type=t, doc=d) for n, t, d in _METADATA_FIELDS)),
    StageSchema(stage="text", doc="bag of words over the training split's vocabulary (features.text)",
                arrays=(ArraySpec(name="bow", dtype="float32", shape=("V",), doc="token counts per vocabulary word"),),
                record=(FieldSpec(name="n_tokens", type="int", doc="tokens in the transcript"),
                        FieldSpec(name="n_known", type="int", doc="vocabulary words present"))),
    StageSchema(stage="embed_vision", doc="a pretrained image encoder's vector per sampled frame (features.embed)",
                arrays=(*_frame_arrays("one vector per sampled frame, zeros where not valid", "float32", ("N", "D")),
                        ArraySpec(name="{profile}_patches", dtype="float16", shape=("N", "P", "D"),
                                  doc="patch tokens (vision_patch_tokens=True)", optional=True),
                        ArraySpec(name="{profile}_face_box", dtype="float32", shape=("N", "4"),
                                  doc="the face crop (x0, y0, x1, y1) as fractions of the frame, nan where none "
                                      "(vision_faces set; {profile}_valid is then False where no face was found)",
                                  optional=True)),
                record=(*_ENCODER_FIELDS,
                        FieldSpec(name="image_size", type="int", doc="the encoder's input crop"), *_PROFILE_FIELDS,
                        FieldSpec(name="face_detector", type="str", doc="the face detector (vision_faces set only)"))),
    StageSchema(stage="embed_audio", doc="a pretrained audio encoder's vector per 1-s segment (features.embed)",
                arrays=(ArraySpec(name="segments", dtype="float32", shape=("S", "D"),
                                  doc="one vector per 1-s segment, zeros where masked"),
                        ArraySpec(name="segments_mask", dtype="bool", shape=("S",),
                                  doc="at least half a second of non-silent audio")),
                record=(*_ENCODER_FIELDS,
                        FieldSpec(name="sampling_rate", type="int", doc="the encoder's input rate"),
                        FieldSpec(name="has_audio", type="bool", doc="the file has an audio track"))),
    StageSchema(stage="embed_text", doc="a pretrained text encoder's vectors of the transcript (features.embed)",
                arrays=(ArraySpec(name="sentence", dtype="float32", shape=("D",), doc="the transcript's vector"),
                        ArraySpec(name="sentence_valid", dtype="bool", shape=(),
                                  doc="the transcript has a known token"),
                        ArraySpec(name="tokens", dtype="float32", shape=("L", "D"),
                                  doc="token vectors, zeros past the end"),
                        ArraySpec(name="tokens_mask", dtype="bool", shape=("L",), doc="the token exists"),
                        ArraySpec(name="per_second", dtype="float32", shape=("S", "D"),
                                  doc="mean vector of the words spoken in second s"),
                        ArraySpec(name="per_second_mask", dtype="bool", shape=("S",),
                                  doc="some timed word falls in second s")),
                record=(*_ENCODER_FIELDS,
                        FieldSpec(name="n_tokens", type="int", doc="tokens kept (≤ L)"),
                        FieldSpec(name="timed_seconds", type="int", doc="seconds with a timed word"))),
)}


def schema(stage: str) -> StageSchema:
    """The declared output of ``stage``.

    Raises:
        ValueError: ``stage`` is not an extraction stage.
    """
    try:
        return STAGE_SCHEMAS[stage]
    except KeyError:
        raise ValueError(f"stage={stage!r}: expected one of {list(STAGE_SCHEMAS)}") from None


def markdown_table() -> str:
    """The stage schemas as the Markdown tables of docs/ARCHITECTURE.md ("Stage outputs"): arrays, then records."""
    lines = ["| stage | array | dtype | shape | holds |", "|---|---|---|---|---|"]
    for s in STAGE_SCHEMAS.values():
        for a in s.arrays:
            lines.append(f"| `{s.stage}` | `{a.name}` | {a.dtype} | {a.render_shape()} | {a.doc} |")
    lines += ["", "| stage | computes | record fields |", "|---|---|---|"]
    for s in STAGE_SCHEMAS.values():
        lines.append(f"| `{s.stage}` | {s.doc} | {', '.join(f'`{f.name}`' for f in s.record)} |")
    return "\n".join(lines)

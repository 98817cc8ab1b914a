"""The names of the extraction stages, in one light module (no Prefect, no NumPy): ``vidpipe inspect`` and the
CLI's start-up path read them without importing :mod:`pipelines.extract`.
"""

from __future__ import annotations

__all__ = ["STAGES", "EMBED_STAGES", "SOURCE_STAGE"]

#: stages in dependency order
STAGES = ("probe", "frames", "audio", "transcripts", "metadata", "text")
#: pretrained-encoder stages (features.embed): each runs when its model path is configured, or is asked for by name
EMBED_STAGES = ("embed_vision", "embed_audio", "embed_text")
#: failure-record stage of a video whose source file is missing: one record per video instead of one per stage
SOURCE_STAGE = "source"

"""The names :mod:`features` and :mod:`models` both use: tasks and their label columns, the pack's modality keys,
and the song–video graph's node and edge types.

The two packages may not import each other (``lint-imports``), so what both need lives here, below them: this package
imports nothing first-party (a contract in ``pyproject.toml``) and nothing outside the standard library.
"""

from __future__ import annotations

import types
from typing import Mapping

__all__ = ["TASK_TARGETS", "TASK_NAMES", "PAPER_TASKS", "MODALITIES", "EARLY_TREND", "SONG", "VIDEO", "USES",
           "REV_USES"]

#: label columns of each task, in the order models predict them (K = their count)
TASK_TARGETS: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    "emotion": ("valence", "arousal"),
    "personality": ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness"),
    "popularity": ("popularity",),
    "popularity_mtaf": ("popularity_mtaf",),  # MTAF eq. 1, computed from the manifest's counts
})
#: every task name (models.base.TASKS maps each to its loss and monitored metric)
TASK_NAMES: tuple[str, ...] = tuple(TASK_TARGETS)
#: the tasks whose labels the datasets ship (``popularity_mtaf`` is computed from TikTok counts); ``compare``'s "all"
PAPER_TASKS: tuple[str, ...] = ("emotion", "personality", "popularity")

#: the key of MTAF's early popularity series (features.trend builds it, models.mtaf reads it)
EARLY_TREND = "early_trend"
#: the modality keys a pack can hold and a model can read (shapes in docs/ARCHITECTURE.md, "Modality tensors")
MODALITIES: tuple[str, ...] = ("vision_seg", "vision", "audio_seg", "audio", "text", "graph", "meta", "egemaps",
                               "vision_seg_emb", "vision_emb", "audio_seg_emb", "audio_emb", "text_emb",
                               "text_sentence_emb", EARLY_TREND)

#: node types of the song–video graph
SONG = "song"
VIDEO = "video"
#: its edge types: a video uses a song as background music, and the reverse edge so messages flow both ways
USES = (VIDEO, "uses", SONG)
REV_USES = (SONG, "rev_uses", VIDEO)

"""The version of what a model reads under each batch key, recorded in every checkpoint and checked on every reload.

A trained model is only as good as the agreement between what it was trained on and what it is fed. The weights alone
cannot tell: a projection trained on the mean of the transcript's token vectors has the same shapes as one trained on
the transcript's sentence vector. So every input key has a version (:data:`INPUT_VERSIONS`), a checkpoint records the
versions of the keys its model reads (:func:`recorded_versions`), and :func:`check_input_versions` refuses a
checkpoint whose model read another set of keys, or a key at another version, with what changed and what to do.

Bump a key's version when what a model reads under it changes meaning (another feature, pooling, normalisation or
layout at the same shape) and say what changed in :data:`INPUT_CHANGES`; every checkpoint that read the key before is
refused, and no other. A checkpoint written before inputs were versioned records none: it is read as having read its
model's keys at version 0, so it loads unless one of them has changed since.
"""

from __future__ import annotations

import types
from typing import Iterable, Mapping

__all__ = ["INPUT_CHANGES", "INPUT_VERSIONS", "check_input_versions", "read_versions", "recorded_versions"]

#: batch key a model reads → the version of its contract (docs/ARCHITECTURE.md, "Modality tensors")
INPUT_VERSIONS: Mapping[str, int] = types.MappingProxyType({
    "vision_seg": 0, "audio_seg": 0, "vision": 0, "audio": 0, "text": 0, "graph": 0, "meta": 0, "egemaps": 0,
    "early_trend": 0, "vision_seg_emb": 0, "audio_seg_emb": 0, "vision_emb": 0, "audio_emb": 0, "text_emb": 0,
    "text_sentence_emb": 1,
})

#: (key, version) → what changed at that version, against the version before (version 0: what checkpoints that
#: record no versions read)
INPUT_CHANGES: Mapping[tuple[str, int], str] = types.MappingProxyType({
    ("text_sentence_emb", 1): "a one-token text modality on embeddings (text_emb_groups=1) reads the transcript's "
                              "stored sentence vector (text_sentence_emb, stage embed_text's 'sentence') instead of "
                              "the mean of its token vectors (text_emb)",
})


def recorded_versions(inputs: Iterable[str]) -> dict[str, int]:
    """The versions a checkpoint records for a model reading ``inputs``.

    Raises:
        ValueError: a key has no version in :data:`INPUT_VERSIONS` (add it there when a model reads a new key).
    """
    inputs = list(inputs)
    unknown = [k for k in inputs if k not in INPUT_VERSIONS]
    if unknown:
        raise ValueError(f"model inputs {unknown} have no version in models.input_versions.INPUT_VERSIONS; "
                         f"expected keys among {sorted(INPUT_VERSIONS)} (add a new key there at version 0)")
    return {k: INPUT_VERSIONS[k] for k in inputs}


def read_versions(recorded: object, reads: Iterable[str]) -> object:
    """The versions a checkpoint or run record read its inputs at: ``recorded`` as it is, or — for one written before
    inputs were versioned (``recorded`` None) — every key of ``reads`` at version 0."""
    return {k: 0 for k in reads} if recorded is None else recorded


def _changes(keys: Iterable[str], after: Mapping[str, int]) -> list[str]:
    """What changed for ``keys`` since the versions in ``after`` (0 = unversioned), oldest first."""
    return [f"{key}@{v}: {INPUT_CHANGES[(key, v)]}" for key in keys
            for v in range(after.get(key, 0) + 1, INPUT_VERSIONS.get(key, 0) + 1) if (key, v) in INPUT_CHANGES]


def check_input_versions(recorded: object, reads: Iterable[str] | None, *, source: str) -> None:
    """Refuse a checkpoint that was trained on other inputs than this code feeds its model.

    ``recorded`` is the checkpoint's ``input_versions`` (None when it has none: every key of ``reads`` at version 0),
    ``reads`` the keys of the model this code rebuilds from it (None: check only the keys the checkpoint records, e.g.
    for encoders taken from it), and ``source`` names the checkpoint in the error.

    Raises:
        ValueError: another set of keys than ``reads``, or a key at another version than :data:`INPUT_VERSIONS`; the
            message names the keys, what changed and says to retrain.
    """
    reads = None if reads is None else list(reads)
    fix = "retrain the model with this vidpipe (vidpipe train / compare --retrain) to use it"
    unversioned = recorded is None
    recorded = read_versions(recorded, reads or ())
    if not isinstance(recorded, Mapping):
        raise ValueError(f"checkpoint {source} records input_versions={recorded!r}; expected a mapping of input key "
                         f"to version (the file is damaged or was not written by vidpipe); {fix}")
    if reads is not None and set(recorded) != set(reads):
        changed = _changes(reads, recorded)
        raise ValueError(f"checkpoint {source} was trained on inputs {sorted(recorded)}, but this vidpipe's model of "
                         f"its config reads {sorted(reads)}" + (f" ({'; '.join(changed)})" if changed else "")
                         + f"; {fix}")
    stale = {k: v for k, v in recorded.items() if v != INPUT_VERSIONS.get(k)}
    if stale:
        now = {k: INPUT_VERSIONS.get(k) for k in stale}
        changed = _changes(stale, {k: v for k, v in stale.items() if isinstance(v, int)})
        newer = any(isinstance(v, int) and now[k] is not None and v > now[k] for k, v in stale.items())
        if unversioned:
            raise ValueError(f"checkpoint {source} records no input versions (written before vidpipe versioned model "
                             f"inputs), and since then {'; '.join(changed) or now}; {fix}")
        raise ValueError(f"checkpoint {source} read inputs at versions {stale}; this vidpipe reads them at {now}"
                         + (f" ({'; '.join(changed)})" if changed else "")
                         + ("; it was written by a newer vidpipe: upgrade vidpipe, or " if newer else "; ") + fix)

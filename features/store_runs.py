"""The store's training runs and reports.

Layout (under the store, see :mod:`features.store`)::

    runs/<run_id>.json          one :class:`RunRecord` per training run
    runs/<run_id>/best.pt       its checkpoints (written by the training engine into :meth:`RunsPart.checkpoint_dir`)
    reports/<name>              Markdown and PNG reports (:meth:`ReportsPart.write_report`)

**Checkpoints are recorded relative to the store** (``runs/<run_id>/best.pt``) and resolved on read
(:meth:`RunsPart.checkpoint_file`), so a store copied to another machine or another folder still finds them. On an
object-store root the engine writes into a local cache mirroring the store; :meth:`RunsPart.save_run` uploads the
recorded checkpoints, and :meth:`RunsPart.checkpoint_file` downloads one into that cache on first use. Records that
hold an absolute path still resolve: the file itself while it exists, else the same ``runs/...`` path in this store.

:class:`RunsPart` and :class:`ReportsPart` are parts of :class:`features.store.Store`: they use the store's layout
(``_p``, ``fs``, ``local``, ``local_dir``, ``_local_root``, ``_write_bytes``) and are not constructed on their own.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

import pandas as pd

from features.atomic import atomic_file
from features.store_encoding import check_name, is_name, json_default

__all__ = ["RunRecord", "RunsPart", "ReportsPart"]

def _missing(value: Any) -> bool:
    """A cell with no value: ``None`` or a float NaN (what pandas puts in a column a record lacks)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class RunRecord:
    """One recorded training run (what ``runs/<run_id>.json`` holds), as :func:`pipelines.train.run_training` writes it.

    A field an older record lacks reads as its default; fields this vidpipe does not know are kept in ``extra``.
    """

    run_id: str  # unique name of the run (also the name of its checkpoint folder)
    model: str | None = None  # registered model name
    task: str | None = None  # task name (emotion, personality, popularity, popularity_mtaf)
    dataset: str | None = None  # the store's dataset
    created: str | None = None  # ISO time (UTC) the run ended
    metrics: dict = field(default_factory=dict)  # test metrics of the best epoch
    baseline: dict = field(default_factory=dict)  # test metrics of the constant predictor
    val_metrics: dict = field(default_factory=dict)  # validation metrics of the best epoch
    checkpoint: str | None = None  # best checkpoint: relative to the store (runs/<id>/best.pt) or an absolute path
    checkpoints: dict | None = None  # target → checkpoint, for a run trained one model per target
    epochs_run: int | None = None  # epochs trained
    best_epoch: int | None = None  # epoch of the best validation metric
    stop_reason: str | None = None  # why training stopped (epochs, early stop, ...)
    n_params: int | None = None  # trainable parameters
    seconds_per_epoch: float | None = None  # mean wall time of an epoch
    total_seconds: float | None = None  # wall time of the whole fit
    efficiency: float | None = None  # trainable parameters / total training seconds
    device: str | None = None  # the torch device it trained on
    modalities: list = field(default_factory=list)  # the model's pack inputs
    pack: str | None = None  # fingerprint of the tensor pack it trained on
    pack_reused: bool | None = None  # the pack existed before the run
    vision_profile: str | None = None  # frame selection of the pack; None when the record predates it
    config: dict = field(default_factory=dict)  # the model config (dataclass fields)
    train: dict = field(default_factory=dict)  # engine settings (epochs, lr, batch_size, seed, ...)
    n_train: int | None = None  # training videos
    n_test: int | None = None  # test videos
    targets: list = field(default_factory=list)  # predicted target names, in output order
    input_kind: str | None = None  # "raw" or "embeddings"
    extra: dict = field(default_factory=dict)  # recorded fields this class does not declare

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunRecord":
        """From a record's fields (a parsed JSON file or a row of :meth:`RunsPart.runs`); missing or NaN cells read
        as the field's default, and a field of the wrong type raises ``TypeError`` naming it."""
        if not isinstance(d, Mapping) or not isinstance(d.get("run_id"), str):
            raise TypeError(f"run record: expected a mapping with a string 'run_id', got {d!r:.200}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        extra = dict(d.get("extra") or {})
        for key, value in d.items():
            if key == "extra":
                continue
            if key not in known:
                extra[key] = value
            elif not _missing(value):
                kwargs[key] = value
        for name in ("metrics", "baseline", "val_metrics", "config", "train"):
            if not isinstance(kwargs.get(name, {}), dict):
                raise TypeError(f"run record {d['run_id']!r}: field {name!r} is {kwargs[name]!r}; expected a mapping")
        for name in ("modalities", "targets"):
            if not isinstance(kwargs.get(name, []), (list, tuple)):
                raise TypeError(f"run record {d['run_id']!r}: field {name!r} is {kwargs[name]!r}; expected a list")
            kwargs[name] = list(kwargs.get(name, []))
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The record's fields as one flat mapping (``extra`` merged in), as written to ``runs/<run_id>.json``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **out}


class RunsPart:
    """Training runs of a :class:`features.store.Store` (see the module docstring)."""

    def checkpoint_dir(self, run_id: str) -> Path:
        """The local folder the training engine writes ``run_id``'s checkpoints into (``runs/<run_id>/``)."""
        return self.local_dir("runs", check_name("run_id", run_id))

    def save_run(self, run_id: str, record: Mapping[str, Any] | RunRecord) -> RunRecord:
        """Record one training run; returns the record as written.

        Checkpoint paths inside this store's files are recorded relative to the store (see the module docstring);
        on an object-store root those files are uploaded first.
        """
        check_name("run_id", run_id)
        rec = record if isinstance(record, RunRecord) else RunRecord.from_dict({"run_id": run_id, **dict(record)})
        checkpoints = rec.checkpoints
        if isinstance(checkpoints, dict):
            checkpoints = {t: self._checkpoint_ref(p) for t, p in checkpoints.items()}
        rec = dataclasses.replace(rec, checkpoint=self._checkpoint_ref(rec.checkpoint), checkpoints=checkpoints)
        self._write_bytes(self._p("runs", f"{run_id}.json"), json.dumps(rec.to_dict(), default=json_default).encode())
        return rec

    def run_records(self) -> list[RunRecord]:
        """Every recorded training run, oldest first (by ``created``; unreadable records are skipped)."""
        paths = [p for p in self._ls(self._p("runs"), detail=False) if p.endswith(".json") and "/.tmp-" not in p]
        out = []
        for blob in (self.fs.cat(paths, on_error="omit").values() if paths else []):
            try:
                out.append(RunRecord.from_dict(json.loads(blob)))
            except (ValueError, TypeError):  # a foreign or damaged file in runs/: not a run
                continue
        return sorted(out, key=lambda r: (r.created or "", r.run_id))

    def run(self, run_id: str) -> RunRecord:
        """The recorded run ``run_id``.

        Raises:
            KeyError: no such run (the message names the newest recorded ones).
        """
        records = self.run_records()
        for rec in records:
            if rec.run_id == run_id:
                return rec
        raise KeyError(f"run={run_id!r} is not a recorded run of {self.dataset!r}; expected one of "
                       f"{[r.run_id for r in records][-10:]}")

    def runs(self) -> pd.DataFrame:
        """One row per recorded training run (oldest first): the fields of :meth:`run_records` as columns."""
        return pd.DataFrame([r.to_dict() for r in self.run_records()])

    def checkpoint_file(self, ref: str | None) -> Path | None:
        """The local file of a recorded checkpoint, or ``None`` when it cannot be found.

        ``ref`` is relative to the store (``runs/<run_id>/best.pt``), or an absolute path (records written before
        checkpoints were relative, or a run's own result): the file while it exists, else the same ``runs/...`` path
        in this store. On an object-store root the file is downloaded into the local cache on first use.
        """
        if not isinstance(ref, str) or not ref:  # None, or a NaN cell of a table
            return None
        path = Path(ref)
        if path.is_absolute():
            if path.is_file():
                return path
            parts = path.parts
            if "runs" not in parts:
                return None
            ref = "/".join(parts[len(parts) - 1 - parts[::-1].index("runs"):])
        parts = PurePosixPath(ref).parts
        if len(parts) < 2 or not all(map(is_name, parts)):
            return None  # a relative reference never leaves the store
        local = self._local_root().joinpath(*parts)
        if local.is_file():
            return local
        remote = self._p(*parts)
        if self.local or not self.fs.exists(remote):
            return None
        with atomic_file(local) as tmp:
            self.fs.get_file(remote, str(tmp))
        return local

    def _checkpoint_ref(self, value: Any) -> Any:
        """``value`` relative to the store when it is a file in this store's local files (uploading it on an
        object-store root), else unchanged."""
        if not isinstance(value, (str, Path)) or not Path(value).is_absolute():
            return value
        path = Path(value)
        try:
            rel = path.resolve().relative_to(self._local_root().resolve())
        except ValueError:  # outside this store's files: keep the path as given
            return str(path)
        if not self.local and path.is_file():
            self.fs.put_file(str(path), self._p(*rel.parts))
        return rel.as_posix()


class ReportsPart:
    """Markdown and PNG reports of a :class:`features.store.Store` (see the module docstring)."""

    def write_report(self, name: str, content: str | bytes) -> str:
        """Write report file ``name`` (``str`` is UTF-8 text, e.g. Markdown; ``bytes`` e.g. a PNG) atomically.

        Markdown reports link their figures by file name, so a report and its figures stay together.

        Returns:
            Where it was written: a local path, or a URL on an object-store root.
        """
        check_name("name", name)
        if not isinstance(content, (str, bytes)):
            raise TypeError(f"content: expected str or bytes, got {type(content).__name__}")
        path = self._p("reports", name)
        self._write_bytes(path, content.encode("utf-8") if isinstance(content, str) else content)
        return path if self.local else f"{self.url}/reports/{name}"

    def report_names(self, pattern: str = "*") -> list[str]:
        """Sorted names of the report files matching the glob ``pattern``."""
        names = (p.rstrip("/").rsplit("/", 1)[-1] for p in self._ls(self._p("reports"), detail=False))
        return sorted(n for n in names if not n.startswith(".tmp-") and fnmatch.fnmatchcase(n, pattern))

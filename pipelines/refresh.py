"""Stage ``refresh``: re-ingest a dataset's recorded source and rerun exactly the stages whose inputs changed.

Flow :func:`refresh` = **plan** (no decoding, nothing written) → print the plan → **run** (unless ``dry_run``) →
print what was done:

1. Re-read the source the store was ingested from (:meth:`Store.source_info`: kind, path, options) with the same
   adapter ``vidpipe ingest`` uses, in memory, and compare it with the stored manifest: **added**, **removed** and
   **changed** videos (a changed manifest row — path, labels, transcript, metadata — or changed file content, seen
   as a new content digest → a new ``probe`` fingerprint), plus **pending** ones (unchanged, but with stages that never
   completed, e.g. an interrupted extraction).
2. Plan extraction with :func:`pipelines.extract.plan_extraction` against the *new* manifest and the parameters the
   store was extracted with (read back from its index records, so a store built with ``n_frames=16`` is not rebuilt
   with the default 100): which (stage, video) pairs will run. ``text`` follows ``transcripts``; the vocabulary is
   rebuilt when the training split's transcripts change, and then every bag of words is recomputed. The ``embed_*``
   stages the store has are planned with the encoder paths their records name: a checkpoint whose weights,
   configuration or preprocessing changed at the same path has a new digest, so that stage (only) reruns for every
   video; ``embed_text`` also follows ``transcripts``. An encoder path that no longer exists leaves its stage as it is
   (``plan["kept"]``, with a warning).
3. The graph embeddings (stage ``graph``) retrain when the video set or the song–video edges change (or, with
   ``metadata``/``audio`` node features, when those stages rerun). :func:`pipelines.graph.pretrain_graph` is itself
   fingerprinted, so the refresh calls it with the hyper-parameters of the stored artifact and it trains only when its
   inputs really changed.
4. Training packs are never rebuilt here (the next ``vidpipe train`` rebuilds what it needs); the refresh reports the
   packs of recorded runs that are stale — predicted conservatively in the plan (a labelled video of the pack's task
   is touched, its graph input retrains, or its text input gets a new vocabulary), and exactly after the run by
   recomputing :func:`features.packs.pack_fingerprint`.

Running: ingest (:func:`pipelines.ingest.record_manifest`, as the ``ingest`` flow does, with the manifest the plan
read — the source is read once: it rewrites the manifest and, for a TikTok scrape, adds its counts to the scrape
history that MTAF's early trend is built from) → ``extract_features`` for only the touched videos
(``video_ids=[...]``), or without ``video_ids`` when videos were removed (that is the call that drops removed videos'
outputs; unchanged videos are skipped by fingerprint either way) → the ``text`` stage over the whole manifest (its
vocabulary is built on the whole training split) → ``pretrain_graph`` when planned.

A dry run writes nothing to the store (the planner's digest memo is kept in memory). It does read the source, and the
``synthetic`` source regenerates its media folder when its options changed — that folder is the source, not the store.
"""

from __future__ import annotations

import inspect
import time
from typing import Annotated, Any, Literal, Optional

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from pydantic import Field

from features.packs import labelled_videos, pack_fingerprint
from features.schema import GRAPH_ARTIFACT
from features.sources import Manifest, load_source, training_ids
from features.store import Store
from names import TASK_TARGETS
from pipelines.flow_io import DatasetName, publish_markdown, store_for
from pipelines.extract import (EMBED_STAGES, STAGES, ExtractConfig, extract_features, plan_embed_text,
                               plan_extraction, recorded_config, usable_encoders)
from pipelines.graph import pretrain_graph
from pipelines.ingest import manifest_diff, record_manifest
from pipelines.train import VISION_PROFILES

__all__ = ["refresh", "describe_refresh"]

StageName = Literal[(*STAGES, *EMBED_STAGES)]
_GRAPH_FEATURE_STAGE = {"metadata": "metadata", "audio": "audio"}  # graph node features → the stage they read


# ---------------------------------------------------------------------------------------------------- helpers
def _edge_set(edges: pd.DataFrame) -> set[tuple[str, str]]:
    if edges.empty:
        return set()
    return set(zip(edges["video_id"].astype(str), edges["song_id"].astype(str)))


def _labelled(manifest: pd.DataFrame, task_name: str) -> set[str]:
    """The videos with ``task_name``'s labels, as a pack of that task selects them; none when the manifest has no
    such labels."""
    if manifest.empty:
        return set()
    try:
        return set(labelled_videos(manifest, task_name)["video_id"])
    except ValueError:  # the dataset lacks the task's label columns
        return set()


def _pack_selections(store: Store) -> list[dict]:
    """The packs recorded training runs used, each with the selection that reproduces its fingerprint now.

    Runs record the pack fingerprint, inputs, task and vision profile (a pack's key holds no training seed, so every
    seed's runs of a selection share one entry); a record without a vision profile (written by an older vidpipe) has
    each candidate profile tried. A pack that matches no selection is already stale (``selection`` is ``None``).
    """
    packs: dict[str, dict] = {}
    for run in store.run_records():
        if run.pack is None or run.task not in TASK_TARGETS or not run.modalities:
            continue
        # the profiles a run's pack may have been built with: its own, or each candidate when it did not record one
        profiles = (run.vision_profile,) if run.vision_profile is not None else VISION_PROFILES
        entry = packs.setdefault(run.pack, {"pack": run.pack, "task": run.task, "inputs": sorted(run.modalities),
                                            "runs": [], "profiles": profiles})
        entry["runs"].append(run.run_id)
    out = []
    for entry in packs.values():
        entry["selection"] = None
        for profile in entry.pop("profiles"):
            try:
                fp = pack_fingerprint(store, entry["inputs"], entry["task"], vision_profile=profile)
            except (ValueError, KeyError):
                break
            if fp == entry["pack"]:
                entry["selection"] = {"vision_profile": profile}
                break
        out.append(entry)
    return out


# ---------------------------------------------------------------------------------------------------- planning
def _read_source(store: Store, dataset: str) -> tuple[dict, Manifest]:
    """The source the store records (kind, path, options) and that source re-read in memory with its adapter."""
    source = store.source_info()
    if not source.get("kind"):
        raise ValueError(f"dataset={dataset!r}: the store does not record how it was ingested: run "
                         f"`vidpipe ingest {dataset} --source KIND PATH` once, then refresh")
    return source, load_source(source["kind"], source.get("path"), **(source.get("options") or {}))


def _wanted_stages(store: Store, stages: Optional[list[str]],
                   config: Optional[dict]) -> tuple[ExtractConfig, list[str], list[str]]:
    """``(cfg, wanted, kept)``: the extraction parameters (given, else those the store was extracted with), the stages
    to keep fresh (given, else those the store has, else all) and the ``embed_*`` stages left as they are because
    their encoder path no longer exists. Records are parsed only to read the recorded parameters (no ``config``)."""
    present = [s for s in (*STAGES, *EMBED_STAGES) if store.fingerprints(s)]  # index columns: no record parsed
    cfg = (ExtractConfig(**config) if config is not None
           else recorded_config({s: store.entries(s) for s in present}))
    keep = stages if stages is not None else (present or STAGES)
    cfg, kept = usable_encoders(cfg, [s for s in EMBED_STAGES if s in keep], "refresh")
    wanted = [s for s in (*STAGES, *EMBED_STAGES) if s in keep and s not in kept]
    return cfg, wanted, kept


def _plan_per_video(store: Store, videos: pd.DataFrame, cfg: ExtractConfig,
                    wanted: list[str]) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """``(todo, extract)``: the extraction planner's items by video id, against the new manifest (no decoding, no
    store writes), and per stage (``text`` aside) the videos that stage will run for."""
    items, _, _ = plan_extraction(store, videos, cfg, wanted)
    todo = {item["row"]["video_id"]: item for item in items}
    extract = {s: sorted(v for v, it in todo.items() if s in it["todo"]) for s in wanted
               if s not in ("text", "embed_text")}
    if "embed_text" in wanted:
        # keyed on the transcript (as it will be after this refresh) and the text encoder's current weights
        transcripts = {**store.fingerprints("transcripts"),  # index columns: no record parsed
                       **{v: it["fps"]["transcripts"] for v, it in todo.items() if "transcripts" in it["todo"]}}
        pending_text, _ = plan_embed_text(store, list(videos["video_id"]), cfg, transcripts=transcripts)
        extract["embed_text"] = sorted(v for v, _ in pending_text)
    return todo, extract


def _plan_text(old: pd.DataFrame, new: pd.DataFrame, todo: dict[str, dict]) -> tuple[bool, list[str]]:
    """``(vocabulary, ids)``: whether the vocabulary is rebuilt (the training split's videos or their transcripts
    change) and the videos whose bag of words is recomputed (every video then, else those with a new transcript)."""
    new_train, old_train = training_ids(new), training_ids(old)
    vocabulary = bool(new_train ^ old_train) or any("transcripts" in todo[v]["todo"] for v in new_train & set(todo))
    if vocabulary:
        return True, sorted(set(new["video_id"]))
    return False, sorted(v for v, it in todo.items() if "transcripts" in it["todo"])


def _plan_graph(store: Store, added: list[str], removed: list[str], edges_before: set[tuple[str, str]],
                edges_after: set[tuple[str, str]], extract: dict[str, list[str]]) -> dict[str, Any]:
    """``{"action", "reason", "params"}``: whether the stored graph embeddings retrain (videos, edges or the stage
    their node features read changed) and the ``pretrain_graph`` parameters of the stored artifact."""
    if store.artifact_fingerprint(GRAPH_ARTIFACT) is None:
        return {"action": "none", "reason": "no graph embeddings yet (run `vidpipe pretrain-graph`)", "params": None}
    _, meta = store.read_artifact(GRAPH_ARTIFACT)
    feature_stage = _GRAPH_FEATURE_STAGE.get(meta.get("features", "none"))
    reasons = []
    if added or removed:
        reasons.append(f"videos +{len(added)} / -{len(removed)}")
    if edges_before != edges_after:
        reasons.append(f"edges +{len(edges_after - edges_before)} / -{len(edges_before - edges_after)}")
    if feature_stage and extract.get(feature_stage):
        reasons.append(f"node features ({feature_stage}) of {len(extract[feature_stage])} videos")
    accepted = set(inspect.signature(pretrain_graph.fn).parameters)
    params = {k: v for k, v in (meta.get("config") or {}).items() if k in accepted}
    params["features"] = meta.get("features", "none")
    return {"action": "retrain" if reasons else "unchanged", "reason": "; ".join(reasons) or "same inputs",
            "params": params}


def _plan_packs(store: Store, old: pd.DataFrame, new: pd.DataFrame, touched: set[str], graph_retrains: bool,
                vocabulary: bool) -> list[dict]:
    """The packs of recorded runs, each with a predicted ``state``: "already stale", "will be stale" (a labelled video
    of its task is touched, its graph input retrains or its text input gets a new vocabulary) or "fresh"."""
    packs = []
    for p in _pack_selections(store):
        if p["selection"] is None:
            state = "already stale"
        else:
            labelled = _labelled(old, p["task"]) | _labelled(new, p["task"])
            hit = (bool(touched & labelled) or ("graph" in p["inputs"] and graph_retrains)
                   or ("text" in p["inputs"] and vocabulary))
            state = "will be stale" if hit else "fresh"
        packs.append({**p, "state": state})
    return packs


@task(cache_policy=NONE, persist_result=False, name="plan-refresh")
def _plan(root: Optional[str], dataset: str, dry_run: bool, stages: Optional[list[str]],
          config: Optional[dict]) -> tuple[dict, Manifest, dict]:
    """``(plan, manifest, source)``: the plan (see :func:`refresh`), the source's manifest it was made from and the
    source the store records (kind, path, options), which the run records as they are (the source is read once)."""
    store = store_for(root, dataset)
    if dry_run:  # every writer raises: a dry run cannot change the store (the digest memo stays in memory)
        store = store.as_read_only()
    source, new = _read_source(store, dataset)
    old = store.manifest()
    diff = manifest_diff(old, new.videos)
    added, removed, rows_changed = diff["added"], diff["removed"], diff["changed"]
    cfg, wanted, kept = _wanted_stages(store, stages, config)

    todo, extract = _plan_per_video(store, new.videos, cfg, wanted)
    probes = store.fingerprints("probe")
    content_changed = {v for v, it in todo.items() if v in probes and probes[v] != it["fps"]["probe"]}
    changed = sorted((set(rows_changed) | content_changed) - set(added))
    vocabulary = False
    if "text" in wanted:  # bags follow transcripts; the vocabulary follows the training split's transcripts
        vocabulary, extract["text"] = _plan_text(old, new.videos, todo)
    pending = sorted((set(todo) | set(extract.get("embed_text", []))) - set(added) - set(changed))

    edges_before, edges_after = _edge_set(store.edges()), _edge_set(new.edges)
    graph = _plan_graph(store, added, removed, edges_before, edges_after, extract)
    touched = set(added) | set(removed) | set(changed) | set(pending)  # packs: predicted here, exact after the run
    packs = _plan_packs(store, old, new.videos, touched, graph["action"] == "retrain", vocabulary)
    nothing = not (added or removed or changed or pending or any(extract.values())
                   or graph["action"] == "retrain")
    return {
        "dataset": dataset,
        "source": {"kind": source["kind"], "path": source.get("path")},
        "config": cfg.model_dump(),
        "stages": wanted,
        "kept": kept,
        "videos": {"added": added, "removed": removed, "changed": changed, "pending": pending,
                   "unchanged": int(len(new.videos) - len(added) - len(changed) - len(pending))},
        "edges": {"added": len(edges_after - edges_before), "removed": len(edges_before - edges_after)},
        "extract": extract,
        "vocabulary": vocabulary,
        "graph": graph,
        "packs": packs,
        "nothing_to_do": nothing,
    }, new, source


def _ids(ids: list[str], limit: int = 8) -> str:
    shown = ", ".join(ids[:limit])
    return f"{len(ids)}" + (f" ({shown}{', …' if len(ids) > limit else ''})" if ids else "")


def describe_refresh(result: dict) -> str:
    """A short human-readable account of a refresh: the plan, and what was done when it ran."""
    plan = result["plan"]
    v = plan["videos"]
    lines = [f"refresh {plan['dataset']} from {plan['source']['kind']} {plan['source']['path']}:"]
    if plan["nothing_to_do"]:
        lines.append("  nothing changed: nothing to do")
    else:
        lines.append(f"  videos: added {_ids(v['added'])}; removed {_ids(v['removed'])}; changed {_ids(v['changed'])}; "
                     f"pending {_ids(v['pending'])}; unchanged {v['unchanged']}")
        lines.append(f"  edges: +{plan['edges']['added']} / -{plan['edges']['removed']}")
        for stage, ids in plan["extract"].items():
            lines.append(f"  will extract {stage}: {_ids(ids)}")
        if plan["vocabulary"]:
            lines.append("  will rebuild the vocabulary (training transcripts changed)")
        lines.append(f"  graph: {plan['graph']['action']} ({plan['graph']['reason']})")
    for p in plan["packs"]:
        lines.append(f"  pack {p['pack'][:12]} ({p['task']}, {'+'.join(p['inputs'])}; runs {', '.join(p['runs'][:3])}):"
                     f" {p['state']}")
    did = result.get("did")
    if result.get("dry_run"):
        lines.append("dry run: nothing was changed")
    elif did is not None:
        lines.append("done:")
        if did.get("ingest"):
            ing = did["ingest"]
            lines.append(f"  ingest: {ing['videos']} videos (added {ing['added']}, removed {ing['removed']}, "
                         f"changed {ing['changed']})")
        for stage, c in (did.get("extract") or {}).items():
            lines.append(f"  extract {stage}: done {c.get('done', 0)}, skipped {c.get('skipped', 0)}, "
                         f"failed {c.get('failed', 0)}")
        if did.get("removed_outputs"):
            lines.append(f"  dropped {did['removed_outputs']} outputs of removed videos")
        if did.get("graph") is not None:
            g = did["graph"]
            lines.append(f"  graph: {'unchanged (cached)' if g.get('cached') else 'retrained'} ({g.get('changes')})")
        for fp in did.get("stale_packs", []):
            lines.append(f"  pack {fp[:12]} is stale: the next `vidpipe train` rebuilds it")
        lines.append(f"  in {did['seconds']:.1f}s")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- the flow
@flow(name="refresh", validate_parameters=True)
def refresh(
    dataset: DatasetName,
    root: Optional[str] = None,
    dry_run: bool = False,
    stages: Optional[list[StageName]] = None,
    config: Optional[ExtractConfig] = None,
    workers: Optional[Annotated[int, Field(ge=1, le=256)]] = None,
    dask_address: Optional[str] = None,
    dask_workers: Optional[Annotated[int, Field(ge=1, le=1024)]] = None,
) -> dict:
    """Re-ingest ``dataset``'s recorded source and rerun only what its changes touch (see the module docstring).

    Args:
        dataset: the store's name (it must have been ingested by this vidpipe, which records the source).
        root: data root (path or fsspec URL).
        dry_run: plan and print, then stop: nothing is written to the store.
        stages: extraction stages to keep fresh (default: the stages the store already has; all for an empty store).
        config: extraction parameters (default: those the store's outputs were computed with).
        workers, dask_address, dask_workers: passed to ``extract_features``.

    Returns:
        ``{"dataset", "dry_run", "plan", "did"}``: ``plan`` = ``{"videos": {"added", "removed", "changed",
        "pending", "unchanged"}, "edges", "extract": {stage: [video ids]}, "vocabulary", "graph": {"action",
        "reason"}, "packs": [...], "nothing_to_do", ...}``; ``did`` (``None`` for a dry run) = ``{"ingest",
        "extract": {stage: {"done", "skipped", "failed"}}, "removed_outputs", "graph", "stale_packs", "seconds"}``.
    """
    t0 = time.perf_counter()
    logger = get_run_logger()
    plan, manifest, source = _plan(root, dataset, dry_run, stages,
                                   config.model_dump() if config is not None else None)
    result: dict[str, Any] = {"dataset": dataset, "dry_run": dry_run, "plan": plan, "did": None}
    logger.info("%s", describe_refresh(result))
    if dry_run or plan["nothing_to_do"]:
        if not dry_run:
            result["did"] = {"ingest": None, "extract": {}, "removed_outputs": 0, "graph": None,
                             "stale_packs": [], "seconds": round(time.perf_counter() - t0, 3)}
        return result

    store = store_for(root, dataset)
    did: dict[str, Any] = {"ingest": record_manifest(dataset, root, manifest, source)}
    cfg = ExtractConfig(**plan["config"])
    run_kw = {"dataset": dataset, "root": root, "config": cfg, "workers": workers, "dask_address": dask_address,
              "dask_workers": dask_workers}
    per_video = [s for s in plan["stages"] if s != "text"]
    touched = sorted({v for s in per_video for v in plan["extract"].get(s, [])})
    counts: dict[str, dict[str, int]] = {}
    removed_outputs = 0
    if plan["videos"]["removed"]:
        # the only call that drops removed videos' outputs; unchanged videos are skipped by fingerprint
        res = extract_features(stages=plan["stages"], **run_kw)
        counts, removed_outputs = res["stages"], res["removed"]
    else:
        if touched and per_video:
            counts.update(extract_features(stages=per_video, video_ids=touched, **run_kw)["stages"])
        if "text" in plan["stages"] and plan["extract"].get("text"):
            # the vocabulary is built on the whole training split, so the text stage sees the whole manifest
            counts.update(extract_features(stages=["text"], **run_kw)["stages"])
    did["extract"] = counts
    did["removed_outputs"] = removed_outputs
    did["graph"] = None
    if plan["graph"]["action"] == "retrain":
        did["graph"] = pretrain_graph(dataset=dataset, root=root, **plan["graph"]["params"])
    did["stale_packs"] = []
    for p in plan["packs"]:
        sel = p["selection"]
        try:
            now = (pack_fingerprint(store, p["inputs"], p["task"], **sel) if sel is not None else None)
        except (ValueError, KeyError):
            now = None
        if now != p["pack"]:
            did["stale_packs"].append(p["pack"])
    did["seconds"] = round(time.perf_counter() - t0, 3)
    result["did"] = did
    text = describe_refresh(result)
    logger.info("%s", text)
    publish_markdown(f"{dataset}-refresh", f"```\n{text}\n```\n", f"refresh of {dataset}: plan and outcome")
    return result

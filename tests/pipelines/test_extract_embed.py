"""The embed_vision / embed_audio / embed_text stages end to end, with tiny random encoders saved in the real
on-disk formats; heads trained on what they cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from features import open_store
from pipelines.extract import ExtractConfig
from tests.embed_factory import tiny_bert, tiny_clip_vision, tiny_wav2vec2

DATASET = "emb"
N_VIDEOS = 5
CFG = ExtractConfig(n_frames=6, asr="none", n_segments=6, profiles=("per_second", "uniform"))
EMBED = ("embed_vision", "embed_audio", "embed_text")


def _extract(root, **kw):
    from flows import extract_features

    kw.setdefault("config", CFG)
    return extract_features(dataset=DATASET, root=str(root), batch_size=3, workers=2, **kw)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    base = tmp_path_factory.mktemp("encoders")
    return {"vision_model": str(tiny_clip_vision(base / "clip", crop=32, short=40)),
            "audio_model": str(tiny_wav2vec2(base / "w2v", sampling_rate=8000)),
            "text_model": str(tiny_bert(base / "bert"))}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, prefect_harness, encoders):
    """A small synthetic store extracted with all three encoders (read-only: copy before writing)."""
    from flows import ingest

    root = tmp_path_factory.mktemp("embed-root")
    ingest(dataset=DATASET, source="synthetic", root=str(root), videos=N_VIDEOS, seed=3, min_duration=3.0,
           max_duration=5.0)
    result = _extract(root, **encoders)
    return root, result


def test_every_embedding_stage_writes_vectors_and_masks(embedded, encoders):
    root, result = embedded
    for stage in EMBED:
        assert result["stages"][stage]["done"] == N_VIDEOS and result["stages"][stage]["failed"] == 0, result
    store = open_store(root, DATASET)
    probe = store.table("probe").set_index("video_id")
    for vid in store.manifest()["video_id"]:
        ev = store.read("embed_vision", vid)
        assert ev["per_second"].shape == (6, 16) and ev["per_second"].dtype == np.float32  # CLIP projection_dim 16
        assert ev["uniform"].shape == (6, 16) and ev["uniform_valid"].all()
        frames = store.read("frames", vid)
        # the same instants as the frames stage (its own decode, at the encoder's 32² input)
        np.testing.assert_array_equal(ev["per_second_valid"], frames["per_second_valid"])
        np.testing.assert_allclose(ev["uniform_times"], frames["uniform_times"], atol=1e-4)
        assert (np.abs(ev["per_second"][ev["per_second_valid"]]).sum(axis=1) > 0).all()
        assert not ev["per_second"][~ev["per_second_valid"]].any()  # masked, zero
        assert ev["image_size"] == 32 and ev["model"] == encoders["vision_model"]

        ea = store.read("embed_audio", vid)
        audio = store.read("audio", vid)
        assert ea["segments"].shape == (6, 24) and ea["sampling_rate"] == 8000
        np.testing.assert_array_equal(ea["segments_mask"], audio["segments_mask"])  # the audio stage's rule
        assert not ea["segments"][~ea["segments_mask"]].any()
        if not probe.loc[vid, "has_audio"]:
            assert not ea["segments_mask"].any()

        et = store.read("embed_text", vid)
        assert et["sentence"].shape == (16,) and et["tokens"].shape == (64, 16) and et["tokens_mask"].shape == (64,)
        assert et["per_second"].shape == (6, 16)
        assert bool(et["sentence_valid"]) == bool(store.read("transcripts", vid)["text"].strip())


def test_rerun_hits_the_cache_and_changed_weights_recompute_only_that_stage(embedded, encoders, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(embedded[0], root, symlinks=True)
    again = _extract(root, **encoders)
    for stage in (*EMBED, "frames", "audio", "probe"):
        assert again["stages"][stage]["done"] == 0 and again["stages"][stage]["skipped"] == N_VIDEOS, stage

    # the same checkpoint moved elsewhere: same content → still a hit
    moved = tmp_path / "moved-clip"
    shutil.copytree(encoders["vision_model"], moved)
    assert _extract(root, **{**encoders, "vision_model": str(moved)})["stages"]["embed_vision"]["done"] == 0

    # new weights at the same path (another seed): embed_vision recomputes, nothing else does
    store = open_store(root, DATASET)
    vid = store.manifest()["video_id"].iloc[0]
    before = store.read("embed_vision", vid)["uniform"]
    shutil.rmtree(moved)
    tiny_clip_vision(moved, seed=1, crop=32, short=40)
    changed = _extract(root, **{**encoders, "vision_model": str(moved)})
    assert changed["stages"]["embed_vision"]["done"] == N_VIDEOS
    for stage in ("embed_audio", "embed_text", "frames", "audio", "probe", "transcripts", "text"):
        assert changed["stages"][stage]["done"] == 0, stage
    assert not np.allclose(store.read("embed_vision", vid)["uniform"], before)

    # preprocessing is part of the checkpoint: a different normalisation recomputes as well
    pp = json.loads((moved / "preprocessor_config.json").read_text())
    pp["image_mean"] = [0.5, 0.5, 0.5]
    (moved / "preprocessor_config.json").write_text(json.dumps(pp))
    assert _extract(root, **{**encoders, "vision_model": str(moved)})["stages"]["embed_vision"]["done"] == N_VIDEOS

    # an encoder setting: text_max_tokens re-keys embed_text only
    cfg = CFG.model_copy(update={"text_max_tokens": 8})
    res = _extract(root, config=cfg, **{**encoders, "vision_model": str(moved)})
    assert res["stages"]["embed_text"]["done"] == N_VIDEOS and res["stages"]["embed_vision"]["done"] == 0
    assert store.read("embed_text", vid)["tokens"].shape == (8, 16)


def test_one_stage_by_name_and_clear_errors(embedded, encoders, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(embedded[0], root, symlinks=True)
    res = _extract(root, stages=["embed_audio"], refresh=True, audio_model=encoders["audio_model"])
    assert set(res["stages"]) == {"embed_audio"} and res["stages"]["embed_audio"]["done"] == N_VIDEOS
    with pytest.raises(ValueError, match="'embed_vision' needs vision_model=PATH"):
        _extract(root, stages=["embed_vision"])
    with pytest.raises(FileNotFoundError, match="vision_model=.*nowhere.*does not exist.*never downloads"):
        _extract(root, stages=["embed_vision"], vision_model=str(tmp_path / "nowhere"))
    # without encoders the default run is the core stages only, all cached
    plain = _extract(root)
    assert not set(plain["stages"]) & set(EMBED)


def test_encoder_batches_mix_videos_and_a_poisoned_video_fails_alone(embedded, encoders, tmp_path, monkeypatch):
    """The flow batches embed_vision rows across videos; an encoder error on one video's rows and another video's
    corrupt frames become those two videos' failures, and every other video's vectors equal per-video embedding."""
    import dataclasses

    from features import embed as E
    from features import extract_video as X

    root = tmp_path / "root"
    shutil.copytree(embedded[0], root, symlinks=True)
    store = open_store(root, DATASET)
    manifest = store.manifest()
    ids = list(manifest["video_id"])  # plan order: tasks of 3 videos (ids 0-2, then 3-4)
    poisoned, corrupt = ids[1], ids[3]
    prepare = X.EMBED_ROWS["embed_vision"]

    def rows_with_faults(v, todo, cache):
        job = prepare(v, todo, cache)
        if v.row["video_id"] == poisoned:  # a marker the encoder below raises on
            return dataclasses.replace(job, rows=np.full_like(job.rows, 7), valid=np.ones_like(job.valid))
        if v.row["video_id"] == corrupt:  # frames that are not the encoder's input size
            return dataclasses.replace(job, rows=np.ascontiguousarray(job.rows[:, :5]))
        return job

    forward, batches = E.VisionEncoder._forward, []

    def raising_forward(self, frames, **kw):
        marked = (frames.reshape(len(frames), -1) == 7).all(axis=1)
        batches.append((len(frames), int(marked.sum())))
        if marked.any():
            raise RuntimeError("encoder failed on these rows")
        return forward(self, frames, **kw)

    monkeypatch.setitem(X.EMBED_ROWS, "embed_vision", rows_with_faults)
    monkeypatch.setattr(E.VisionEncoder, "_forward", raising_forward)
    # a whole task's rows fit in one batch, which waits for them (only "every worker idle" runs it early)
    cfg = CFG.model_copy(update={"embed_batch_size": 64, "embed_batch_wait": 30.0})
    res = _extract(root, config=cfg, stages=["embed_vision", "embed_audio"], refresh=True, **encoders)
    assert res["stages"]["embed_vision"] == {"done": N_VIDEOS - 2, "skipped": 0, "failed": 2}, res
    assert res["stages"]["embed_audio"]["done"] == N_VIDEOS
    assert "encoder failed on these rows" in store.failure("embed_vision", poisoned)["error"]
    assert "frames: expected uint8 (N, 32, 32, 3), got uint8 (12, 5, 32, 3)" in \
        store.failure("embed_vision", corrupt)["error"]
    assert any(marked and n > marked for n, marked in batches)  # the poisoned rows shared a batch with others
    assert max(n for n, _ in batches) > 12  # more than one video's 12 frames per forward

    rows, alone_cfg = manifest.set_index("video_id", drop=False), cfg.model_copy(update=encoders)
    for vid in ids:
        if vid in (poisoned, corrupt):
            continue
        alone = X.extract_video(rows.loc[vid].to_dict(), ["probe", "embed_vision", "embed_audio"], alone_cfg)
        got_v, got_a = store.read("embed_vision", vid), store.read("embed_audio", vid)
        for name, want in alone["embed_vision"].arrays.items():
            np.testing.assert_allclose(got_v[name], want, rtol=1e-5, atol=1e-5, err_msg=f"{vid} {name}")
        for name, want in alone["embed_audio"].arrays.items():
            np.testing.assert_allclose(got_a[name], want, rtol=1e-5, atol=1e-5, err_msg=f"{vid} {name}")


def test_worker_threads_share_encoder_forwards_and_match_one_worker(embedded, encoders, tmp_path, monkeypatch):
    """workers=2, batch_size=2: the rows of both running tasks' videos fill the same embed_vision forwards (one shared
    batcher per encoder in the process), the vectors equal a workers=1 run's, and no batcher thread outlives the flow."""
    import threading

    from features import embed as E
    from features import extract_video as X
    from flows import extract_features

    roots = {n: tmp_path / n for n in ("one", "two")}
    for root in roots.values():
        shutil.copytree(embedded[0], root, symlinks=True)
    ids = list(open_store(roots["two"], DATASET).manifest()["video_id"])
    task_of = {vid: i // 2 for i, vid in enumerate(ids)}  # plan order, 2 videos per task
    prepare, owner = X.EMBED_ROWS["embed_vision"], {}  # a frame's bytes → its video

    def recording_rows(v, todo, cache):
        job = prepare(v, todo, cache)
        owner.update((row.tobytes(), v.row["video_id"]) for row in job.rows[job.valid])
        return job

    forward, forwards = E.VisionEncoder._forward, []

    def recording_forward(self, frames, **kw):
        forwards.append({owner.get(row.tobytes()) for row in frames} - {None})
        return forward(self, frames, **kw)

    monkeypatch.setitem(X.EMBED_ROWS, "embed_vision", recording_rows)
    monkeypatch.setattr(E.VisionEncoder, "_forward", recording_forward)
    # 12 frames a video in forwards of 16; only "every worker idle" runs a partial batch early
    cfg = CFG.model_copy(update={"embed_batch_size": 16, "embed_batch_wait": 30.0})
    runs = {}
    for name, workers in (("two", 2), ("one", 1)):
        forwards.clear()
        runs[name] = extract_features(dataset=DATASET, root=str(roots[name]), config=cfg, refresh=True, workers=workers,
                                      batch_size=2, stages=["embed_vision", "embed_audio"], **encoders)
        assert runs[name]["stages"]["embed_vision"] == {"done": N_VIDEOS, "skipped": 0, "failed": 0}, runs[name]
        assert not [t.name for t in threading.enumerate() if t.name.startswith("batcher-")]
        if name == "two":
            assert any(len({task_of[v] for v in videos}) > 1 for videos in forwards), forwards
    one, two = open_store(roots["one"], DATASET), open_store(roots["two"], DATASET)
    for vid in ids:
        for stage in ("embed_vision", "embed_audio"):
            want, got = one.read(stage, vid), two.read(stage, vid)
            for name, arr in want.items():
                if isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
                    np.testing.assert_allclose(got[name], arr, rtol=1e-5, atol=1e-5, err_msg=f"{vid} {stage} {name}")


def test_queue_limits_are_validated_config_fields_that_no_fingerprint_reads():
    from pydantic import ValidationError

    from pipelines.extract import EMBED_STAGES, STAGES

    tuned = ExtractConfig(embed_queue_items=64, embed_queue_mb=4096, embed_batch_wait=2.5)
    for stage in (*STAGES, *EMBED_STAGES):
        assert tuned.stage_params(stage) == ExtractConfig().stage_params(stage), stage
    for field, value in (("embed_queue_items", 0), ("embed_queue_mb", 0), ("embed_batch_wait", 0.0)):
        with pytest.raises(ValidationError, match=field):
            ExtractConfig(**{field: value})


def _parity_detector(path):
    """Loader of a face-detector double: a file ``{"size": s}`` gives one s×s "face" at the top left of every frame
    whose pixel sum is even (content-based, so the same frame always gets the same answer)."""
    from features.embed import FaceDetector

    size = json.loads(path.read_text())["size"]
    return FaceDetector(name=f"parity:{size}", detect=lambda f: np.array([[0, 0, size, size]], np.float32)
                        if int(f.sum(dtype=np.int64)) % 2 == 0 else np.zeros((0, 4), np.float32))


def test_face_crops_mask_frames_without_a_face_and_key_embed_vision_only(embedded, encoders, tmp_path,
                                                                         monkeypatch):
    from features import embed as E

    monkeypatch.setattr(E, "_FACE_LOADERS", dict(E._FACE_LOADERS))
    E.register_face_detector(".parity", _parity_detector)
    detector = tmp_path / "faces.parity"
    detector.write_text(json.dumps({"size": 20}))
    root = tmp_path / "root"
    shutil.copytree(embedded[0], root, symlinks=True)
    store = open_store(root, DATASET)
    ids = list(store.manifest()["video_id"])
    whole = {v: store.read("embed_vision", v) for v in ids}
    whole_fps = store.fingerprints("embed_vision")
    faces = CFG.model_copy(update={"vision_faces": str(detector)})
    res = _extract(root, config=faces, **encoders)
    assert res["stages"]["embed_vision"]["done"] == N_VIDEOS and res["stages"]["embed_vision"]["failed"] == 0
    for stage in ("embed_audio", "embed_text", "frames", "audio"):
        assert res["stages"][stage]["done"] == 0, stage
    found = missed = 0
    for v in ids:
        ev = store.read("embed_vision", v)
        assert ev["face_detector"] == "parity:20"
        for prof in ("per_second", "uniform"):
            valid, box = ev[f"{prof}_valid"], ev[f"{prof}_face_box"]
            assert box.shape == (6, 4) and not (valid & ~whole[v][f"{prof}_valid"]).any()  # only decoded frames
            assert not ev[prof][~valid].any() and np.isnan(box[~valid]).all()  # no face: masked, zeros, no box
            assert np.isnan(ev[f"{prof}_times"][~valid]).all()
            # a 20-px face + 25 % margin on each side = 30 px at the top left of the 64² search frame
            np.testing.assert_allclose(box[valid], np.tile([0, 0, 30 / 64, 30 / 64], (int(valid.sum()), 1)))
            assert (np.abs(ev[prof][valid]).sum(axis=1) > 0).all()
            assert not np.allclose(ev[prof][valid], whole[v][prof][valid])  # the face, not the whole frame
            found, missed = found + int(valid.sum()), missed + int((whole[v][f"{prof}_valid"] & ~valid).sum())
    assert found and missed  # both branches were exercised
    assert _extract(root, config=faces, **encoders)["stages"]["embed_vision"]["done"] == 0  # cache hit
    detector.write_text(json.dumps({"size": 16}))  # another detector file: embed_vision only is recomputed
    res = _extract(root, config=faces, **encoders)
    assert res["stages"]["embed_vision"]["done"] == N_VIDEOS and res["stages"]["embed_audio"]["done"] == 0
    # without faces: whole frames again, under the fingerprints whole frames always had
    assert _extract(root, **encoders)["stages"]["embed_vision"]["done"] == N_VIDEOS
    assert store.fingerprints("embed_vision") == whole_fps


def test_refresh_reruns_an_embedding_stage_when_its_checkpoint_changes(embedded, encoders, tmp_path):
    from flows import refresh

    root = tmp_path / "root"
    shutil.copytree(embedded[0], root, symlinks=True)
    # the store's vision and text outputs recorded against checkpoints this test may change
    local = {k: str(tmp_path / k) for k in ("vision_model", "text_model")}
    for k, path in local.items():
        shutil.copytree(encoders[k], path)
    _extract(root, stages=["embed_vision", "embed_text"], refresh=True, **local)
    store = open_store(root, DATASET)
    ids = sorted(store.manifest()["video_id"])

    idle = refresh(dataset=DATASET, root=str(root), dry_run=True)["plan"]
    assert set(EMBED) <= set(idle["stages"]) and idle["nothing_to_do"], idle["extract"]
    assert idle["config"]["vision_model"] == local["vision_model"]  # read back from the stage's records

    shutil.rmtree(local["vision_model"])
    tiny_clip_vision(Path(local["vision_model"]), seed=1, crop=32, short=40)  # new weights at the same path
    shutil.rmtree(local["text_model"])
    tiny_bert(Path(local["text_model"]), seed=1)
    plan = refresh(dataset=DATASET, root=str(root), dry_run=True)["plan"]
    assert plan["extract"]["embed_vision"] == ids and plan["extract"]["embed_text"] == ids
    assert not any(plan["extract"][s] for s in plan["extract"] if s not in ("embed_vision", "embed_text"))
    assert plan["videos"]["pending"] == ids and not plan["nothing_to_do"]
    did = refresh(dataset=DATASET, root=str(root))["did"]["extract"]
    assert did["embed_vision"]["done"] == N_VIDEOS and did["embed_text"]["done"] == N_VIDEOS
    assert all(did[s]["done"] == 0 for s in did if s not in ("embed_vision", "embed_text")), did
    assert refresh(dataset=DATASET, root=str(root), dry_run=True)["plan"]["nothing_to_do"]

    shutil.rmtree(local["text_model"])  # a checkpoint that is gone: its stage is kept as it is, the rest refreshes
    with pytest.warns(UserWarning, match="embed_text as it is: text_model=.* no longer exists"):
        plan = refresh(dataset=DATASET, root=str(root), dry_run=True)["plan"]
    assert "embed_text" in plan["kept"] and "embed_text" not in plan["stages"] and "embed_vision" in plan["stages"]


def test_feature_variant_with_another_checkpoint_recomputes_only_that_embedding_stage(embedded, encoders, tmp_path):
    from pipelines.compare import _ablation_plan, _feature_variant

    plan = _ablation_plan([{"model": "mcat", "features": {"vision_model": "/x", "vision_faces": "haar"}}],
                          ["personality"], {"mcat"})
    assert plan["personality"][0][3] == {"vision_model": "/x", "vision_faces": "haar"}  # encoders are ablatable
    root = tmp_path / "root"
    shutil.copytree(embedded[0], root, symlinks=True)
    other = tiny_clip_vision(tmp_path / "other-clip", seed=2, crop=32, short=40)
    name = _feature_variant.fn(str(root), DATASET, {"vision_model": str(other)})
    base, var = open_store(root, DATASET), open_store(root, name)
    assert name.startswith(f"{DATASET}--f")
    for stage in ("frames", "audio", "embed_audio", "embed_text"):  # seeded from the base, not recomputed
        assert var.fingerprints(stage) == base.fingerprints(stage), stage
    assert set(var.fingerprints("embed_vision")) == set(base.fingerprints("embed_vision"))
    assert not set(var.fingerprints("embed_vision").values()) & set(base.fingerprints("embed_vision").values())
    vid = sorted(base.manifest()["video_id"])[0]
    assert var.read("embed_vision", vid)["model"] == str(other)
    assert _feature_variant.fn(str(root), DATASET, {"vision_model": encoders["vision_model"]}) == DATASET


def test_cli_flags_run_the_named_stage(embedded, encoders, tmp_path, capsys):
    from pipelines.cli import main

    root = tmp_path / "root"
    shutil.copytree(embedded[0], root, symlinks=True)
    with pytest.raises(SystemExit) as exit_:
        main(["extract", DATASET, "--root", str(root), "--stage", "embed_vision", "--vision-model",
              encoders["vision_model"], "--n-frames", "6", "--profile", "per_second", "--profile", "uniform",
              "--refresh", "--json"])
    assert exit_.value.code in (0, None)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(out["stages"]) == ["embed_vision"] and out["stages"]["embed_vision"]["done"] == N_VIDEOS
    with pytest.raises(SystemExit) as exit_:
        main(["inspect", DATASET, "--root", str(root), "--json"])
    assert exit_.value.code in (0, None)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["stages"]["embed_vision"]["done"] == N_VIDEOS and "embed_text" in summary["stages"]


TINY = {"dim": 16, "heads": 2}


def test_heads_train_on_the_cached_embeddings(embedded, tmp_path, capsys):
    """Plumbing: packs carry the embeddings, Sec2Sec / MCAT / VAN train on them, the CLI selects them by name."""
    from features.packs import build_pack
    from pipelines.cli import main
    from pipelines.train import run_training

    root = tmp_path / "root"
    shutil.copytree(embedded[0], root, symlinks=True)
    store = open_store(root, DATASET)
    fp, _ = build_pack(store, ["vision_seg_emb", "audio_seg_emb", "vision_emb", "text_emb", "text_sentence_emb"],
                       "emotion")
    arrays, _ = store.read_pack(fp)
    assert arrays["vision_seg_emb"].shape == (N_VIDEOS, 6, 1, 16) and arrays["vision_seg_emb_mask"].shape == (5, 6)
    assert arrays["audio_seg_emb"].shape == (N_VIDEOS, 6, 24) and arrays["vision_emb"].shape == (N_VIDEOS, 6, 16)
    assert arrays["text_emb"].shape == (N_VIDEOS, 64, 16) and arrays["text_emb_mask"].shape == (N_VIDEOS, 64)
    vid = str(arrays["video_id"][0])
    np.testing.assert_array_equal(arrays["audio_seg_emb"][0], store.read("embed_audio", vid)["segments"])
    text = store.read("embed_text", vid)  # the sentence vector as embed_text stored it (the text model's pooling)
    np.testing.assert_array_equal(arrays["text_sentence_emb"][0], text["sentence"])
    assert arrays["text_sentence_emb_mask"].shape == (N_VIDEOS,) and arrays["text_sentence_emb_mask"][0] == text[
        "sentence_valid"]

    runs = {
        "sec2sec": run_training(store, "sec2sec", "emotion", epochs=1, device="cpu", input_kind="embeddings",
                                overrides={**TINY, "lstm_hidden": 16}),
        "mcat": run_training(store, "mcat", "personality", epochs=1, device="cpu", input_kind="embeddings",
                             overrides=TINY),
        "van": run_training(store, "van", "popularity", epochs=1, device="cpu", input_kind="embeddings",
                            overrides={**TINY, "modalities": ["vision", "audio"]}),
    }
    assert runs["sec2sec"]["modalities"] == ["vision_seg_emb", "audio_seg_emb"]
    assert runs["mcat"]["modalities"] == ["vision_emb", "audio_emb", "text_sentence_emb"]  # text_emb_groups=1
    assert runs["mcat"]["config"]["text_emb_dim"] == 16 and runs["mcat"]["config"]["audio_tokens"] == 6
    assert runs["van"]["config"]["vision_emb_dim"] == 16 and runs["van"]["config"]["n_frames"] == 6
    assert all(r["input_kind"] == "embeddings" and np.isfinite(r["n_params"]) for r in runs.values())

    with pytest.raises(SystemExit) as exit_:
        main(["train", DATASET, "--model", "sec2sec", "--task", "emotion", "--inputs", "embeddings", "--root",
              str(root), "--epochs", "1", "--device", "cpu", "--set", "dim=16", "--set", "heads=2", "--json"])
    assert exit_.value.code in (0, None)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "accuracy_mean" in out["metrics"]
    assert store.runs().sort_values("created")["input_kind"].tolist()[-1] == "embeddings"
    with pytest.raises(ValueError, match="inputs='pixels': expected 'raw' or 'embeddings'"):
        run_training(store, "sec2sec", "emotion", epochs=1, input_kind="pixels")


def test_missing_embedding_stage_names_the_command(prefect_harness, tmp_path):
    from features.packs import build_pack
    from flows import ingest

    ingest(dataset=DATASET, source="synthetic", root=str(tmp_path), videos=2, seed=1, min_duration=3.0,
           max_duration=3.5)
    with pytest.raises(ValueError, match=r"vidpipe extract emb --stage embed_vision --vision-model PATH"):
        build_pack(open_store(tmp_path, DATASET), ["vision_emb"], "emotion")


@pytest.mark.slow
def test_a_head_on_frozen_random_embeddings_beats_the_constant_predictor(prefect_harness, tmp_path):
    """The planted valence (brightness of the frame centre, per second) survives a fixed random CLIP encoder."""
    from flows import ingest
    from pipelines.train import run_training

    ingest(dataset=DATASET, source="synthetic", root=str(tmp_path), videos=90, seed=11, min_duration=3.0,
           max_duration=5.0, speech=False)
    enc = tiny_clip_vision(tmp_path / "clip", seed=0, crop=32, short=40)
    cfg = ExtractConfig(n_segments=5, profiles=("per_second",), asr="none")
    _extract(tmp_path, config=cfg, stages=["embed_vision"], vision_model=str(enc))
    run = run_training(open_store(tmp_path, DATASET), "sec2sec-vision", "emotion", epochs=40, lr=3e-3,
                       device="cpu", input_kind="embeddings",
                       overrides={"dim": 32, "heads": 2, "lstm_hidden": 32, "dropout": 0.0})
    assert run["metrics"]["accuracy_valence"] >= run["baseline"]["accuracy_valence"] + 0.15, run


@pytest.mark.parametrize("kind", ["whisper", "ast"])
def test_spectrogram_audio_encoders_through_the_embed_audio_stage(embedded, tmp_path, kind):
    """Whisper (4-s windows here: two rows per 6-s video) and AST (one row per second, its own filterbanks) through
    the flow's cross-video batches: the audio stage's masks, zeros where masked, each video's vectors equal to its
    own per-video extraction; a rerun is a cache hit and a changed feature-extractor setting recomputes the stage."""
    from features import extract_video as X
    from tests.embed_factory import tiny_ast, tiny_whisper

    root = tmp_path / "root"
    shutil.copytree(embedded[0], root, symlinks=True)
    model = (tiny_whisper if kind == "whisper" else tiny_ast)(tmp_path / kind)
    res = _extract(root, stages=["embed_audio"], audio_model=str(model))
    assert res["stages"]["embed_audio"] == {"done": N_VIDEOS, "skipped": 0, "failed": 0}, res
    store = open_store(root, DATASET)
    rows = store.manifest().set_index("video_id", drop=False)
    cfg = CFG.model_copy(update={"audio_model": str(model)})
    for vid in rows.index:
        got, audio = store.read("embed_audio", vid), store.read("audio", vid)
        assert got["segments"].shape == (6, 16) and got["sampling_rate"] == 16000
        assert got["encoder"] == {"whisper": "whisper", "ast": "audio-spectrogram-transformer"}[kind]
        np.testing.assert_array_equal(got["segments_mask"], audio["segments_mask"])
        assert not got["segments"][~got["segments_mask"]].any()
        assert (np.abs(got["segments"][got["segments_mask"]]).sum(axis=1) > 0).all()
        alone = X.extract_video(rows.loc[vid].to_dict(), ["probe", "embed_audio"], cfg)["embed_audio"].arrays
        np.testing.assert_allclose(got["segments"], alone["segments"], rtol=1e-5, atol=1e-5, err_msg=vid)
    assert _extract(root, stages=["embed_audio"], audio_model=str(model))["stages"]["embed_audio"]["done"] == 0
    pp = json.loads((model / "preprocessor_config.json").read_text())
    pp["padding_value" if kind == "whisper" else "mean"] += 1.0
    (model / "preprocessor_config.json").write_text(json.dumps(pp, indent=2))
    assert _extract(root, stages=["embed_audio"], audio_model=str(model))["stages"]["embed_audio"]["done"] == N_VIDEOS

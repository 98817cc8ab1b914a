import shutil

import numpy as np
import pytest

from features import open_store
from pipelines.extract import ExtractConfig, STAGES
from tests.pipelines.conftest import DATASET, N_VIDEOS

CFG = ExtractConfig(n_frames=16, asr="none")


def _extract(root, **kw):
    from flows import extract_features

    kw.setdefault("config", CFG)
    return extract_features(dataset=kw.pop("dataset", DATASET), root=str(root), batch_size=6, **kw)


def test_every_stage_has_outputs_with_expected_shapes(synthetic_store):
    store = open_store(synthetic_store, DATASET)
    summary = store.summary(list(STAGES))
    assert all(summary["stages"][s]["done"] == N_VIDEOS for s in STAGES), summary
    vid = store.manifest()["video_id"].iloc[0]
    fr = store.read("frames", vid)
    assert fr["per_second"].dtype == np.uint8 and fr["per_second"].shape == (15, 64, 64, 3)
    assert fr["per_second_valid"].shape == (15,) and 3 <= fr["per_second_valid"].sum() <= 6
    assert fr["uniform"].shape == (16, 64, 64, 3) and fr["uniform_valid"].all()
    au = store.read("audio", vid)
    assert au["segments"].dtype == np.float32 and au["segments"].shape[:3] == (15, 3, 20)
    assert au["clip"].shape == (20, 1500)
    probe = store.table("probe").set_index("video_id")
    assert (probe["duration"] > 2.5).all() and (probe["duration"] < 6.5).all()
    assert store.read("text", vid)["bow"].ndim == 1
    tr = store.read("transcripts", vid)
    assert tr["source"] == "dataset" and tr["text"]


def test_no_audio_videos_are_masked_not_zero_data(synthetic_store):
    store = open_store(synthetic_store, DATASET)
    probe = store.table("probe").set_index("video_id")
    silent = probe.index[~probe["has_audio"].astype(bool)]
    assert len(silent) >= 1
    au = store.read("audio", silent[0])
    assert not au["segments_mask"].any() and not bool(au["clip_valid"]) and au["has_audio"] is False


def test_rerun_with_nothing_changed_skips_everything(synthetic_copy):
    result = _extract(synthetic_copy)
    for stage in STAGES:
        counts = result["stages"][stage]
        assert counts["done"] == 0 and counts["skipped"] == N_VIDEOS, (stage, counts)


def test_changed_parameter_recomputes_only_that_stage(synthetic_copy):
    cfg = CFG.model_copy(update={"n_mfcc": 13})
    result = _extract(synthetic_copy, config=cfg)
    assert result["stages"]["audio"]["done"] == N_VIDEOS
    assert result["stages"]["frames"]["done"] == 0 and result["stages"]["probe"]["done"] == 0
    store = open_store(synthetic_copy, DATASET)
    assert store.read("audio", store.manifest()["video_id"].iloc[0])["segments"].shape[2] == 13


def test_changed_file_recomputes_only_that_video_and_deleted_is_dropped(synthetic_copy):
    from flows import ingest

    src = synthetic_copy / "_sources" / DATASET
    ingest(dataset=DATASET, source="synthetic", root=str(synthetic_copy), path=str(src), videos=N_VIDEOS, seed=7,
           min_duration=3.0, max_duration=6.0)
    first = _extract(synthetic_copy)  # manifest now points at the copy's media: same content → all skipped
    assert first["stages"]["frames"]["done"] == 0
    store = open_store(synthetic_copy, DATASET)
    m = store.manifest().sort_values("video_id")
    a, b = m["source_path"].iloc[0], m["source_path"].iloc[1]
    if a.rsplit(".", 1)[-1] != b.rsplit(".", 1)[-1]:
        b = next(p for p in m["source_path"].iloc[2:] if p.rsplit(".", 1)[-1] == a.rsplit(".", 1)[-1])
    shutil.copyfile(b, a)  # same container, other content
    result = _extract(synthetic_copy)
    assert result["stages"]["probe"]["done"] == 1 and result["stages"]["frames"]["done"] == 1
    assert result["stages"]["frames"]["skipped"] == N_VIDEOS - 1
    gone = m["video_id"].iloc[-1]
    store.write_manifest(m[m["video_id"] != gone], store.edges())
    result = _extract(synthetic_copy)
    assert result["removed"] >= 5 and store.entry("frames", gone) is None


def test_single_stage_rerun_with_refresh(synthetic_copy):
    result = _extract(synthetic_copy, stages=["metadata"], refresh=True)
    assert set(result["stages"]) == {"metadata"} and result["stages"]["metadata"]["done"] == N_VIDEOS


def test_bad_videos_are_recorded_and_never_fail_the_run(synthetic_store, tmp_path, prefect_harness):
    from flows import ingest

    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((synthetic_store / "_sources" / DATASET / "videos").glob("*.mp4"))[:2]
    for p in good:
        shutil.copy(p, folder / p.name)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "noise.mkv").write_bytes(np.random.default_rng(0).bytes(5000))
    data = good[0].read_bytes()
    (folder / "-dash name ü.mp4").write_bytes(data[: len(data) // 3])  # truncated, odd name
    root = tmp_path / "r"
    ingest(dataset="mixed", source="folder", root=str(root), path=str(folder))
    result = _extract(root, dataset="mixed")
    store = open_store(root, "mixed")
    assert store.summary(list(STAGES))["stages"]["frames"]["done"] >= 2
    fails = store.failures()
    assert {"empty", "noise"} <= set(fails["video_id"])
    assert fails["error"].str.len().gt(10).all()
    assert result["failed_videos"] >= 2
    again = _extract(root, dataset="mixed")  # known failures are not retried without --refresh
    assert again["stages"]["probe"]["done"] == 0


def test_default_clip_matrix_covers_fifteen_seconds_and_reaches_a_cue_at_second_12(tmp_path, prefect_harness):
    from flows import ingest
    from tests.media_factory import make_audio_expr_video

    folder = tmp_path / "cue"
    folder.mkdir()
    # silence except a 440 Hz tone from 12.0 s to 12.5 s of a 15-s clip
    make_audio_expr_video(folder / "cue.mp4", "if(between(t,12,12.5),0.5*sin(2*PI*440*t),0)", duration=15.0,
                          size=(32, 32), fps=2)
    root = tmp_path / "r"
    ingest(dataset="cue", source="folder", root=str(root), path=str(folder))
    _extract(root, dataset="cue", stages=["probe", "audio"], config=ExtractConfig(asr="none"))
    store = open_store(root, "cue")
    clip = store.read("audio", "cue")["clip"]
    assert clip.shape == (20, 1500)  # 15 s at the 10 ms hop
    energy = clip[0]  # c0 follows the frame's log energy
    quiet, cue = np.median(energy[200:1100]), energy[1210:1240].min()
    assert cue > quiet + 40, (cue, quiet)  # the tone at 12 s is in the matrix, tens of dB above the silence
    assert store.entry("audio", "cue").params["clip_seconds"] == 15.0


def test_audio_pack_masks_the_padding_of_short_clips(synthetic_copy):
    """3-6 s clips in the 15-s whole-clip matrix: ``audio_mask`` is True on each clip's own MFCC frames, then False on
    its zero padding; a video without audio has no real frame."""
    from features.packs import build_pack

    store = open_store(synthetic_copy, DATASET)
    arrays, _ = store.read_pack(build_pack(store, ("audio",), "personality")[0])
    mask, clip = np.asarray(arrays["audio_mask"][...]), np.asarray(arrays["audio"][...])
    real = mask.sum(axis=1)
    assert mask.shape == (N_VIDEOS, 1500) and (real == 0).any() and (real > 0).any(), real
    assert ((real[real > 0] >= 300) & (real[real > 0] <= 601)).all(), real  # 3-6 s at the 10 ms hop
    np.testing.assert_array_equal(mask, np.arange(1500) < real[:, None])  # the clip's frames, then padding
    assert not clip[np.broadcast_to(~mask[:, None], clip.shape)].any()  # the padding is zeros


def test_egemaps_without_opensmile_is_refused_before_any_work(synthetic_copy, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "opensmile", None)  # import opensmile → ImportError
    with pytest.raises(ValueError, match="egemaps=True.*opensmile"):
        _extract(synthetic_copy, stages=["audio"], config=CFG.model_copy(update={"egemaps": True}))


def test_egemaps_input_needs_the_functionals_in_the_store(synthetic_copy):
    from features.packs import build_pack

    with pytest.raises(ValueError, match="--egemaps"):
        build_pack(open_store(synthetic_copy, DATASET), ("egemaps",), "personality")


def test_egemaps_functionals_reach_the_siamese_model(synthetic_copy):
    pytest.importorskip("opensmile")
    from pipelines.train import run_training

    result = _extract(synthetic_copy, stages=["audio"], config=CFG.model_copy(update={"egemaps": True}))
    assert result["stages"]["audio"]["done"] == N_VIDEOS
    store = open_store(synthetic_copy, DATASET)
    probe = store.table("probe").set_index("video_id")
    with_audio = probe.index[probe["has_audio"].astype(bool)][0]
    au = store.read("audio", with_audio)
    assert au["egemaps"].shape == (88,) and au["egemaps"].dtype == np.float32 and bool(au["egemaps_valid"])
    assert np.isfinite(au["egemaps"]).all() and np.abs(au["egemaps"]).max() > 0
    run = run_training(store, "siamese", "personality", epochs=1, device="cpu",
                       overrides={"modalities": ("vision", "egemaps", "text"), "dim": 16, "heads": 2})
    assert "egemaps" in run["modalities"] and run["config"]["egemaps_dim"] == 88
    arrays, _ = store.read_pack(run["pack"])
    x, ok = np.asarray(arrays["egemaps"]), np.asarray(arrays["egemaps_mask"])
    assert x.shape == (N_VIDEOS, 88) and ok.sum() >= N_VIDEOS - 8 and not x[~ok].any()
    train = ok & (np.asarray(arrays["split"]) == "train")
    assert np.allclose(x[train].mean(axis=0), 0, atol=1e-4)  # z-scored on the training videos


def test_meta_pack_carries_log_scaled_uploader_counts(synthetic_copy):
    from features.packs import META_COLUMNS, build_pack

    store = open_store(synthetic_copy, DATASET)
    m = store.manifest().sort_values("video_id").reset_index(drop=True)
    followers = (10 ** (np.arange(len(m)) % 6)).astype("int64")  # 1 … 100,000
    store.write_manifest(m.assign(author_followers=followers, author_verified=np.arange(len(m)) % 2 == 0),
                         store.edges())
    result = _extract(synthetic_copy, stages=["metadata"])
    assert result["stages"]["metadata"]["done"] == N_VIDEOS  # the new columns re-key the metadata stage
    fp, _ = build_pack(store, ("meta",), "popularity")
    arrays, _ = store.read_pack(fp)
    meta, ids = np.asarray(arrays["meta"]), list(np.asarray(arrays["video_id"]).astype(str))
    col = META_COLUMNS.index("log_author_followers")
    raw = np.log1p(followers[[list(m["video_id"]).index(v) for v in ids]])
    assert meta.shape[1] == len(META_COLUMNS) and np.corrcoef(meta[:, col], raw)[0, 1] > 0.999  # log, not linear
    assert not meta[:, META_COLUMNS.index("log_author_hearts")].any()  # absent everywhere: zeros, never nan


def _text_store(root, texts):
    """A store with committed dataset transcripts only (no media): the inputs of the text stage. The last text is the
    test video's; a validation video without a transcript completes the dataset's three splits (which it then keeps:
    :func:`features.sources.dataset_splits`)."""
    import pandas as pd

    store = open_store(root, "texts", create=True)
    ids = [f"t{i}" for i in range(len(texts))]
    store.write_manifest(pd.DataFrame({"video_id": [*ids, "v0"], "source_path": ["/none"] * (len(ids) + 1),
                                       "split": ["train"] * (len(ids) - 1) + ["test", "val"],
                                       "transcript": [*texts, None]}))
    for vid, text in zip(ids, texts):
        _write_transcript(store, vid, text)
    return store


def _write_transcript(store, vid, text):
    from features.fingerprint import fingerprint
    from pipelines.extract import STAGE_VERSIONS

    store.write("transcripts", vid, fingerprint("transcripts", 1, None, [vid, text]),
                version=STAGE_VERSIONS["transcripts"], record={"text": text, "source": "dataset", "words": []})


def test_text_stage_with_nothing_to_do_parses_no_record_and_sees_a_changed_transcript(tmp_path, monkeypatch):
    from features.store import Store
    from pipelines.extract import _text_stage

    store = _text_store(tmp_path, ["a cat sat", "a dog ran", "the cat ran", "a bird"])
    assert _text_stage(store, store.manifest(), CFG, False) == {"done": 4, "failed": 0, "skipped": 0}
    vocab = store.artifact_fingerprint("vocabulary")
    parsed = []
    real_entries = Store.entries
    monkeypatch.setattr(Store, "entries", lambda self, stage: parsed.append(stage) or real_entries(self, stage))
    assert _text_stage(store, store.manifest(), CFG, False) == {"done": 0, "failed": 0, "skipped": 4}
    assert parsed == []  # the vocabulary's fingerprint came from its recorded inputs
    _write_transcript(store, "t0", "a cat sat")  # recommitted, same text: same vocabulary, its inputs key renewed
    assert _text_stage(store, store.manifest(), CFG, False) == {"done": 0, "failed": 0, "skipped": 4}
    assert parsed == ["transcripts"] and store.artifact_fingerprint("vocabulary") == vocab
    assert _text_stage(store, store.manifest(), CFG, False)["skipped"] == 4 and parsed == ["transcripts"]
    _write_transcript(store, "t1", "a dog flew")  # new training text: a new vocabulary, every bag of words again
    assert _text_stage(store, store.manifest(), CFG, False)["done"] == 4
    assert store.artifact_fingerprint("vocabulary") != vocab


def test_a_tokenizer_version_bump_rekeys_the_vocabulary_and_every_bag_of_words_only(tmp_path, monkeypatch):
    import features.text
    from pipelines.extract import EMBED_STAGES, _text_plan, _text_stage

    store = _text_store(tmp_path, ["a cat sat", "a dog ran", "the cat ran", "a bird"])
    assert _text_stage(store, store.manifest(), CFG, False)["done"] == 4
    vocab, bows = store.artifact_fingerprint("vocabulary"), store.fingerprints("text")
    params = {s: CFG.stage_params(s) for s in (*STAGES, *EMBED_STAGES)}
    monkeypatch.setattr(features.text, "TOKENIZER_VERSION", features.text.TOKENIZER_VERSION + 1)
    assert [s for s, p in params.items() if CFG.stage_params(s) != p] == ["text"]
    _, bumped, todo, skipped, _ = _text_plan(store, store.manifest(), CFG, False)
    assert bumped != vocab and skipped == 0 and all(fp != bows[v] for v, fp in todo) and len(todo) == 4
    assert _text_stage(store, store.manifest(), CFG, False)["done"] == 4
    assert store.artifact_fingerprint("vocabulary") == bumped


def _planned_store(root, n=4):
    """A store of ``n`` videos (tiny source files, no media decoded) with every per-video stage committed at its
    planned fingerprint: a plan over it has nothing to do."""
    import pandas as pd

    from pipelines.extract import STAGE_VERSIONS, plan_extraction

    src = root / "src"
    src.mkdir()
    ids = [f"m{i}" for i in range(n)]
    for i, vid in enumerate(ids):
        (src / f"{vid}.mp4").write_bytes(bytes([i]) * 64)
    store = open_store(root, "memo", create=True)
    store.write_manifest(pd.DataFrame({"video_id": ids, "source_path": [str(src / f"{v}.mp4") for v in ids],
                                       "split": "train", "transcript": [f"words of {v}" for v in ids],
                                       "desc": ["a clip"] * n}))
    items, _, _ = plan_extraction(store, store.manifest(), CFG, _MEMO_STAGES)
    for item in items:
        for stage in item["todo"]:
            store.write(stage, item["row"]["video_id"], item["fps"][stage], version=STAGE_VERSIONS[stage],
                        record={"n": 1}, params=CFG.stage_params(stage))
    return store, src


_MEMO_STAGES = ["probe", "frames", "audio", "transcripts", "metadata"]


def _edit_manifest(store, src):
    m = store.manifest()
    m.loc[1, "transcript"] = "other words"
    store.write_manifest(m)


def _touch_source(store, src):
    import os

    os.utime(src / "m2.mp4", ns=(1, 1))  # same bytes, another mtime: re-hashed, nothing to do


def _grow_source(store, src):
    with open(src / "m2.mp4", "ab") as fh:
        fh.write(b"x")


def _drop_output(store, src):
    store.drop("audio", "m3")


def _record_failure(store, src):
    """frames of m0 failed at its planned fingerprint (the output dropped with it): counted failed, not retried."""
    fp = store.fingerprints("frames")["m0"]
    store.drop("frames", "m0")
    store.record_failure("frames", "m0", "boom", fingerprint=fp)


def _compact(store, src):
    store.compact()


@pytest.mark.parametrize("change", [_edit_manifest, _touch_source, _grow_source, _drop_output, _record_failure,
                                   _compact, "config", "version", "memo-corrupt", "memo-missing", "refresh"])
def test_noop_plan_is_memoised_and_every_input_it_depends_on_invalidates_it(tmp_path, monkeypatch, change):
    """A second no-op plan is answered from ``cache/plan.json``; after each kind of change the plan is made video by
    video again, and its answer equals a plan made without any memo."""
    import pipelines.extract as ex

    store, src = _planned_store(tmp_path)
    cfg, refresh = CFG, False
    first = ex.plan_extraction(store, store.manifest(), cfg, _MEMO_STAGES)
    assert first[0] == [] and first[1]["probe"] == {"skipped": 4, "failed": 0}
    calls = []
    real = ex._plan_videos
    monkeypatch.setattr(ex, "_plan_videos", lambda *a: calls.append(1) or real(*a))
    assert ex.plan_extraction(store, store.manifest(), cfg, _MEMO_STAGES) == ([], first[1], 0) and calls == []
    memo = tmp_path / "memo" / "cache" / "plan.json"
    if change == "config":
        cfg = ExtractConfig(n_frames=17, asr="none")
    elif change == "version":
        monkeypatch.setitem(ex.STAGE_VERSIONS, "metadata", ex.STAGE_VERSIONS["metadata"] + 1)
    elif change == "memo-corrupt":
        memo.write_bytes(b'{"format": 1, "key": ')
    elif change == "memo-missing":
        memo.unlink()
    elif change == "refresh":
        refresh = True
    else:
        change(store, src)
    got = ex.plan_extraction(store, store.manifest(), cfg, _MEMO_STAGES, refresh)
    assert calls == [1]
    want = real(store, store.manifest(), cfg, _MEMO_STAGES, refresh)
    assert [(i["row"]["video_id"], i["todo"]) for i in got[0]] == [(i["row"]["video_id"], i["todo"]) for i in want[0]]
    assert got[1] == want[1]
    expected_work = {_edit_manifest: [("m1", ["transcripts"])], _drop_output: [("m3", ["audio"])],
                     _grow_source: [("m2", ["probe", "frames", "audio", "metadata"])]}.get(change)  # text: no file
    if expected_work is not None:
        assert [(i["row"]["video_id"], i["todo"]) for i in got[0]] == expected_work
    elif change in ("config",):
        assert sorted(i["row"]["video_id"] for i in got[0]) == ["m0", "m1", "m2", "m3"]
    elif change == "refresh":
        assert len(got[0]) == 4
    elif change is _record_failure:
        assert got[0] == [] and got[1]["frames"] == {"skipped": 3, "failed": 1}
    elif change != "version":  # a metadata version bump re-keys metadata: work, checked against `want` above
        assert got[0] == []
        calls.clear()
        assert ex.plan_extraction(store, store.manifest(), cfg, _MEMO_STAGES)[0] == [] and calls == []  # memo again


@pytest.mark.parametrize("update, reused", [
    ({"embed_queue_items": 9, "embed_queue_mb": 3, "embed_batch_wait": 0.5, "embed_batch_size": 7,
      "embed_device": "cpu", "timeout": 99.0}, True),  # how the work runs, not what it writes
    ({"min_token_count": 3, "text_max_tokens": 8}, True),  # stages outside the plan (text, embed_text)
    ({"n_mfcc": 13}, False),  # audio's output
    ({"max_pixels": 128 * 128}, False),  # probe's, which every planned fingerprint chains from
])
def test_noop_plan_memo_is_keyed_on_the_planned_stages_parameters(tmp_path, monkeypatch, update, reused):
    """A configuration field that no planned fingerprint reads reuses the no-op plan memo; one that does re-plans."""
    import pipelines.extract as ex

    store, _ = _planned_store(tmp_path)
    ex.plan_extraction(store, store.manifest(), CFG, _MEMO_STAGES)  # writes cache/plan.json
    calls = []
    real = ex._plan_videos
    monkeypatch.setattr(ex, "_plan_videos", lambda *a: calls.append(1) or real(*a))
    cfg = CFG.model_copy(update=update)
    got = ex.plan_extraction(store, store.manifest(), cfg, _MEMO_STAGES)
    assert calls == ([] if reused else [1])
    want = real(store, store.manifest(), cfg, _MEMO_STAGES, False)
    assert got[1] == want[1] and len(got[0]) == len(want[0]) and (want[0] == []) == reused  # the memo answered right


def test_noop_memo_check_stats_each_source_file_once(tmp_path, monkeypatch, prefect_harness):
    """A no-op check (``nothing_to_extract``) and a no-op flow stat each source file once: the missing-file check and
    the plan memo's key share one ``os.stat`` per file (plus the ``os.access`` read check) and decide what they
    decide alone: a deleted file is missing for both, and a touched file re-keys the memo."""
    import os

    import pipelines.extract as ex

    store, src = _planned_store(tmp_path)
    assert ex.nothing_to_extract("memo", str(tmp_path), _MEMO_STAGES, CFG) is not None  # writes the plan memo
    calls = {"stat": [], "access": []}

    def counted(name, real):
        def call(path, *args, **kwargs):
            if isinstance(path, str) and path.startswith(str(src)):
                calls[name].append(os.path.basename(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "stat", counted("stat", os.stat))
    monkeypatch.setattr(os, "access", counted("access", os.access))
    planned = []
    real_plan = ex._plan_videos
    monkeypatch.setattr(ex, "_plan_videos", lambda *a: planned.append(1) or real_plan(*a))
    sources = [f"m{i}.mp4" for i in range(4)]
    assert ex.nothing_to_extract("memo", str(tmp_path), _MEMO_STAGES, CFG) is not None and planned == []
    assert calls == {"stat": sources, "access": sources}
    calls["stat"].clear(), calls["access"].clear()
    result = ex.extract_features(dataset="memo", root=str(tmp_path), stages=_MEMO_STAGES, config=CFG)
    assert result["missing_sources"] == 0 and planned == [] and calls == {"stat": sources, "access": sources}

    os.utime(src / "m2.mp4", ns=(1, 1))  # another stat: the memo's key changes, the plan is made video by video
    assert ex.nothing_to_extract("memo", str(tmp_path), _MEMO_STAGES, CFG) is not None and planned == [1]
    (src / "m3.mp4").unlink()
    assert ex.nothing_to_extract("memo", str(tmp_path), _MEMO_STAGES, CFG) is None
    result = ex.extract_features(dataset="memo", root=str(tmp_path), stages=_MEMO_STAGES, config=CFG)
    assert result["missing_sources"] == 1 and result["missing_examples"] == ["m3"]


@pytest.mark.parametrize("change", ["split", "transcript", "params", "memo-corrupt", "refresh"])
def test_text_stage_with_nothing_to_write_is_memoised_and_its_inputs_invalidate_it(tmp_path, monkeypatch, change):
    import pipelines.extract as ex

    store = _text_store(tmp_path, ["a cat sat", "a dog ran", "the cat ran", "a bird"])
    cfg, refresh = CFG, False
    assert ex._text_stage(store, store.manifest(), cfg, False)["done"] == 4
    assert ex._text_stage(store, store.manifest(), cfg, False) == {"done": 0, "failed": 0, "skipped": 4}
    plans = []
    real = ex._text_plan
    monkeypatch.setattr(ex, "_text_plan", lambda *a: plans.append(1) or real(*a))
    assert ex._text_stage(store, store.manifest(), cfg, False) == {"done": 0, "failed": 0, "skipped": 4}
    assert plans == []  # answered by cache/text-plan.json
    if change == "split":  # t1 leaves the training split: another vocabulary, every bag of words again
        m = store.manifest()
        m.loc[m["video_id"] == "t1", "split"] = "test"
        store.write_manifest(m)
    elif change == "transcript":
        _write_transcript(store, "t2", "the cat flew")
    elif change == "params":
        cfg = ExtractConfig(n_frames=16, asr="none", max_vocab=3)
    elif change == "memo-corrupt":
        (tmp_path / "texts" / "cache" / "text-plan.json").write_bytes(b"\x00garbage")
    else:
        refresh = True
    got = ex._text_stage(store, store.manifest(), cfg, refresh)
    assert plans == [1]
    assert got == ({"done": 0, "failed": 0, "skipped": 4} if change == "memo-corrupt" else
                   {"done": 4, "failed": 0, "skipped": 0})

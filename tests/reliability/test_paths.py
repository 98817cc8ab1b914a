"""Paths and commands: no id or name escapes the data root, no user string reaches a shell, hostile names are inert.

Part of it is an audit of the source tree (every ``.py`` under features/, pipelines/, models/, bench/ and flows.py):
no shell, no ``os.system``, every subprocess gets an argument list, every ``torch.load`` is ``weights_only``, nothing
unpickles with the stock unpickler, nothing evaluates strings, no server binds all interfaces.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.media import DEMUXERS, _restrict_inputs, ffprobe_bin, media_url, run_tool_capture
from features.probe import probe
from features.store import check_dataset_name, open_store, video_key
from tests.media_factory import make_video
from tests.reliability.conftest import DATASET, REPO
from tests.reliability.corpus import make_hls_playlist

_SOURCE_DIRS = ("features", "pipelines", "models", "bench")


def _sources() -> list[Path]:
    files = [REPO / "flows.py"] if (REPO / "flows.py").exists() else []
    for d in _SOURCE_DIRS:
        files += sorted((REPO / d).rglob("*.py"))
    return files


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    parts.append(func.id if isinstance(func, ast.Name) else "<expr>")  # model.to(d).eval() is "<expr>.eval"
    return ".".join(reversed(parts))


_FORBIDDEN = {"os.system", "os.popen", "os.execl", "os.execlp", "os.execv", "os.execvp", "os.spawnl", "os.spawnv",
              "subprocess.getoutput", "subprocess.getstatusoutput", "pty.spawn", "eval", "exec", "pickle.load",
              "pickle.loads", "marshal.loads", "yaml.load", "shelve.open", "dill.load", "dill.loads"}
_SUBPROCESS = {"subprocess.Popen", "subprocess.run", "subprocess.call", "subprocess.check_call",
               "subprocess.check_output", "Popen"}


def test_source_audit_no_shell_no_unsafe_loading():
    problems = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(REPO)
        for call in _calls(tree):
            name = _dotted(call.func)
            where = f"{rel}:{call.lineno}"
            for kw in call.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    problems.append(f"{where}: {name}(shell=...)")
            if name in _FORBIDDEN:
                problems.append(f"{where}: {name}()")
            if name in _SUBPROCESS and call.args:
                first = call.args[0]
                if isinstance(first, (ast.Constant, ast.JoinedStr, ast.BinOp)):
                    problems.append(f"{where}: {name} with a command string instead of an argument list")
            if name == "torch.load":
                wo = [kw for kw in call.keywords if kw.arg == "weights_only"]
                if not (wo and isinstance(wo[0].value, ast.Constant) and wo[0].value.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True (unpickles arbitrary code)")
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value == "0.0.0.0":
                problems.append(f"{rel}:{node.lineno}: binds all interfaces ('0.0.0.0'); default to 127.0.0.1")
    assert not problems, "\n".join(problems)


def test_audit_would_catch_what_it_looks_for(tmp_path):
    """The audit is not vacuous: each pattern it forbids is found in a file that has it."""
    bad = ("import os, subprocess, torch\nos.system('x')\nsubprocess.run('ls -l', shell=True)\n"
           "torch.load('m.pt')\nsubprocess.Popen(f'ffmpeg -i {p}')\nhost = '0.0.0.0'\n")
    tree = ast.parse(bad)
    names = [_dotted(c.func) for c in _calls(tree)]
    assert "os.system" in names and "torch.load" in names
    assert any(kw.arg == "shell" for c in _calls(tree) for kw in c.keywords)
    assert any(isinstance(c.args[0], ast.JoinedStr) for c in _calls(tree) if _dotted(c.func) == "subprocess.Popen")


def test_media_tools_are_started_only_by_features_media():
    """ffmpeg / ffprobe run through features.media.run_tool*; subprocess elsewhere is for the synthetic generator."""
    allowed = {"features/media.py", "features/sources/synthetic.py"}
    users = set()
    for path in _sources():
        if "bench" in path.relative_to(REPO).parts:  # benchmarks time ffmpeg itself
            continue
        tree = ast.parse(path.read_text())
        if any(_dotted(c.func) in _SUBPROCESS for c in _calls(tree)):
            users.add(str(path.relative_to(REPO)))
    assert users <= allowed, users - allowed


# ---------------------------------------------------------------------------------------------------- ids and names
@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_any_video_id_is_one_safe_path_component(video_id):
    key = video_key(video_id)
    assert "/" not in key and "\\" not in key and "\x00" not in key
    assert key not in {".", ".."} and not key.startswith((".", "-")) and len(key) <= 89
    assert key == video_key(video_id)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_dataset_name_is_refused_or_a_direct_child_of_the_root(name):
    try:
        check_dataset_name(name)
    except ValueError as exc:
        assert "dataset=" in str(exc)
        return
    root = Path("/srv/data")
    assert (root / name).resolve().parent == root and not name.startswith(("-", "."))


def test_hostile_ids_stay_inside_the_store(tmp_path):
    ids = ["../../../../tmp/x", "/etc/passwd", "..", ".", "-rf", "a/../../b", "c\x00d", "~root", "$(id)", "e\nf",
           "ünï", "x" * 500, "con", "a\\..\\b"]
    root = tmp_path / "root"
    store = open_store(root, DATASET, create=True)
    for i, vid in enumerate(ids):
        store.write("frames", vid, f"{i:032x}", version=1, arrays={"a": np.full(3, i)})
        store.record_failure("audio", vid, "boom")
    outside = {p for p in tmp_path.rglob("*") if not p.resolve().is_relative_to(Path(store.path).resolve())}
    assert outside == {root}
    assert sorted(store.entries("frames")) == sorted(ids)
    assert [int(store.read("frames", v)["a"][0]) for v in ids] == list(range(len(ids)))


@pytest.mark.parametrize("part", ["../x", "..", "a/b", "", "/abs"])
def test_local_dirs_and_run_ids_cannot_leave_the_store(tmp_path, part):
    store = open_store(tmp_path, DATASET, create=True)
    with pytest.raises(ValueError, match="path component"):
        store.local_dir("runs", part)
    try:
        store.save_run(part, {"x": 1})
    except ValueError:
        pass
    runs = Path(store.path, "runs").resolve()
    assert all(p.resolve().parent == runs for p in tmp_path.rglob("*.json") if p.name != "store.json")


def test_training_refuses_a_traversing_run_id_before_writing_anything(tmp_path):
    from pipelines.train import run_training
    from tests.reliability.conftest import TRAIN_MODEL, TRAIN_OVERRIDES, make_training_store

    make_training_store(tmp_path / "root")
    store = open_store(tmp_path / "root", DATASET)
    with pytest.raises(ValueError, match=r"run_id='\.\./\.\./escaped'"):
        run_training(store, TRAIN_MODEL, "emotion", epochs=1, overrides=TRAIN_OVERRIDES, device="cpu",
                     run_id="../../escaped")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "root" / "escaped").exists()


def test_flows_and_cli_refuse_traversing_dataset_names(prefect_harness, tmp_path, capsys):
    from pipelines.cli import main

    for argv in (["extract", "../../etc"], ["inspect", "../x"], ["train", "../x", "--model", "sec2sec",
                                                                   "--task", "emotion"]):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--root", str(tmp_path)])
        assert exit_.value.code not in (0, None), argv
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------- commands
def test_format_whitelist_is_added_to_every_media_input():
    url = media_url("/data/-i.mp4")
    assert _restrict_inputs(["/usr/bin/ffmpeg", "-ss", "1", "-i", url, "-f", "null", "file:/out.wav"]) == [
        "/usr/bin/ffmpeg", "-ss", "1", "-format_whitelist", DEMUXERS, "-i", url, "-f", "null", "file:/out.wav"]
    assert _restrict_inputs(["ffprobe", "-v", "error", url]) == ["ffprobe", "-v", "error", "-format_whitelist",
                                                                  DEMUXERS, url]
    assert _restrict_inputs(["/bin/echo", url]) == ["/bin/echo", url]
    once = _restrict_inputs(["ffprobe", url])
    assert _restrict_inputs(once) == once


def test_a_playlist_in_disguise_cannot_read_files_outside_the_dataset(tmp_path):
    (tmp_path / "outside").mkdir()
    secret = make_video(tmp_path / "outside" / "secret.mp4", duration=1.0, size=(64, 48), fps=10, audio=False)
    (tmp_path / "dataset").mkdir()
    playlist = make_hls_playlist(tmp_path / "dataset" / "clip.mp4", secret)
    # the threat: plain ffprobe follows the playlist to the file outside
    plain = subprocess.run([ffprobe_bin(), "-v", "error", "-show_entries", "format=format_name", "-of", "csv=p=0",
                            media_url(playlist)], capture_output=True, text=True, timeout=30)
    assert plain.stdout.strip() == "hls"
    from features.media import MediaError

    with pytest.raises(MediaError, match="clip.mp4"):
        probe(playlist, timeout=30)
    result = run_tool_capture([ffprobe_bin(), "-v", "error", media_url(playlist)], 30)
    assert result.returncode != 0 and "not on whitelist" in " ".join(result.stderr_tail)


@pytest.mark.parametrize("name", ["-i", "-y.mp4", "--", "-f lavfi -i testsrc", "file:x.mp4", "http:x.mp4"])
def test_option_like_file_names_are_plain_files(tmp_path, monkeypatch, name):
    """Relative names that look like options or protocols reach ffmpeg as files, give the same facts and frames."""
    from features.video import PER_SECOND, extract_frames

    src = make_video(tmp_path / "plain.mp4", duration=2.0, size=(96, 64), fps=10, audio=False)
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(src, tmp_path / name)
    before = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    info, ref = probe(name, timeout=30), probe(src, timeout=30)
    assert info.duration == ref.duration and info.width == ref.width
    got = extract_frames(name, info, [PER_SECOND], timeout=60)["per_second"]
    want = extract_frames(src, ref, [PER_SECOND], timeout=60)["per_second"]
    assert got.frames.tobytes() == want.frames.tobytes()
    assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == before  # "-y" overwrote nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"plain.mp4", name})


@pytest.mark.parametrize("name", ["-abc.003.mp4", "--help.mp4", "-i.mkv"])
def test_probe_frames_and_audio_of_an_option_like_name(tmp_path, monkeypatch, name):
    """File names that look like options (``-6otZ7M-Mro.003.mp4`` in First Impressions) reach every media tool as
    data: probe, frames (every decode strategy) and audio, from a relative path."""
    from features.audio import load_audio
    from features.video import PER_SECOND, UNIFORM, extract_frames, extract_frames_and_audio

    make_video(tmp_path / name, duration=2.0, size=(64, 48), fps=10, gop=5)
    monkeypatch.chdir(tmp_path)
    info = probe(name)  # relative: "-abc.003.mp4" exactly as a listing gives it
    assert (info.width, info.height) == (64, 48) and abs(info.duration - 2.0) < 0.2 and info.has_audio
    for strategy in ("sequential", "seek"):
        frames = extract_frames(name, info, [PER_SECOND, UNIFORM], strategy=strategy)
        assert frames["per_second"].valid.sum() == 2 and frames["uniform"].valid.sum() >= 15
    y = load_audio(name, info, sr=16000)
    assert y is not None and abs(len(y) - 32000) < 1600 and np.abs(y).max() > 0.1
    _, pcm = extract_frames_and_audio(name, info, [PER_SECOND], sr=16000)
    assert pcm is not None and abs(len(pcm) - len(y)) < 1600


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synthetic_speech_of_text_starting_with_a_dash(tmp_path):
    """Text spoken by the synthetic source's espeak-ng may start with "-": it is read as text, not an option."""
    from features.sources.synthetic import _Design, _speak

    y = _speak("-v hello there", shutil.which("espeak-ng"), tmp_path, _Design())
    assert y.ndim == 1 and len(y) > 0.5 * _Design().sample_rate and np.abs(y).max() > 0.05


def test_symlinks_out_of_the_folder_are_ignored_by_every_adapter(tmp_path):
    """The label adapters match videos with the same safe file discovery as the folder adapter."""
    import json

    from features.sources import load_source

    secret = tmp_path / "outside.mp4"
    secret.write_bytes(b"x")
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "v0.mp4").symlink_to(secret)
    (ds / "posts.jsonl").write_text(json.dumps({"id": "v0", "createTime": 1.7e9, "stats": {
        "playCount": 1, "shareCount": 0, "commentCount": 0}}) + "\n")
    videos = load_source("tiktok", ds / "posts.jsonl", scrape_time=1.8e9).videos
    assert videos["source_path"].tolist() == [None]


def test_a_local_dask_cluster_binds_loopback_only():
    pytest.importorskip("prefect_dask")
    from pipelines.extract import _task_runner

    runner = _task_runner(1, None, 2)
    assert runner.cluster_kwargs["host"] == "127.0.0.1" and runner.cluster_kwargs["dashboard_address"] is None

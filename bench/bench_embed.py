"""Benchmark: pretrained-encoder embedding throughput, an embedding stage against the decode floor, and the epoch
time of heads on cached embeddings against heads on raw inputs.

Encoders are randomly initialised at the real architectures' sizes (nothing is downloaded; speed does not depend on
the weights) and saved with ``save_pretrained``, then loaded and run through :mod:`features.embed` — the code the
``embed_*`` stages run (preprocessing, batches, ``inference_mode``, bf16 autocast + pinned transfers on CUDA):

* **vision** frames/s at 224²: a CLIP vision tower, ``small`` = ViT-S/16 (384 wide, 12 layers, 6 heads) and
  ``base`` = ViT-B/16 (768, 12, 12; CLIP ViT-B/16's image tower). Target on an H100/H200-class GPU in bf16:
  ≥ 4,000 frames/s for ``base``; on CPU the figure is recorded.
* **audio** seconds of audio per second: wav2vec 2.0 with its real 7-layer conv front end, ``small`` (384 wide,
  4 layers) and ``base`` (768, 12 layers; wav2vec2-base), one 1-s segment per item.
* **stage vs decode floor**: the per-video ``embed_vision`` stage (its own decode at 224² + the ``small`` encoder)
  on a generated 720p clip, against ``ffmpeg -i FILE -f null -`` on the same file (ratio of medians).
* **cross-video batching**: the ``embed_vision`` stage as the flow runs it (``extract_items``, commits included) over
  N short portrait clips (1 s, 30 frames each; ``tiny``: 4 clips × 8 frames), frames/s with encoder batches filled
  across the clips vs one clip at a time, and with the clips split between two worker threads that share one
  batcher (the flow's ``workers=2``) vs one thread (ratios of medians, the ways alternating).
* **epoch time**: one training epoch over ``N`` videos as ``vidpipe train`` runs it on CPU (a shuffled
  ``PackLoader`` over an in-memory pack with uint8 frames, the model's Adam, models.engine's epoch with its default
  gradient clipping) for ``sec2sec`` (emotion), ``mcat`` (personality) and ``van`` (popularity), each at its default
  config and the default extraction's geometry — raw inputs (15 per-second 64² frames + 15 × 20 × 101 MFCC; 100
  uniform 64² frames + 20 × 1,500 clip MFCC + a 5,000-word bag of words; 30 uniform_224 224² frames, of which VAN
  reads 2, + clip MFCC + the 32-wide graph embedding) vs cached embeddings (512-wide frame vectors, 768-wide audio
  and text vectors; MCAT and VAN pool them into tokens by their config's defaults, MCAT's text token is the stored
  sentence vector), same batch size, raw and embedding epochs alternating; the loader's share (its batches without
  the model) is measured beside each epoch, and each epoch's CPU time (``time.process_time``) beside its wall time.
  Target: raw / embeddings ≥ 10× on CPU.

    .venv/bin/python bench/bench_embed.py           # --quick: 64 frames / 16 s of audio per measurement, 128 videos
    .venv/bin/python bench/bench_embed.py --full    # 512 frames / 128 s, 512 videos
    .venv/bin/python bench/bench_embed.py --tiny    # seconds-long smoke run (tiny encoders and geometry)
    .venv/bin/python bench/bench_embed.py --epochs-only --threads 1   # the epoch table alone (128 videos, batch 32)
    .venv/bin/python bench/bench_embed.py --epochs-only --threads 1 --models van   # one model's row of it
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    WORK_DIR, fmt_ratio, load_average, machine_info, median, table, verdict, write_result,
)

__all__ = ["run", "main", "render", "TARGETS", "ENCODERS"]

TARGETS = {"gpu_base_frames_per_s": 4000.0, "epoch_raw_vs_embeddings": 10.0}
#: size → (vision CLIP tower: hidden, layers, heads, mlp; audio wav2vec2: hidden, layers, heads, mlp)
ENCODERS = {
    "tiny": ((32, 2, 4, 64), (32, 1, 2, 64)),
    "small": ((384, 12, 6, 1536), (384, 4, 6, 1536)),
    "base": ((768, 12, 12, 3072), (768, 12, 12, 3072)),
}
_SIZES = {"tiny": dict(frames=8, audio_s=4, repeats=1, videos=6, batch=3, encoders=("tiny",), image=32),
          "quick": dict(frames=64, audio_s=16, repeats=3, videos=128, batch=32, encoders=("small", "base"), image=224),
          "full": dict(frames=512, audio_s=128, repeats=3, videos=512, batch=32, encoders=("small", "base"),
                       image=224)}


def _save_vision(path: Path, size: str, image: int) -> Path:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    hidden, layers, heads, mlp = ENCODERS[size][0]
    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=mlp, image_size=image, patch_size=16 if image >= 64 else 8,
                           projection_dim=512 if size != "tiny" else 16)
    CLIPVisionModelWithProjection(cfg).save_pretrained(path)
    return path


def _save_audio(path: Path, size: str) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    hidden, layers, heads, mlp = ENCODERS[size][1]
    torch.manual_seed(0)
    conv = (32,) * 7 if size == "tiny" else (512,) * 7
    cfg = Wav2Vec2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=mlp, conv_dim=conv, num_conv_pos_embeddings=128 if size != "tiny" else 16,
                         num_conv_pos_embedding_groups=16 if size != "tiny" else 2)
    Wav2Vec2Model(cfg).save_pretrained(path)
    return path


def _throughput(fn, items: int, repeats: int) -> float:
    fn()  # warm-up (allocations, cuDNN/oneDNN kernel choice)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return items / median(times)


def _encoders(mode: str, size: dict, folder: Path, device: str) -> list[dict[str, Any]]:
    from features.embed import AudioEncoder, VisionEncoder

    rows = []
    rng = np.random.default_rng(0)
    for name in size["encoders"]:
        v = VisionEncoder(_save_vision(folder / f"vision-{name}", name, size["image"]), device=device,
                          batch_size=64 if name != "tiny" else 4)
        crop = v.preprocessing.crop
        frames = rng.integers(0, 256, (size["frames"], crop, crop, 3), dtype=np.uint8)
        fps = _throughput(lambda: v.embed(frames), size["frames"], size["repeats"])
        a = AudioEncoder(_save_audio(folder / f"audio-{name}", name), device=device,
                         batch_size=16 if name != "tiny" else 2)
        y = (0.1 * rng.standard_normal(size["audio_s"] * 16000)).astype(np.float32)
        aps = _throughput(lambda: a.embed(y, 16000, size["audio_s"]), size["audio_s"], size["repeats"])
        rows.append({"encoder": name, "device": v.runner.device, "image": crop, "vision_dim": v.dim,
                     "frames_per_s": fps, "audio_dim": a.dim, "audio_s_per_s": aps})
        del v, a
    return rows


def _stage_vs_floor(mode: str, size: dict, folder: Path, device: str) -> dict[str, Any] | None:
    """embed_vision's per-video work (decode at the encoder's size + embedding) vs ffmpeg's full decode."""
    from bench._media import ClipSpec, make_clip
    from bench.bench_extract import _floor
    from features.extract_video import ExtractConfig, StageFailure, extract_video

    spec = ClipSpec(seconds=8, width=1280, height=720) if mode != "tiny" else ClipSpec(seconds=2, width=160, height=90)
    clip = make_clip(spec, folder / "media")
    name = size["encoders"][0]
    model = folder / f"vision-{name}"
    cfg = ExtractConfig(vision_model=str(model), embed_device=device, asr="none")
    row = {"video_id": clip.stem, "source_path": str(clip)}

    def stage() -> None:
        out = extract_video(row, ["probe", "embed_vision"], cfg)
        failed = {s: r.error for s, r in out.items() if isinstance(r, StageFailure)}
        if failed:
            raise RuntimeError(f"benchmark extraction of {clip.name!r} failed: {failed}")

    stage()  # loads the encoder once (shared by every later call, as in the pipeline)
    t_stage, t_floor = [], []
    for _ in range(size["repeats"]):
        for fn, out in ((stage, t_stage), (lambda: _floor(clip), t_floor)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    frames = cfg.n_segments * cfg.frames_per_segment * ("per_second" in cfg.profiles) + cfg.n_frames * (
        "uniform" in cfg.profiles)
    return {"clip": spec.label, "encoder": name, "frames": frames, "stage_s": median(t_stage),
            "floor_s": median(t_floor), "stage_vs_floor": median(t_stage) / median(t_floor)}


#: per headline model: its task, and the pack geometry of the default extraction (features.extract_video.ExtractConfig:
#: 20 MFCC at a 10 ms hop, 101 frames a second and 1,500 over a 15-s clip; per_second 64² frames; uniform 100 × 64²;
#: uniform_224 30 × 224², of which VAN reads 2; the vocabulary at its 5,000-word cap; the GAT's 32-wide embedding)
_EPOCH_MODELS = {
    "sec2sec": ("emotion", dict(n_segments=15, frames_per_segment=1, frame_size=64, n_mfcc=20, mfcc_frames=101)),
    "mcat": ("personality", dict(n_frames=100, frame_size=64, n_mfcc=20, mfcc_frames=1500, vocab_size=5000)),
    "van": ("popularity", dict(n_frames=30, frame_size=224, n_mfcc=20, mfcc_frames=1500, graph_dim=32)),
}
_TINY_GEOMETRY = {
    "sec2sec": dict(n_segments=3, frame_size=16, n_mfcc=8, mfcc_frames=8, cnn_width=8, lstm_hidden=16, vision_grid=2,
                    dim=16, heads=2),
    "mcat": dict(n_frames=4, frame_size=16, patch_size=8, n_mfcc=8, mfcc_frames=16, vocab_size=20, audio_chunk=4,
                 dim=16, heads=2),
    "van": dict(n_frames=4, frame_size=32, patch_size=8, n_mfcc=8, mfcc_frames=16, graph_dim=6, audio_chunk=4, dim=16,
                heads=2),
}
#: widths of the cached vectors: CLIP ViT-B/16's 512-wide image projection, wav2vec2-base and a BERT-base text model
#: (768), 15 one-second audio segments, 64 transcript tokens (ExtractConfig.text_max_tokens)
_EMBEDDING_GEOMETRY = dict(vision_emb_dim=512, audio_emb_dim=768, text_emb_dim=768, audio_tokens=15, text_tokens=64)
_TINY_EMBEDDINGS = dict(vision_emb_dim=16, audio_emb_dim=16, text_emb_dim=16, audio_tokens=3, text_tokens=8)


def _pack_arrays(model: Any, videos: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays of every key ``model`` reads, with their masks and a target, for ``videos`` videos, in the dtypes
    of a tensor pack (frames ``uint8``, as features.packs stores them; everything else float32 / bool)."""
    from models.base import IMAGE_KEYS, example_batch

    shapes = {k: tuple(v.shape[1:]) for k, v in example_batch(model, 1).items()}
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        if key.endswith("_mask"):
            out[key] = np.ones((videos, *shape), dtype=bool)
        elif key in IMAGE_KEYS:
            out[key] = rng.integers(0, 256, (videos, *shape), dtype=np.uint8)
        elif key == "target":
            y = rng.random((videos, *shape), dtype=np.float32)
            out[key] = (y > 0.5).astype(np.float32) if model.task == "emotion" else y
        else:
            out[key] = rng.standard_normal((videos, *shape), dtype=np.float32)
    return out


def _train_epoch_fn(model: Any, arrays: dict[str, np.ndarray], batch: int):
    """One training epoch as ``vidpipe train`` runs it on CPU: a shuffled :class:`models.data.PackLoader` over the
    in-memory pack (uint8 frames scaled to float per batch, only those the model reads: ``input_positions``), the
    model's own Adam, models.engine's epoch (forward, backward, gradient clipping at TrainConfig's default, step); and
    the loader's part alone (its batches, no model). Returns (epoch, load) callables."""
    import torch

    from models.data import PackLoader
    from models.engine import TrainConfig, _train_epoch
    from pipelines.train import pack_keys

    cfg = TrainConfig(batch_size=batch, device="cpu")
    videos = len(arrays["target"])
    loader = PackLoader(arrays, pack_keys(model), np.arange(videos), batch_size=batch, shuffle=True, seed=cfg.seed,
                        positions=model.input_positions())
    optimizer = model.configure_optimizer(cfg.lr, cfg.weight_decay)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    device = torch.device("cpu")
    return (lambda: _train_epoch(model, loader, optimizer, scaler, cfg, device, None)), (lambda: list(loader))


#: mode → the cross-video batching measurement's short clips: (clips, seconds, frames embedded per clip, encoder)
_SHORT_CLIPS = {"tiny": (4, 1, 8, "tiny"), "quick": (12, 1, 30, "small"), "full": (48, 1, 30, "small")}


def _stage_batching(mode: str, size: dict, folder: Path, device: str, clips: int | None = None,
                    encoder: str | None = None) -> dict[str, Any]:
    """The ``embed_vision`` stage over N short clips as the flow runs it (:func:`pipelines.extract.extract_items`,
    commits included): the clips' frames in encoder batches filled across clips (the shared batcher of
    features.batching, its forwards in their own thread while the caller decodes), against one clip at a time (each
    clip's frames alone in their batches), and the clips split between two threads that share one batcher (as the
    flow's ``workers=2`` runs them). One run, the ways alternating; frames/s of each and the ratios.
    ``clips`` / ``encoder`` override the mode's."""
    from bench._media import ClipSpec, make_clip
    from features.extract_video import ExtractConfig
    from features.store import Store
    from pipelines.extract import extract_items

    n_clips, seconds, n_frames, name = _SHORT_CLIPS[mode]
    n_clips, name = clips or n_clips, encoder or name
    paths = [make_clip(ClipSpec(seconds=seconds, width=576, height=1024, variant=i), folder / "short")
             for i in range(n_clips)]  # portrait 9:16, as TikTok's
    model = folder / f"vision-{name}"
    if not model.exists():
        _save_vision(model, name, 32 if name == "tiny" else 224)
    cfg = ExtractConfig(vision_model=str(model), embed_device=device, asr="none", profiles=("uniform",),
                        n_frames=n_frames, embed_batch_size=16 if name == "tiny" else 64)
    items = [{"row": {"video_id": p.stem, "source_path": str(p)}, "todo": ["embed_vision"],
              "fps": {"embed_vision": f"bench-{i}"}} for i, p in enumerate(paths)]
    store = Store(str(folder / "store"), "bench", create=True)

    def two_workers() -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda half: extract_items(store, half, cfg), (items[0::2], items[1::2])))

    ways = {"per_video": lambda: [extract_items(store, [item], cfg) for item in items],
            "batched": lambda: extract_items(store, items, cfg), "two_workers": two_workers}
    ways["batched"]()  # loads the encoder, warms the decoder and the allocator
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(size["repeats"]):
        for kind, fn in ways.items():
            t0 = time.perf_counter()
            fn()
            times[kind].append(time.perf_counter() - t0)
    failed = store.failures()
    if len(failed):
        raise RuntimeError(f"benchmark extraction failed: {failed.to_dict('records')[:3]}")
    frames = n_clips * n_frames
    t = {k: median(v) for k, v in times.items()}
    return {"clips": n_clips, "clip": f"{seconds}s 576x1024", "encoder": name, "frames": frames,
            "batch": cfg.embed_batch_size, "per_video_frames_per_s": frames / t["per_video"],
            "batched_frames_per_s": frames / t["batched"], "batched_vs_per_video": t["per_video"] / t["batched"],
            "two_workers_frames_per_s": frames / t["two_workers"],
            "two_workers_vs_one": t["batched"] / t["two_workers"]}


def _epochs(mode: str, size: dict, models: tuple[str, ...] = tuple(_EPOCH_MODELS)) -> list[dict[str, Any]]:
    """Epoch time of each headline model in ``models`` on raw inputs and on cached embeddings (see the module
    docstring)."""
    import torch

    from models.registry import create_model

    tiny = mode == "tiny"
    emb = _TINY_EMBEDDINGS if tiny else _EMBEDDING_GEOMETRY
    rows = []
    for name in models:
        task, geometry = _EPOCH_MODELS[name]
        epochs, loads, inputs = {}, {}, {}
        for kind in ("raw", "embeddings"):
            extra = {} if kind == "raw" else {k: v for k, v in emb.items()
                                              if name != "sec2sec" or k in ("vision_emb_dim", "audio_emb_dim")}
            torch.manual_seed(0)
            model = create_model(name, task=task, input_kind=kind, **(_TINY_GEOMETRY[name] if tiny else geometry),
                                 **extra)
            arrays = _pack_arrays(model, size["videos"])
            inputs[kind] = {k: list(arrays[k].shape[1:]) for k in model.inputs}
            epochs[kind], loads[kind] = _train_epoch_fn(model, arrays, size["batch"])
            epochs[kind]()  # warm-up
        # raw and embedding epochs alternate, so a change in the machine's load hits both sides of the ratio
        t: dict[str, list[float]] = {f"{kind}{part}": [] for kind in epochs for part in ("", "_load", "_cpu")}
        for _ in range(size["repeats"]):
            for kind in epochs:
                for part, fn in (("", epochs[kind]), ("_load", loads[kind])):
                    t0, cpu0 = time.perf_counter(), time.process_time()
                    fn()
                    t[f"{kind}{part}"].append(time.perf_counter() - t0)
                    if not part:  # CPU time of the process: less disturbed than wall time by a loaded machine
                        t[f"{kind}_cpu"].append(time.process_time() - cpu0)
        times = {kind: median(v) for kind, v in t.items()}
        rows.append({"model": name, "task": task, "videos": size["videos"], "batch": size["batch"],
                     "raw_inputs": inputs["raw"], "embedding_inputs": inputs["embeddings"],
                     "raw_epoch_s": times["raw"], "embeddings_epoch_s": times["embeddings"],
                     "raw_loader_s": times["raw_load"], "embeddings_loader_s": times["embeddings_load"],
                     "raw_vs_embeddings": times["raw"] / times["embeddings"],
                     "raw_epoch_cpu_s": times["raw_cpu"], "embeddings_epoch_cpu_s": times["embeddings_cpu"],
                     "raw_vs_embeddings_cpu": times["raw_cpu"] / times["embeddings_cpu"]})
        del epochs, loads
    return rows


def run(mode: str = "quick", *, device: str = "auto", threads: int | None = None, stage: bool = True,
        epochs_only: bool = False, work_dir: Path = WORK_DIR, models: tuple[str, ...] = tuple(_EPOCH_MODELS),
        **sizes: int) -> dict[str, Any]:
    """Measure every part (see the module docstring); returns the result document.

    ``epochs_only`` measures the epoch table alone (no encoder throughput, no stage); ``models`` are its rows.
    ``sizes`` overrides the mode's ``frames``, ``audio_s``, ``repeats``, ``videos`` or ``batch`` (a loaded
    machine)."""
    import torch

    if mode not in _SIZES:
        raise ValueError(f"mode={mode!r}: expected one of {sorted(_SIZES)}")
    unknown = sorted(set(sizes) - {"frames", "audio_s", "repeats", "videos", "batch"})
    if unknown or any(not isinstance(v, int) or v < 1 for v in sizes.values()):
        raise ValueError(f"sizes={sizes!r}: expected positive ints for frames, audio_s, repeats, videos, batch")
    if not models or any(m not in _EPOCH_MODELS for m in models):
        raise ValueError(f"models={models!r}: expected some of {list(_EPOCH_MODELS)}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    used_threads = torch.get_num_threads()
    size = {**_SIZES[mode], **sizes}
    load_before = load_average()
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="embed-", dir=work_dir))
    try:
        encoders = [] if epochs_only else _encoders(mode, size, folder, device)
        stage_row = _stage_vs_floor(mode, size, folder, device) if stage and not epochs_only else None
        batching_row = _stage_batching(mode, size, folder, device) if stage and not epochs_only else None
        epochs = _epochs(mode, size, tuple(models))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        torch.set_num_threads(previous_threads)
    base = next((r for r in encoders if r["encoder"] == "base"), None)
    on_gpu = base is not None and base["device"] == "cuda"
    worst = min(r["raw_vs_embeddings"] for r in epochs)
    return {
        "benchmark": "embed", "mode": mode, "epochs_only": epochs_only, "threads": used_threads,
        "command": f"python bench/bench_embed.py --{mode}" + (" --epochs-only" if epochs_only else "")
                   + ("" if tuple(models) == tuple(_EPOCH_MODELS) else " --models " + " ".join(models)),
        "sizes": {k: size[k] for k in ("frames", "audio_s", "repeats", "videos", "batch")},
        "encoders": encoders, "stage": stage_row, "stage_batching": batching_row, "epochs": epochs,
        "summary": {"base_frames_per_s": base["frames_per_s"] if base else None,
                    "worst_raw_vs_embeddings": worst},
        "met": {"gpu_base_frames_per_s": (base["frames_per_s"] >= TARGETS["gpu_base_frames_per_s"]) if on_gpu
                else None,
                "epoch_raw_vs_embeddings": worst >= TARGETS["epoch_raw_vs_embeddings"]},
        "machine": machine_info(), "load_before": load_before, "load_after": load_average(),
    }


def render(res: dict[str, Any]) -> str:
    """Plain-text tables of a result document."""
    out = [] if res.get("epochs_only") else [table(f"encoder throughput ({res['mode']})", res["encoders"],
                                                   ["encoder", "device", "image", "frames_per_s", "audio_s_per_s"])]
    if res["stage"]:
        s = res["stage"]
        out.append(f"embed_vision stage on a {s['clip']} clip ({s['encoder']} encoder, {s['frames']} frames): "
                   f"{s['stage_s']:.2f} s vs decode floor {s['floor_s']:.2f} s = {fmt_ratio(s['stage_vs_floor'])}")
    if res.get("stage_batching"):
        b = res["stage_batching"]
        out.append(f"embed_vision stage, {b['clips']} clips of {b['clip']} × {b['frames'] // b['clips']} frames "
                   f"({b['encoder']} encoder, batch {b['batch']}): one clip at a time "
                   f"{b['per_video_frames_per_s']:.1f} frames/s, batched across clips "
                   f"{b['batched_frames_per_s']:.1f} frames/s = {fmt_ratio(b['batched_vs_per_video'])}; "
                   f"two worker threads sharing one batcher {b['two_workers_frames_per_s']:.1f} frames/s = "
                   f"{fmt_ratio(b['two_workers_vs_one'])} of one")
    out.append(table(f"epoch time: raw inputs vs cached embeddings ({res.get('threads')} torch threads)", [
        {**r, "raw/emb": fmt_ratio(r["raw_vs_embeddings"]), "raw/emb cpu": fmt_ratio(r["raw_vs_embeddings_cpu"])}
        for r in res["epochs"]],
        ["model", "videos", "batch", "raw_epoch_s", "embeddings_epoch_s", "raw/emb", "raw_epoch_cpu_s",
         "embeddings_epoch_cpu_s", "raw/emb cpu", "raw_loader_s", "embeddings_loader_s"]))
    met = res["met"]
    out.append(f"targets: base encoder ≥ {TARGETS['gpu_base_frames_per_s']:.0f} frames/s on GPU: "
               f"{verdict(met['gpu_base_frames_per_s'])}; raw/embeddings epoch ≥ "
               f"{TARGETS['epoch_raw_vs_embeddings']:.0f}×: {verdict(met['epoch_raw_vs_embeddings'])}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="64 frames, 16 s of audio, 128 videos (default)")
    mode.add_argument("--full", action="store_true", help="512 frames, 128 s of audio, 512 videos")
    mode.add_argument("--tiny", action="store_true", help="seconds-long smoke run (tiny encoders and geometry)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where encoders run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-stage", action="store_true", help="skip the stage-vs-decode-floor measurement")
    parser.add_argument("--epochs-only", action="store_true",
                        help="measure only the epoch table (raw inputs vs cached embeddings); use with --threads 1")
    for opt, what in (("frames", "frames per vision measurement"), ("audio-s", "seconds of audio per measurement"),
                      ("repeats", "timed repeats (medians)"), ("videos", "videos per epoch"),
                      ("batch", "batch size of the epochs")):
        parser.add_argument(f"--{opt}", type=int, default=None, help=f"override the mode's {what}")
    parser.add_argument("--models", nargs="+", default=list(_EPOCH_MODELS), choices=list(_EPOCH_MODELS),
                        help="headline models of the epoch table (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/embed.json)")
    args = parser.parse_args(argv)
    name = "full" if args.full else "tiny" if args.tiny else "quick"
    sizes = {k: v for k, v in (("frames", args.frames), ("audio_s", args.audio_s), ("repeats", args.repeats),
                               ("videos", args.videos), ("batch", args.batch)) if v is not None}
    res = run(name, device=args.device, threads=args.threads, stage=not args.no_stage, epochs_only=args.epochs_only,
              models=tuple(args.models), **sizes)
    path = write_result("embed", res, args.out)
    print(render(res))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()

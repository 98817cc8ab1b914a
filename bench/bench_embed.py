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
* **epoch time**: forward + backward + Adam over ``N`` videos for ``sec2sec`` (emotion), ``mcat`` (personality) and
  ``van`` (popularity) at the pipeline's default geometry — raw inputs (64² per-second frames + MFCC; 100 uniform
  64² frames + clip MFCC + bag of words; 30 uniform 224² frames + clip MFCC + graph) vs cached embeddings (512-wide
  frame vectors, 768-wide audio and text vectors; MCAT and VAN pool them into tokens by their config's defaults,
  ``vision_emb_groups=10`` and ``text_emb_groups=1``), same batch size, raw and embedding epochs alternating.
  Target: raw / embeddings ≥ 10× on CPU.

    .venv/bin/python bench/bench_embed.py           # --quick: 64 frames / 16 s of audio per measurement, 32 videos
    .venv/bin/python bench/bench_embed.py --full    # 512 frames / 128 s, 128 videos
    .venv/bin/python bench/bench_embed.py --tiny    # seconds-long smoke run (tiny encoders and geometry)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
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
          "quick": dict(frames=64, audio_s=16, repeats=3, videos=32, batch=16, encoders=("small", "base"), image=224),
          "full": dict(frames=512, audio_s=128, repeats=3, videos=128, batch=16, encoders=("small", "base"),
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


def _epochs(mode: str, size: dict) -> list[dict[str, Any]]:
    import torch

    from models.base import example_batch
    from models.registry import create_model

    tiny = mode == "tiny"
    common = dict(dim=16, heads=2) if tiny else {}
    raw_geo = {
        "sec2sec": dict(n_segments=3, frame_size=16, n_mfcc=8, mfcc_frames=8, cnn_width=8, lstm_hidden=16,
                        vision_grid=2) if tiny else dict(n_segments=15, n_mfcc=20, mfcc_frames=101),
        "mcat": dict(n_frames=4, frame_size=16, patch_size=8, n_mfcc=8, mfcc_frames=16, vocab_size=20,
                     audio_chunk=4) if tiny else dict(n_frames=100, n_mfcc=20, mfcc_frames=256, vocab_size=1000),
        "van": dict(n_frames=4, frame_size=32, patch_size=8, n_mfcc=8, mfcc_frames=16, graph_dim=6,
                    audio_chunk=4) if tiny else dict(n_frames=30, n_mfcc=20, mfcc_frames=256, graph_dim=32),
    }
    emb = dict(vision_emb_dim=16, audio_emb_dim=16, text_emb_dim=16, audio_tokens=3, text_tokens=8) if tiny else \
        dict(vision_emb_dim=512, audio_emb_dim=768, text_emb_dim=768, audio_tokens=15, text_tokens=64)
    tasks = {"sec2sec": "emotion", "mcat": "personality", "van": "popularity"}
    rows = []
    steps = max(1, size["videos"] // size["batch"])

    def make_epoch(model: Any):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = example_batch(model, size["batch"])

        def epoch() -> None:
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                model(batch).loss.backward()
                opt.step()

        return epoch

    for name, task in tasks.items():
        epochs = {}
        for kind in ("raw", "embeddings"):
            extra = {} if kind == "raw" else {k: v for k, v in emb.items()
                                              if name != "sec2sec" or k in ("vision_emb_dim", "audio_emb_dim")}
            torch.manual_seed(0)
            epochs[kind] = make_epoch(create_model(name, task=task, input_kind=kind, **common, **raw_geo[name],
                                                   **extra))
            epochs[kind]()  # warm-up
        # raw and embedding epochs alternate, so a change in the machine's load hits both sides of the ratio
        t: dict[str, list[float]] = {kind: [] for kind in epochs}
        for _ in range(size["repeats"]):
            for kind, epoch in epochs.items():
                t0 = time.perf_counter()
                epoch()
                t[kind].append(time.perf_counter() - t0)
        times = {kind: median(v) for kind, v in t.items()}
        rows.append({"model": name, "task": task, "videos": steps * size["batch"], "raw_epoch_s": times["raw"],
                     "embeddings_epoch_s": times["embeddings"],
                     "raw_vs_embeddings": times["raw"] / times["embeddings"]})
    return rows


def run(mode: str = "quick", *, device: str = "auto", threads: int | None = None, stage: bool = True,
        work_dir: Path = WORK_DIR, **sizes: int) -> dict[str, Any]:
    """Measure every part (see the module docstring); returns the result document.

    ``sizes`` overrides the mode's ``frames``, ``audio_s``, ``repeats``, ``videos`` or ``batch`` (a loaded machine)."""
    import torch

    if mode not in _SIZES:
        raise ValueError(f"mode={mode!r}: expected one of {sorted(_SIZES)}")
    unknown = sorted(set(sizes) - {"frames", "audio_s", "repeats", "videos", "batch"})
    if unknown or any(not isinstance(v, int) or v < 1 for v in sizes.values()):
        raise ValueError(f"sizes={sizes!r}: expected positive ints for frames, audio_s, repeats, videos, batch")
    if threads is not None:
        torch.set_num_threads(threads)
    size = {**_SIZES[mode], **sizes}
    load_before = load_average()
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="embed-", dir=work_dir))
    try:
        encoders = _encoders(mode, size, folder, device)
        stage_row = _stage_vs_floor(mode, size, folder, device) if stage else None
        epochs = _epochs(mode, size)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base = next((r for r in encoders if r["encoder"] == "base"), None)
    on_gpu = base is not None and base["device"] == "cuda"
    worst = min(r["raw_vs_embeddings"] for r in epochs)
    return {
        "benchmark": "embed", "mode": mode, "command": f"python bench/bench_embed.py --{mode}",
        "sizes": {k: size[k] for k in ("frames", "audio_s", "repeats", "videos", "batch")},
        "encoders": encoders, "stage": stage_row, "epochs": epochs,
        "summary": {"base_frames_per_s": base["frames_per_s"] if base else None,
                    "worst_raw_vs_embeddings": worst},
        "met": {"gpu_base_frames_per_s": (base["frames_per_s"] >= TARGETS["gpu_base_frames_per_s"]) if on_gpu
                else None,
                "epoch_raw_vs_embeddings": worst >= TARGETS["epoch_raw_vs_embeddings"]},
        "machine": machine_info(), "load_before": load_before, "load_after": load_average(),
    }


def render(res: dict[str, Any]) -> str:
    """Plain-text tables of a result document."""
    out = [table(f"encoder throughput ({res['mode']})", res["encoders"],
                 ["encoder", "device", "image", "frames_per_s", "audio_s_per_s"])]
    if res["stage"]:
        s = res["stage"]
        out.append(f"embed_vision stage on a {s['clip']} clip ({s['encoder']} encoder, {s['frames']} frames): "
                   f"{s['stage_s']:.2f} s vs decode floor {s['floor_s']:.2f} s = {fmt_ratio(s['stage_vs_floor'])}")
    out.append(table("epoch time: raw inputs vs cached embeddings", [
        {**r, "raw/emb": fmt_ratio(r["raw_vs_embeddings"])} for r in res["epochs"]],
        ["model", "videos", "raw_epoch_s", "embeddings_epoch_s", "raw/emb"]))
    met = res["met"]
    out.append(f"targets: base encoder ≥ {TARGETS['gpu_base_frames_per_s']:.0f} frames/s on GPU: "
               f"{verdict(met['gpu_base_frames_per_s'])}; raw/embeddings epoch ≥ "
               f"{TARGETS['epoch_raw_vs_embeddings']:.0f}×: {verdict(met['epoch_raw_vs_embeddings'])}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="64 frames, 16 s of audio, 32 videos (default)")
    mode.add_argument("--full", action="store_true", help="512 frames, 128 s of audio, 128 videos")
    mode.add_argument("--tiny", action="store_true", help="seconds-long smoke run (tiny encoders and geometry)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where encoders run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-stage", action="store_true", help="skip the stage-vs-decode-floor measurement")
    for opt, what in (("frames", "frames per vision measurement"), ("audio-s", "seconds of audio per measurement"),
                      ("repeats", "timed repeats (medians)"), ("videos", "videos per epoch"),
                      ("batch", "batch size of the epochs")):
        parser.add_argument(f"--{opt}", type=int, default=None, help=f"override the mode's {what}")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/embed.json)")
    args = parser.parse_args(argv)
    name = "full" if args.full else "tiny" if args.tiny else "quick"
    sizes = {k: v for k, v in (("frames", args.frames), ("audio_s", args.audio_s), ("repeats", args.repeats),
                               ("videos", args.videos), ("batch", args.batch)) if v is not None}
    res = run(name, device=args.device, threads=args.threads, stage=not args.no_stage, **sizes)
    path = write_result("embed", res, args.out)
    print(render(res))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()

"""The one model interface: tasks, ``ModelOutput``, the shared config fields and the ``VidModel`` base class.

Every model takes ``batch: dict[str, Tensor]`` (keys and shapes in docs/ARCHITECTURE.md) and returns
``ModelOutput(pred, loss, extras)``. A model declares the data keys it reads in ``model.inputs``; for each of them it
also reads ``<key>_mask`` when present (absent mask = every item real) and, when present, ``target``.

Subclasses implement :meth:`VidModel.compute_logits`; the base class turns logits into predictions in the task's
output space (a sigmoid: emotion probabilities, traits and popularity in [0, 1]) and computes the task loss, so the
training engine never needs to know which model it is training.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from names import TASK_TARGETS

__all__ = [
    "LOSSES",
    "TASKS",
    "ModelConfig",
    "ModelOutput",
    "IMAGE_KEYS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_GEOMETRY",
    "all_real",
    "input_shape",
    "TaskSpec",
    "VidModel",
    "bell_loss",
    "build_config",
    "check_shape",
    "example_batch",
    "mask_shape",
    "masked_mean",
    "normalize_images",
    "task_spec",
]


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """What a task predicts and how it is scored."""

    k: int  # number of outputs K (columns of ``target``)
    loss: str  # default loss name (one of LOSSES)
    targets: tuple[str, ...]  # names of the K target columns, in order
    monitor: str  # validation metric (from models.metrics) that picks the best checkpoint; higher is better


#: task → (default loss, monitored metric); the tasks and their target columns are :data:`names.TASK_TARGETS`
_TASK_SCORING = {
    "emotion": ("bce", "accuracy_mean"),
    "personality": ("l1", "mean_accuracy"),
    "popularity": ("mse", "spearman"),
    # MTAF's eq. 1 score (0.2·favourites + 0.3·comments + 0.5·shares; features.packs.mtaf_popularity)
    "popularity_mtaf": ("mse", "spearman"),
}
TASKS: Mapping[str, TaskSpec] = types.MappingProxyType({
    task: TaskSpec(k=len(targets), loss=_TASK_SCORING[task][0], targets=targets, monitor=_TASK_SCORING[task][1])
    for task, targets in TASK_TARGETS.items()
})

LOSSES: tuple[str, ...] = ("bce", "l1", "mse", "bell", "mae+mse+bell")
_NORMS = ("layer", "batch")
_TOKEN_MODES = ("sequence", "pooled")
_VISION_NORMS = ("none", "imagenet")
#: the keys holding RGB frames in [0, 1] (channel axis -3, width axis -1)
IMAGE_KEYS: tuple[str, ...] = ("vision", "vision_seg")
#: ImageNet per-channel mean and standard deviation of RGB in [0, 1] (torchvision's), for ``vision_norm="imagenet"``
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: input key → {config field: axis of the key's array (after the video axis) that gives the field's size}
INPUT_GEOMETRY: Mapping[str, Mapping[str, int]] = types.MappingProxyType({
    "vision_seg": {"n_segments": 0, "frames_per_segment": 1, "frame_size": 3},
    "audio_seg": {"n_segments": 0, "n_mfcc": 2, "mfcc_frames": 3},
    "vision": {"n_frames": 0, "frame_size": 2},
    "audio": {"n_mfcc": 0, "mfcc_frames": 1},
    "text": {"vocab_size": 0},
    "graph": {"graph_dim": 0},
    "meta": {"meta_dim": 0},
    "egemaps": {"egemaps_dim": 0},
    "vision_seg_emb": {"n_segments": 0, "frames_per_segment": 1, "vision_emb_dim": 2},
    "audio_seg_emb": {"n_segments": 0, "audio_emb_dim": 1},
    "vision_emb": {"n_frames": 0, "vision_emb_dim": 1},
    "audio_emb": {"audio_tokens": 0, "audio_emb_dim": 1},
    "text_emb": {"text_tokens": 0, "text_emb_dim": 1},
    "text_sentence_emb": {"text_emb_dim": 0},
})
#: input key → {axis: size} of the axes no config field sizes: RGB channels, a segment's MFCC / Δ / ΔΔ rows
_FIXED_AXES: Mapping[str, Mapping[int, int]] = types.MappingProxyType({
    "vision_seg": {2: 3}, "audio_seg": {1: 3}, "vision": {1: 3}})
#: tile-size field → the geometry field it tiles (the tile must divide it)
_TILES: Mapping[str, str] = types.MappingProxyType({"patch_size": "frame_size", "audio_chunk": "mfcc_frames"})
#: fields a run does not choose besides the geometry: the task (a run's own column) and ``pretrained_path`` (a local
#: path; a reloaded checkpoint drops it)
_NOT_CHOSEN = frozenset({"task", "pretrained_path"})


def task_spec(task: str, targets: tuple[str, ...] | list[str] | None = None) -> TaskSpec:
    """The TaskSpec of ``task``, narrowed to ``targets`` (a subset of its target columns) when given.

    A narrowed spec predicts only those columns (K = len(targets)) with the task's loss and monitored metric, which
    then averages over those columns only; e.g. ``task_spec("emotion", ["valence"])`` is a valence-only model, so
    valence and arousal can be trained, and their best epochs chosen, separately (Sec2Sec reports them separately).

    Raises:
        ValueError: unknown task, empty or repeated targets, or a name that is not a target of the task.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not a known task; expected one of {sorted(TASKS)}")
    spec = TASKS[task]
    if targets is None:
        return spec
    names = tuple(targets)
    bad = [t for t in names if t not in spec.targets]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(f"targets={list(names)!r}: expected distinct names from {list(spec.targets)} (task {task!r})")
    if names == spec.targets:
        return spec
    return dataclasses.replace(spec, k=len(names), targets=names)


@dataclass(kw_only=True)
class ModelConfig:
    """Fields every model shares. Model families subclass this and add their input geometry and widths."""

    task: str = "emotion"  # one of TASKS; sets K, the default loss and the monitored metric
    loss: str | None = None  # one of LOSSES; None = the task's default (BCE emotion, L1 personality, MSE popularity)
    bell_sigma: float = 9.0  # Bell loss σ (paper 004 / CR-Net), in the units of targets × bell_scale
    bell_gamma: float = 300.0  # Bell loss γ (scale of the loss)
    bell_scale: float = 100.0  # targets and predictions × this before Bell (and MAE+MSE+Bell); see bell_loss
    dim: int = 64  # D, the width of every token after its encoder
    heads: int = 4  # H, attention heads (D must be divisible by H)
    ff_mult: int = 2  # feed-forward hidden width = ff_mult × D inside each attention block
    dropout: float = 0.1  # dropout on attention weights, block outputs and the predictor input
    norm: str = "layer"  # normalisation inside attention blocks: "layer" (default) or "batch" (Sec2Sec Table 2.5)
    token_mode: str = "sequence"  # "sequence": keep a token axis per modality; "pooled": paper-faithful, one token each
    pretrained_path: str | None = None  # local state_dict for the model's ``encoders``; never downloaded
    targets: tuple[str, ...] = ()  # predict only these target columns of the task (see task_spec); () = all of them
    vision_norm: str = "none"  # frames as given in [0, 1] ("none") or standardised per channel ("imagenet", Sec2Sec §2.4)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r} is not a known task; expected one of {sorted(TASKS)}")
        if self.loss is not None and self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not a known loss; expected None or one of {list(LOSSES)}")
        if self.norm not in _NORMS:
            raise ValueError(f"norm={self.norm!r}; expected one of {list(_NORMS)}")
        if self.vision_norm not in _VISION_NORMS:
            raise ValueError(f"vision_norm={self.vision_norm!r}; expected one of {list(_VISION_NORMS)}")
        task_spec(self.task, self.targets or None)  # validates the target subset
        if self.token_mode not in _TOKEN_MODES:
            raise ValueError(f"token_mode={self.token_mode!r}; expected one of {list(_TOKEN_MODES)}")
        if self.dim < 1 or self.heads < 1 or self.dim % self.heads:
            raise ValueError(f"dim={self.dim}, heads={self.heads}: expected positive dim divisible by heads")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}; expected a value in [0, 1)")
        if self.bell_sigma <= 0 or self.bell_scale <= 0:
            raise ValueError(
                f"bell_sigma={self.bell_sigma}, bell_scale={self.bell_scale}; expected both > 0"
            )

    @property
    def spec(self) -> TaskSpec:
        """The task's TaskSpec, narrowed to ``targets`` when they are set."""
        return task_spec(self.task, self.targets or None)

    def geometry_overrides(self, inputs: Sequence[str], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
        """Field values that make a model reading ``inputs`` match arrays of ``shapes`` (without the video axis).

        Only fields this config has are set (:data:`INPUT_GEOMETRY`); e.g. ``audio`` (n_mfcc, F) sets ``n_mfcc`` and
        ``mfcc_frames``. A tile size (``patch_size``, ``audio_chunk``) that does not divide the geometry it tiles
        shrinks to the largest divisor below it.
        """
        fields = {f.name for f in dataclasses.fields(self)}
        out: dict[str, int] = {}
        for key in inputs:
            for name, axis in INPUT_GEOMETRY.get(key, {}).items():
                if name in fields and key in shapes:
                    out[name] = int(shapes[key][axis])
        for tile, tiled in _TILES.items():
            size, current = out.get(tiled), getattr(self, tile, None)
            if tile in fields and size is not None and size % current:
                out[tile] = max(d for d in range(1, size + 1) if size % d == 0 and d <= current)
        return out

    @staticmethod
    def geometry_fields() -> frozenset[str]:
        """Every field :meth:`geometry_overrides` can set from the input arrays' shapes."""
        return frozenset(name for fields in INPUT_GEOMETRY.values() for name in fields)

    @staticmethod
    def unchosen_fields(chosen: Collection[str] = ()) -> frozenset[str]:
        """Fields that do not distinguish one trained configuration from another: the geometry the data fixes, the
        tile sizes fitted to it (unless named in ``chosen``), the task and the local ``pretrained_path``."""
        return ModelConfig.geometry_fields() | _NOT_CHOSEN | (frozenset(_TILES) - set(chosen))


def build_config(cls: type[ModelConfig], overrides: Mapping[str, Any], **variant_defaults: Any) -> ModelConfig:
    """Build ``cls`` from a variant's defaults updated by user overrides.

    An override that is not a field of ``cls`` raises ValueError naming it. Lists (from JSON or a checkpoint) given for
    tuple-valued fields are turned back into tuples, so ``build_config(cls, dataclasses.asdict(cfg))`` round-trips.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown} for {cls.__name__}; expected some of {sorted(fields)}")
    values = {**variant_defaults, **overrides}
    for name, value in values.items():
        if isinstance(value, list) and isinstance(fields[name].default, tuple):
            values[name] = tuple(value)
    return cls(**values)


def check_shape(name: str, x: Tensor, expected: tuple[int | None, ...]) -> None:
    """Raise ValueError unless ``x`` has len(expected) dims matching ``expected`` (None = any size)."""
    ok = x.dim() == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"batch[{name!r}] has shape {tuple(x.shape)}; expected {want}")


def mask_shape(key: str, shape: Sequence[int], given: Sequence[int] | None = None, *,
               where: str = "batch") -> tuple[int, ...]:
    """The shape of ``<key>_mask`` beside a batch array ``key`` of ``shape`` (video axis first): ``given`` (the mask's
    own shape) when it is allowed, else with ``given=None`` the shape of an all-real default mask.

    An array with a sequence axis (frames, segments, embedding tokens) has a flag per item of it (B, N); whole-clip
    ``audio`` (B, n_mfcc, F) a flag per clip (B,) — the default — or one per MFCC frame (B, F); a vector (B, D) one
    per clip (B,).

    Raises:
        ValueError: ``given`` is none of the allowed shapes (named as ``where[key_mask]``).
    """
    b = int(shape[0])
    if key == "audio":
        allowed = [(b,), (b, int(shape[-1]))]
    else:
        allowed = [(b, int(shape[1])) if len(shape) > 2 else (b,)]
    if given is None:
        return allowed[0]
    if tuple(given) not in allowed:
        raise ValueError(f"{where}[{key + '_mask'!r}] has shape {tuple(given)}; expected "
                         f"{allowed[0] if len(allowed) == 1 else f'one of {allowed}'}")
    return tuple(given)


def all_real(mask: Tensor) -> bool:
    """True when ``mask`` is a bool tensor on the CPU and every entry is True, so work that only zeroes or excludes
    padding (a multiply by the mask, a masked fill) can be skipped with the same result. Always False on other
    devices: reading the flag there makes the host wait for the device, which costs more than the work it saves.

    On CPU the check is one reduction over the flags; the work skipped is a pass over (B, N, D) activations (or over
    the input frames) and its backward (BENCHMARKS.md, "Per-step work of the heads").
    """
    return mask.dtype == torch.bool and mask.device.type == "cpu" and bool(mask.all())


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the token axis counting only real tokens; all-masked rows give zeros.

    mean_b = Σ_n m_bn x_bn / max(1, Σ_n m_bn)

    Shapes:
        x (B, N, D), mask (B, N) bool or None → (B, D)
    """
    if mask is None or all_real(mask):
        return x.mean(dim=1)
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


def bell_loss(
    pred: Tensor, target: Tensor, *, sigma: float = 9.0, gamma: float = 300.0, scale: float = 100.0
) -> Tensor:
    """Bell loss (paper 004, eq. 3, after CR-Net): L = mean γ (1 − exp(−(s·y − s·ŷ)² / (2σ²))).

    Paper 004 sets σ = 9, γ = 300 for First-Impressions traits that live in [0, 1]. With σ = 9 on [0, 1] targets the
    exponent never leaves ≈0 and Bell degenerates to 1.85·MSE; σ = 9 only makes sense on a 0–100 scale (CR-Net's), so
    targets and predictions are multiplied by ``scale`` (default 100) first. ``scale=1`` gives the literal formula.

    Shapes:
        pred (B, K), target (B, K) → () scalar
    """
    d = (pred.float() - target.float()) * scale
    return (gamma * (1.0 - torch.exp(-(d**2) / (2.0 * sigma**2)))).mean()


def normalize_images(batch: Mapping[str, Tensor], mean: tuple[float, ...] = IMAGENET_MEAN,
                     std: tuple[float, ...] = IMAGENET_STD) -> dict[str, Tensor]:
    """A copy of ``batch`` whose frames (:data:`IMAGE_KEYS`) are standardised per channel: x' = (x − μ_c) / σ_c.

    Frames whose ``<key>_mask`` is False stay zeros (missing data must not turn into a constant that looks like data).
    ``batch`` itself is not modified.

    Shapes:
        vision (B, T, 3, H, W), vision_seg (B, S, T, 3, H, W), masks (B, T) / (B, S) → the same shapes
    """
    out = dict(batch)
    for key in IMAGE_KEYS:
        x = batch.get(key)
        if x is None:
            continue
        if x.dim() < 4 or x.shape[-3] != len(mean):
            raise ValueError(f"batch[{key!r}] has shape {tuple(x.shape)}; expected (..., 3, H, W) RGB frames")
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        y = (x - m) / s
        mask = batch.get(f"{key}_mask")
        if mask is not None:
            y = y * mask.to(device=x.device, dtype=x.dtype).view(*mask.shape, *([1] * (x.dim() - mask.dim())))
        out[key] = y
    return out


@dataclass
class ModelOutput:
    """What every model returns.

    Shapes:
        pred (B, K) in the task's output space ([0, 1]); loss () when the batch had a ``target``
    """

    pred: Tensor  # (B, K) predictions after the sigmoid
    loss: Tensor | None = None  # scalar task loss, present when ``batch`` carried ``target``
    extras: dict[str, Tensor] = field(default_factory=dict)  # e.g. attention weights for interpretation


class VidModel(nn.Module):
    """Base class of every vidpipe model.

    Subclasses set ``self.inputs`` (the data keys they read) in ``__init__`` and implement ``compute_logits``.
    ``model_name`` is set by ``models.registry.create_model`` so checkpoints can rebuild the model.
    """

    model_name: str = ""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.task = config.task
        self.inputs: tuple[str, ...] = ()

    @property
    def spec(self) -> TaskSpec:
        """The task's TaskSpec (K, default loss, monitored metric), narrowed to the config's ``targets``."""
        return self.config.spec

    @property
    def cfg(self) -> ModelConfig:
        """Alias of ``config`` (pipelines/train.py reads ``model.cfg``)."""
        return self.config

    def config_dict(self) -> dict[str, Any]:
        """The config as a plain dict (what checkpoints store)."""
        return dataclasses.asdict(self.config)

    def compute_logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Model-specific part: logits before the sigmoid and interpretation extras.

        Shapes:
            → logits (B, K)
        """
        raise NotImplementedError

    def mask(self, batch: Mapping[str, Tensor], key: str, shape: tuple[int, ...]) -> Tensor:
        """``batch[key + '_mask']`` as bool, or all-True of ``shape`` when the batch has no mask for ``key``."""
        m = batch.get(f"{key}_mask")
        device = batch[key].device
        if m is None:
            return torch.ones(shape, dtype=torch.bool, device=device)
        if tuple(m.shape) != tuple(shape):
            raise ValueError(f"batch[{key + '_mask'!r}] has shape {tuple(m.shape)}; expected {tuple(shape)}")
        return m.to(device=device, dtype=torch.bool)

    def input_positions(self) -> dict[str, tuple[int, ...]]:
        """Input key → the positions along its first axis after the batch axis (frames, seconds, tokens) that the
        model reads, for inputs it reads only in part; a key not listed is read whole (the default: every key).

        A loader may hand the model only these positions of the key and of its ``<key>_mask``
        (:class:`models.data.PackLoader`'s ``positions``), so frames the model never reads are not converted; a
        model that lists a key accepts that key either whole or already cut to these positions, with the same result.
        """
        return {}

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        """Predict, and compute the loss when ``batch`` has ``target``.

        Shapes:
            batch: see docs/ARCHITECTURE.md; target (B, K) → ModelOutput(pred (B, K), loss ())
        """
        missing = [k for k in self.inputs if k not in batch]
        if missing:
            raise ValueError(
                f"batch is missing input key(s) {missing}; model {type(self).__name__} reads {list(self.inputs)}"
            )
        if self.config.vision_norm == "imagenet":
            batch = normalize_images(batch)
        logits, extras = self.compute_logits(batch)
        assert logits.dim() == 2 and logits.shape[1] == self.spec.k, logits.shape
        pred = torch.sigmoid(logits)
        loss = None
        if "target" in batch:
            target = batch["target"]
            check_shape("target", target, (logits.shape[0], self.spec.k))
            loss = self.loss(pred, target, logits=logits)
        return ModelOutput(pred=pred, loss=loss, extras=extras)

    def loss(self, pred: Tensor, target: Tensor, *, logits: Tensor | None = None) -> Tensor:
        """The configured task loss (computed in float32).

        bce: −mean[y log ŷ + (1−y) log(1−ŷ)] (from logits when given, numerically stable);
        l1: mean|y − ŷ|; mse: mean (y − ŷ)²; bell: see bell_loss;
        mae+mse+bell: L1 + MSE + Bell, all three on targets × bell_scale so the terms are on one scale (paper 004
        trains with this sum because Bell alone has small gradients early on).

        Shapes:
            pred (B, K), target (B, K), logits (B, K) or None → () scalar
        """
        cfg = self.config
        name = cfg.loss or self.spec.loss
        pred, target = pred.float(), target.float()
        if name == "bce":
            if logits is not None:
                return F.binary_cross_entropy_with_logits(logits.float(), target)
            return F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), target)
        if name == "l1":
            return F.l1_loss(pred, target)
        if name == "mse":
            return F.mse_loss(pred, target)
        bell = bell_loss(pred, target, sigma=cfg.bell_sigma, gamma=cfg.bell_gamma, scale=cfg.bell_scale)
        if name == "bell":
            return bell
        assert name == "mae+mse+bell", name
        s = cfg.bell_scale
        return F.l1_loss(pred * s, target * s) + F.mse_loss(pred * s, target * s) + bell

    def configure_optimizer(self, lr: float, weight_decay: float) -> torch.optim.Adam:
        """Adam; weight decay (L2, as in Adam) only on matrices/kernels, never on biases or normalisation weights.

        On CPU and CUDA it is torch's fused Adam: the same update as one kernel per step instead of about a dozen
        operators per parameter tensor, which would be most of a small head's step on CPU (a head on cached
        embeddings: ~3.7 ms unfused vs ~0.8 ms fused for VAN's 70 tensors, ``bench/bench_embed.py``)."""
        if lr <= 0:
            raise ValueError(f"lr={lr}; expected > 0")
        if weight_decay < 0:
            raise ValueError(f"weight_decay={weight_decay}; expected >= 0")
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in [*decay, *no_decay])
        return torch.optim.Adam([g for g in groups if g["params"]], lr=lr, fused=fused or None)


def input_shape(key: str, config: ModelConfig) -> tuple[int, ...]:
    """The shape of one video's ``key`` array (without the video axis) at ``config``'s geometry: the sizes
    :data:`INPUT_GEOMETRY` maps to config fields, the fixed axes of :data:`_FIXED_AXES`, and for frames
    (:data:`IMAGE_KEYS`) a width equal to the height (square frames of ``frame_size``).

    Raises:
        ValueError: ``key`` is not in :data:`INPUT_GEOMETRY`.
    """
    if key not in INPUT_GEOMETRY:
        raise ValueError(f"key={key!r} has no declared geometry; expected one of {sorted(INPUT_GEOMETRY)}")
    sizes = {axis: getattr(config, name) for name, axis in INPUT_GEOMETRY[key].items()}
    sizes.update(_FIXED_AXES.get(key, {}))
    if key in IMAGE_KEYS:
        sizes[len(sizes)] = sizes[len(sizes) - 1]
    assert sorted(sizes) == list(range(len(sizes))), (key, sizes)
    return tuple(sizes[axis] for axis in range(len(sizes)))


def example_batch(model: VidModel, batch_size: int = 3, *, seed: int = 0, target: bool = True) -> dict[str, Tensor]:
    """Random inputs for every key ``model`` reads (all masks True) at its configured geometry, plus a ``target``
    (0/1 for emotion, [0, 1] otherwise) unless ``target=False``: a smoke-test / benchmark batch, not data.

    Shapes:
        vision_seg (B, S, T, 3, H, W) · audio_seg (B, S, 3, n_mfcc, F) · vision (B, T, 3, H, W) ·
        audio (B, n_mfcc, F) · text/graph/meta (B, D) · masks as in docs/ARCHITECTURE.md · target (B, K)
    """
    g = torch.Generator().manual_seed(seed)
    b = batch_size
    batch: dict[str, Tensor] = {}
    for key in model.inputs:
        shape = input_shape(key, model.config)
        # frames and bags of words in [0, 1]; MFCCs and embeddings centred
        draw = torch.randn if key in ("audio", "audio_seg") or key.endswith("_emb") else torch.rand
        x = draw(b, *shape, generator=g)
        # masks as mask_shape allows them; whole-clip audio with a flag per MFCC frame
        flags = mask_shape(key, x.shape, (b, shape[1]) if key == "audio" else None)
        batch[key], batch[f"{key}_mask"] = x, torch.ones(flags, dtype=torch.bool)
    if target:
        y = torch.rand(b, model.spec.k, generator=g)
        batch["target"] = (y > 0.5).float() if model.task == "emotion" else y
    return batch

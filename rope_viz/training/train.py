"""Reproducible training of the bundled models: one recipe for the paper's five position kinds.

The architecture is timm's Eva as used by the naver RoPE-ViT models, scaled down to 64 px
scenes with 8 px patches. Training is seeded, runs on CPU or CUDA, shows a progress bar, and
is safe to interrupt: Ctrl-C saves a resume file and `--resume` continues from it.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from tqdm import tqdm

from rope_viz import models
from rope_viz.scenes import data
from rope_viz.errors import InputError


@dataclass
class TrainConfig:
    """Everything that defines a training run; it is written into the model card."""

    pos: str
    seed: int = 0
    # 400k images: sized for at most 20 minutes on 2 CPU cores (measured ~355 images/s there: 19 min).
    # A 6-epoch trial took 22-29 minutes per model, over that budget.
    train_scenes: int = 80_000
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.3
    label_smoothing: float = 0.1
    max_shift: int = 4  # augmentation: random translation in pixels (no flips: they would swap left/right)
    # Scale augmentation, the procedural form of ImageNet's random-resized crops: each training scene is
    # rendered with its objects at a scale s, log-uniform in [min_scale, max_scale], in a window placed at
    # random around the labelled pair (data.scaled_window). 1.0 / 1.0 turns it off (one object scale).
    # 1.0 to 2.0 are the sizes, in patches, that zoom evaluation presents from the training size up to 2x
    # (64 to 128 px); like ImageNet's random-resized crops, views only magnify. A trial with 0.5 to 2.0
    # left APE near chance (19.6% train top-1 after 5 epochs, seed 0), so objects never shrink below 1x.
    min_scale: float = 1.0
    max_scale: float = 2.0
    resolution: int = data.BASE_RES
    patch_size: int = 8
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 4
    # naver uses LayerScale 1e-5; at this size and budget it only delayed learning in trials, so it is off.
    layer_scale_init: float | None = None
    global_pool: str = "token"  # naver classifies from the CLS token; "avg" pools the patch tokens
    # How the learned absolute position table starts: "random" (timm's truncated normal, std 0.02, as
    # naver) or "sincos" (2D sine-cosine, still trained). In a one-seed trial sincos did not help APE
    # (20% train top-1 after 2 of 4 epochs, against 33% after 2 of 3 with random), so naver's stays.
    ape_init: str = "random"
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.25, 0.25, 0.25)
    extra: dict = field(default_factory=dict)

    @property
    def scale_range(self) -> tuple[float, float] | None:
        """The scale augmentation's range, or None when it is off."""
        return None if self.min_scale == self.max_scale == 1.0 else (self.min_scale, self.max_scale)

    @property
    def name(self) -> str:
        return f"scenes-{self.pos.replace('_', '-')}"

    def architecture(self) -> dict:
        return models.eva_architecture(
            self.pos, img_size=self.resolution, patch_size=self.patch_size, embed_dim=self.embed_dim,
            depth=self.depth, num_heads=self.num_heads, num_classes=len(data.CLASS_NAMES),
            init_values=self.layer_scale_init, global_pool=self.global_pool)


def sincos_position_table(grid: int, dim: int, temperature: float = 10_000.0) -> torch.Tensor:
    """2D sine-cosine position table in Eva's patch order (row-major, y then x). Shape: (grid * grid, dim)

    A quarter of the channels each hold sin(x w), cos(x w), sin(y w), cos(y w) with frequencies
    w = temperature^(-i / (dim / 4)); the low frequencies make x and y almost linearly readable.
    """
    if dim % 4:
        raise InputError(f"A 2D sine-cosine table needs dim divisible by 4, got {dim}.")
    omega = temperature ** (-torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                            indexing="ij")
    x = xs.reshape(-1, 1) * omega  # (grid * grid, dim / 4)
    y = ys.reshape(-1, 1) * omega
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).float()


def build_model(config: TrainConfig) -> torch.nn.Module:
    """The untrained Eva for a config, seeded, with its APE table initialised as the recipe says."""
    if config.ape_init not in ("sincos", "random"):
        raise InputError(f"Unknown ape_init {config.ape_init!r}; valid: sincos, random.")
    torch.manual_seed(config.seed)
    model = models.build_eva(config.architecture())
    if model.pos_embed is not None and config.ape_init == "sincos":
        grid = config.resolution // config.patch_size
        with torch.no_grad():
            model.pos_embed.copy_(sincos_position_table(grid, config.embed_dim)[None])
    return model


def augment(images: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation (edge pixels repeated) and brightness. Shapes: (B, 3, R, R) uint8 -> float in [0, 255]"""
    B, _, R, _ = images.shape
    padded = F.pad(images.float(), [max_shift] * 4, mode="replicate")  # reflect would mirror the dot
    dx, dy = (torch.randint(0, 2 * max_shift + 1, (B,), generator=gen) for _ in range(2))
    rows = dy[:, None] + torch.arange(R)[None]  # (B, R)
    cols = dx[:, None] + torch.arange(R)[None]
    shifted = padded[torch.arange(B)[:, None, None, None], torch.arange(3)[None, :, None, None],
                     rows[:, None, :, None], cols[:, None, None, :]]
    brightness = torch.empty(B, 1, 1, 1).uniform_(0.85, 1.15, generator=gen)
    return (shifted * brightness).clamp(0, 255)


def lr_schedule(optimizer: torch.optim.Optimizer, total: int, warmup: int, base: float) -> CosineLRScheduler:
    """timm's cosine schedule, stepped per update (call step_update(step) before update `step`): linear
    warm-up over `warmup` updates from base / warmup, then cosine decay from `base` to zero at `total`.

    warmup_lr_init = base / warmup makes update 0 the same as the recipe's own schedule before timm
    (base * (step + 1) / warmup); timm's ramp then rises by (base - base / warmup) / warmup per update,
    so it ends (warmup - 1) / warmup**2 of base lower. The cosine part is the same to the last bit.
    """
    return CosineLRScheduler(optimizer, t_initial=max(1, total - warmup), lr_min=0.0, warmup_t=warmup,
                             warmup_lr_init=base / warmup if warmup else 0.0, warmup_prefix=True,
                             t_in_epochs=False)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """The learning rate lr_schedule gives update `step` (for cards, tests and comparisons)."""
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    lr_schedule(probe, total, warmup, base).step_update(step)
    return probe.param_groups[0]["lr"]


def train(config: TrainConfig, out_dir: Path, device: str | None = None, resume: bool = False,
          cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Train one model and write `<out_dir>/<name>.safetensors` (fp16) and its card `.json`."""
    device = device or models.default_device()
    gen = torch.Generator().manual_seed(config.seed)
    seeds = range(data.TRAIN_SEEDS.start, data.TRAIN_SEEDS.start + config.train_scenes)
    images, labels = data.scene_tensors(seeds, config.resolution, cache_dir=cache_dir, scale_range=config.scale_range)

    model = build_model(config).to(device)
    # AdamW (betas 0.9, 0.999); no weight decay on 1-D parameters (biases, norms) nor on what Eva's
    # no_weight_decay() names (cls_token, pos_embed, rope.freqs of RoPE-Mixed): timm groups them.
    optimizer = create_optimizer_v2(model, "adamw", lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(labels) // config.batch_size
    total, warmup = steps_per_epoch * config.epochs, int(steps_per_epoch * config.warmup_epochs)
    schedule = lr_schedule(optimizer, total, warmup, config.lr)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_path = out_dir / f"{config.name}.resume.pt"
    start_epoch, elapsed = 0, 0.0
    if resume and resume_path.exists():
        state = torch.load(resume_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        start_epoch, elapsed = int(state["epoch"]), float(state["elapsed"])

    history = []
    started = time.perf_counter() - elapsed
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, config.epochs):
            model.train()
            order = torch.randperm(len(labels), generator=gen)
            bar = tqdm(range(steps_per_epoch), desc=f"{config.name} epoch {epoch + 1}/{config.epochs}",
                       disable=not progress, leave=False)
            seen, correct, loss_sum = 0, 0, 0.0
            for i in bar:
                step = epoch * steps_per_epoch + i
                schedule.step_update(step)
                idx = order[i * config.batch_size:(i + 1) * config.batch_size]
                x = data.normalise(augment(images[idx], config.max_shift, gen), config.mean, config.std)
                x, y = x.to(device), labels[idx].to(device)
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                seen += len(y)
                correct += (logits.argmax(-1) == y).sum().item()
                loss_sum += loss.item() * len(y)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%")
            history.append({"epoch": epoch + 1, "loss": round(loss_sum / seen, 4),
                            "train_top1": round(100 * correct / seen, 2)})
            if progress:
                print(f"{config.name} epoch {epoch + 1}: loss {loss_sum / seen:.3f}, "
                      f"train top-1 {100 * correct / seen:.1f}%, {time.perf_counter() - started:.0f} s", flush=True)
    except KeyboardInterrupt:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
                    "epoch": epoch, "elapsed": time.perf_counter() - started}, resume_path)
        print(f"\ninterrupted: progress saved to {resume_path}; continue with --resume")
        raise
    seconds = time.perf_counter() - started
    model.eval()
    weights = out_dir / f"{config.name}.safetensors"
    save_file({k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}, str(weights))
    card = {
        "name": config.name,
        "label": f"{models.pos_label(config.pos)} (bundled, scenes)",
        "pos": config.pos,
        "train_res": config.resolution,
        "architecture": config.architecture(),
        "class_names": data.CLASS_NAMES,
        "mean": list(config.mean),
        "std": list(config.std),
        "recipe": {k: v for k, v in asdict(config).items() if k not in ("mean", "std", "extra")},
        "data": {"generator": "rope_viz.data.render_scene", "train_seeds": [seeds.start, seeds.stop],
                 "label": "CLASS_NAMES[label]: the shape of the one filled object and the side (left/right) "
                          "of the small dot beside it; outlines and lines are distractors"},
        "training": {"seconds": round(seconds, 1), "device": models.device_description(device),
                     "torch": torch.__version__, "machine": platform.machine(), "history": history},
        "command": f"python -m rope_viz train --pos {config.pos} --seed {config.seed}",
    }
    weights.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    resume_path.unlink(missing_ok=True)
    return weights

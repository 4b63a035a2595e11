"""Why the bundled models fail on a 2x canvas: scene variants and measurements that separate the causes.

A canvas view at R px shows the 64 px training frame in its centre, objects at their trained size,
and (R / 64)^2 times as many patches. Each variant below changes one thing about that view, so the
accuracy it recovers measures one candidate cause:
- "canvas": the held-out canvas scene itself (data.render_scene, mode "canvas");
- "no_outer_distractors": distractors outside the central frame removed (the wider view's clutter);
- "empty_surround": outside the frame only the flat background colour and noise (no texture, no
  distractors): more tokens, nothing new in them;
- "pair_top_left" / "pair_bottom_right": the view moved so that the frame sits in a corner of the
  canvas, so the labelled pair is at the patch positions seen in training (top left: 0..7) or at
  positions never seen (bottom right: 8..15 at 128 px).
An inference-time logit scale (log N / log N_train on q, the log-N scaling of long-context LLMs)
tests attention dilution; cls_attention_entropy gives the dilution itself. shifted_positions subtracts a
constant from every patch position: patch-to-patch attention is unchanged (it depends on p_a - p_b
only), so any change comes from the one unrotated token, CLS: its logits with a patch,
q_cls . R(p) k_p and (R(p) q_p) . k_cls, depend on the patch's absolute position p.
"""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import torch

from rope_viz import adapters
from rope_viz.measure import capture, positions, sweep
from rope_viz.scenes import data

VARIANTS = ("canvas", "no_outer_distractors", "empty_surround", "pair_top_left", "pair_bottom_right")


def _inside_frame(item) -> bool:
    """Whether a distractor's centre lies in the 64 x 64 training frame."""
    if item[0] == "outline":
        x, y = item[2]
    else:
        x, y = (item[1][0] + item[2][0]) / 2, (item[1][1] + item[2][1]) / 2
    return 0 <= x <= data.BASE_RES and 0 <= y <= data.BASE_RES


def render_variant(seed: int, resolution: int, variant: str) -> tuple[np.ndarray, int]:
    """One held-out scene as a canvas view with one thing changed (see VARIANTS).

    Shapes: -> (R, R, 3) uint8, label
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown canvas variant {variant!r}; valid: {', '.join(VARIANTS)}.")
    scene = data.make_scene(seed)
    if variant == "canvas":
        pixels = data.render(scene, resolution, "canvas")
    elif variant == "no_outer_distractors":
        kept = tuple(d for d in scene.distractors if _inside_frame(d))
        pixels = data.render(dataclasses.replace(scene, distractors=kept), resolution, "canvas")
    elif variant == "empty_surround":
        x0, y0, _ = data.scene_window(scene, resolution, "canvas")
        pixels = data.render(dataclasses.replace(scene, gratings=((0.0, 0.0, 0.0, 0.0),), distractors=()), resolution, "canvas")
        full = data.render(scene, resolution, "canvas")
        i0, j0 = int(round(-x0)), int(round(-y0))  # the frame's top-left pixel in the view
        i1, j1 = max(i0, 0), max(j0, 0)
        pixels[j1:j0 + data.BASE_RES, i1:i0 + data.BASE_RES] = full[j1:j0 + data.BASE_RES, i1:i0 + data.BASE_RES]
    else:
        # The frame in a corner: its pixels sit at the same patch positions as in training (top left)
        # or shifted by resolution - 64 px (bottom right).
        offset = 0.0 if variant == "pair_top_left" else float(data.BASE_RES - resolution)
        pixels = data.render(scene, resolution, window=(offset, offset, float(resolution)))
    return (pixels * 255).round().astype(np.uint8), scene.label


def variant_tensors(seeds, resolution: int, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of one variant. Shapes: -> images (B, 3, R, R) uint8, labels (B,) int64"""
    images, labels = zip(*(render_variant(int(s), resolution, variant) for s in seeds))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)


@contextlib.contextmanager
def shifted_positions(module: torch.nn.Module, offset: tuple[float, float], grid: tuple[int, int]):
    """Within the context, the calling thread's forwards of a RoPE model at `grid` rotate patch p at
    p - offset (patches, (x, y)) with the model's own frequencies, through its adapter's override
    (the one way positions change; the shared model is untouched).
    """
    if not adapters.adapter_of(module).has_rope:
        raise ValueError("Only RoPE models have positions to shift; this model has none.")
    freqs = adapters.model_freqs(module, grid)  # (L, H, D/2, 2) as the model computes them on this grid
    with adapters.override_freqs(module, freqs, grid, shift=(-offset[0], -offset[1])):
        yield module


def log_n_scale(module: torch.nn.Module, grid: tuple[int, int], train_grid: tuple[int, int]) -> float:
    """The log-N logit scale of rope_viz.positions (log N / log N_train, every token a query attends to)."""
    return positions.method_for_model(module, "log_n", grid, train_grid).logit_scale


def cls_attention_entropy(loaded, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Entropy (nats) of the CLS query's attention over all tokens, per layer, mean over heads and images.

    Shapes: images (B, 3, R, R) uint8 -> (L,)
    """
    out = []
    for start in range(0, len(images), batch_size):
        qk = capture.capture_qk(loaded, loaded.normalise(images[start:start + batch_size]))
        rows = capture.attention_rows(qk, 0)  # (b, L, H, N): the CLS query
        out.append(-(rows * rows.clamp_min(1e-30).log()).sum(-1).mean(-1))  # (b, L)
    return torch.cat(out).mean(0)


def pooled_features(module: torch.nn.Module, images: torch.Tensor, mean, std, batch_size: int = 128):
    """The final-norm CLS token and the mean of the final-norm patch tokens (what "token" and "avg"
    pooling would classify). Shapes: images (B, 3, R, R) uint8 -> cls (B, C), avg (B, C)"""
    cls, avg = [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            tokens = module.forward_features(data.normalise(images[start:start + batch_size], mean, std))  # (b, N, C)
            cls.append(tokens[:, 0])
            avg.append(tokens[:, module.num_prefix_tokens:].mean(1))
    return torch.cat(cls), torch.cat(avg)


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, classes: int, steps: int = 200,
                     weight_decay: float = 1e-3) -> torch.nn.Linear:
    """A softmax classifier on frozen features (standardised inside), fitted with L-BFGS; seeded, deterministic.

    Shapes: features (B, C), labels (B,)
    """
    mean, std = features.mean(0), features.std(0) + 1e-6
    probe = torch.nn.Linear(features.shape[1], classes)
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    x = (features - mean) / std
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x), labels) + weight_decay * probe.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():  # fold the standardisation into the layer
        probe.weight.div_(std)
        probe.bias.sub_(probe.weight @ mean)
    return probe


CONDITIONS = {  # label shown in the figure -> how the canvas is changed
    "canvas": "the canvas view as evaluated",
    "no_outer_distractors": "distractors outside the frame removed",
    "empty_surround": "only flat background outside the frame",
    "log_n": "log-N logit scale on q",
    "pair_top_left": "frame at the trained patch positions (top-left corner)",
    "pair_bottom_right": "frame at unseen patch positions (bottom-right corner)",
    "shifted_positions": "RoPE positions shifted so the frame has its trained positions",
    "shifted_log_n": "RoPE positions shifted and the log-N logit scale together",
}


def collapse_rows(loaded_models, resolution: int = 128, limit: int = 200, progress=None) -> list[dict]:
    """Top-1 (percent) of each model on the first `limit` held-out canvas scenes under every CONDITION.

    shifted_positions and shifted_log_n exist only for RoPE models. Returns rows {model, condition, top1, n}.
    """
    seeds = range(data.EVAL_SEEDS.start, data.EVAL_SEEDS.start + limit)
    scenes = {v: variant_tensors(seeds, resolution, v) for v in VARIANTS}
    rows = []
    for i, loaded in enumerate(loaded_models):
        spec, module = loaded.spec, loaded.module

        def top1(mod, variant):
            hits, _, n = sweep.count_correct(mod, *scenes[variant], spec.mean, spec.std, loaded.device)
            return round(100 * hits / n, 1)

        results = {v: top1(module, v) for v in VARIANTS}
        grid, train = (resolution // spec.patch_size,) * 2, (spec.train_res // spec.patch_size,) * 2
        with positions.apply_method(module, "log_n", grid, train):
            results["log_n"] = top1(module, "canvas")
        if adapters.adapter_of(module).has_rope:
            offset = ((resolution - spec.train_res) / 2 / spec.patch_size,) * 2
            with shifted_positions(module, offset, grid):
                results["shifted_positions"] = top1(module, "canvas")
                # The two causes together: after scale augmentation neither alone brings RoPE models back.
                with positions.scale_logits(module, log_n_scale(module, grid, train)):
                    results["shifted_log_n"] = top1(module, "canvas")
        rows += [{"model": spec.name, "condition": c, "top1": results[c], "n": limit} for c in CONDITIONS if c in results]
        if progress is not None:
            progress(i + 1, len(loaded_models))
    return rows

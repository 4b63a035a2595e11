"""Resolution sweeps: how accuracy (and attention statistics) change as the input grows.

One sweep cell is (model, resolution, dataset, position handling) -> top-1/top-5 over an eval set.
Cells are independent, so a sweep can be cancelled and resumed, and finished cells are reused.

Eval sets and their resize policy live in rope_viz.measure.evalsets (re-exported here).

Position handling beyond the training grid: any method of rope_viz.positions (native, the model's own
and the default; extrapolate, the paper's; interpolate, ntk, yarn, log_n, normalised), applied through
the model's adapter inside the forward (rope_viz.positions.apply_method), never by changing the shared
model. The legacy `position` argument ("native" | "extrapolate" | "interpolate") names the same methods. APE tables
are resampled bicubically to the new grid under every method: the paper's way (no antialias) for
naver and APE-only models, timm's antialiased way otherwise (rope_viz.models.ape; the CSV's ape_resample);
on APE-only models only a method's logit scale applies.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, MutableMapping

import torch

from rope_viz import models
from rope_viz.errors import InputError
from rope_viz.measure import capture, positions, tables
from rope_viz.measure.distributed import SINGLE, Shard, max_over_processes, sum_counts
from rope_viz.measure.evalsets import (IMAGE_SUFFIXES, RESIZE_POLICY, EvalSet, SweepError,  # noqa: F401
                                       eval_images, folder_class_index, folder_samples, load_folder_batch,
                                       parse_dataset)
from rope_viz.models import ape
from rope_viz.runtime import memory
from rope_viz.runtime.locking import key_lock
from rope_viz.scenes import data

POSITION_MODES = ("native", "extrapolate", "interpolate")


# ---------------------------------------------------------------- memory

def memory_description(device: str) -> str:
    """'12.3 GiB free' or, where the machine does not say, 'free memory unknown'."""
    free = memory.available_memory(device)
    return "free memory unknown" if free is None else f"{memory.format_bytes(free)} free"


def estimate_forward_bytes(module: torch.nn.Module, batch: int, resolution: int, patch_size: int) -> int:
    """A rough upper bound on inference memory for one batch: the residual stream and the MLP's
    hidden layer (4x) at fp32, plus one layer's attention scores where SDPA falls back to them."""
    s = capture.sizes_of(module, resolution, resolution, patch_size)
    return memory.forward_bytes(batch, s.tokens, s.width) + memory.scores_bytes(batch, s.heads, s.tokens, s.tokens)


def check_memory(module, batch: int, resolution: int, patch_size: int, device: str, extra: int = 0) -> None:
    """Raise SweepError, with the estimate, when a batch at `resolution` will not fit.

    When free memory is unknown nothing can be compared: the batch runs, and a real shortage
    surfaces as the error it is.
    """
    need = estimate_forward_bytes(module, batch, resolution, patch_size) + extra
    free = memory.available_memory(device)
    if free is not None and need > 0.8 * free:  # unknown free memory: nothing invented, the run goes ahead
        raise SweepError(f"{resolution} px needs about {memory.format_bytes(need)} for a batch of {batch}, "
                         f"but only {memory.format_bytes(free)} is free on {device}; lower the resolution or batch.")


# ---------------------------------------------------------------- evaluation

def count_correct(module: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mean, std,
                  device: str, batch_size: int = 128) -> tuple[int, int, int]:
    """(top-1 hits, top-5 hits, n) of a module on uint8 images. Shapes: images (N, 3, R, R) uint8"""
    top1 = top5 = 0
    cuda = str(device).startswith("cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        for start in range(0, len(labels), batch_size):
            x = data.normalise(images[start:start + batch_size].to(device, non_blocking=True), mean, std)
            y = labels[start:start + batch_size].to(device)
            logits = module(x)
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices  # (B, 5)
            top1 += (top[:, 0] == y).sum().item()
            top5 += (top == y[:, None]).any(-1).sum().item()
    return top1, top5, len(labels)



def evaluate_cell(loaded: models.LoadedModel, resolution: int, dataset: str = "shapes", limit: int = 2000,
                  position: str = positions.DEFAULT_METHOD, batch_size: int = 128, module=None, shard: Shard = SINGLE,
                  method: str | None = None) -> dict:
    """One sweep cell: top-1/top-5 (percent) of a model at one resolution.

    With a `shard` of several processes each evaluates its block and the counts are summed over all
    (every process must call this for the same cells in the same order); every process gets the totals.
    `method` (default: `position`) is a rope_viz.positions method, applied to `module` (default: the
    loaded model) for this cell's forwards only.
    Returns {model, resolution, mode, position, ape_resample, top1, top5, n, correct1, correct5, seconds,
    method}; position and method both hold the method's name (ape_resample: "paper", "timm", or "" for
    models without an APE table; see rope_viz.models.ape).
    """
    evalset = parse_dataset(dataset)
    models.needs_classifier(loaded.spec, "an accuracy sweep")
    method = method or check_position(position)
    positions.split_method(method)
    models.check_resolution(resolution, loaded.spec.patch_size)
    module = module if module is not None else loaded.module
    check_memory(module, batch_size, resolution, loaded.spec.patch_size, loaded.device)
    started = time.perf_counter()
    images, labels = eval_images(evalset, loaded.spec, resolution, limit, shard)
    grid = resolution // loaded.spec.patch_size
    train = loaded.spec.train_res // loaded.spec.patch_size
    with memory.out_of_memory_as_error(f"Evaluating {loaded.spec.name} at {resolution} px"), \
            positions.apply_method(module, method, (grid, grid), (train, train)):
        counts = count_correct(module, images, labels, loaded.spec.mean, loaded.spec.std, loaded.device, batch_size)
    hits1, hits5, n = sum_counts(counts, shard, loaded.device)
    seconds = max_over_processes(time.perf_counter() - started, shard, loaded.device)
    return {"model": loaded.spec.name, "resolution": resolution, "mode": evalset.mode, "position": method,
            "ape_resample": ape.ape_resampling_of(module), "top1": round(100 * hits1 / n, 2),
            "top5": round(100 * hits5 / n, 2), "n": n, "correct1": hits1, "correct5": hits5,
            "seconds": round(seconds, 2), "method": method}


def check_position(position: str) -> str:
    """The legacy position names are methods too; SweepError naming them otherwise."""
    if position not in POSITION_MODES:
        raise SweepError(f"Unknown position handling {position!r}; valid: {', '.join(POSITION_MODES)}.")
    return position


def snap_resolution(resolution: int, patch_size: int) -> int:
    """The nearest positive multiple of the patch size (how the sweep treats other sizes).

    Zero and negative sizes are refused (InputError), not snapped up to one patch.
    """
    if resolution < 1:
        raise InputError(f"Resolution {resolution} px is not a positive size.")
    return max(patch_size, int(round(resolution / patch_size)) * patch_size)


COUNT_NAMES = {"limit": "The number of images per cell (limit)", "batch_size": "The batch size"}


def check_request(model_names, resolutions, dataset: str, limit: int, batch_size: int = 1) -> EvalSet:
    """Refuse a sweep that cannot run before anything loads: unknown models, an unknown data set,
    zero or negative sizes, counts below 1, no models or no resolutions. Raises a RopeVizError."""
    if not model_names or not resolutions:
        raise InputError("A sweep needs at least one model and one resolution.")
    for name in model_names:
        models.get_spec(name)  # ModelLoadError naming the valid names
    for requested in resolutions:
        snap_resolution(int(requested), 1)
    for name, value in (("limit", limit), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{COUNT_NAMES[name]} must be a whole number of at least 1, got {value}.")
    return parse_dataset(dataset)


def cell_key(model: str, resolution: int, dataset: str, limit: int, position: str) -> tuple:
    return (model, resolution, dataset, limit, position)


def accuracy_sweep(model_names, resolutions, dataset: str = "shapes", limit: int = 2000, device: str | None = None,
                   position: str = positions.DEFAULT_METHOD, batch_size: int = 128,
                   progress: Callable[[int, int, dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None,
                   cache: MutableMapping | None = None, load=models.load_model, shard: Shard = SINGLE,
                   methods=None) -> list[dict]:
    """Top-1 and top-5 (percent) for every model x method x resolution, in that order.

    `methods`: rope_viz.positions method names (default: [position]); every method sees the same
    held-out images. Resolutions that are not multiples of a model's patch size are snapped to the
    nearest one (the row's "requested" says what was asked). Finished cells are stored in `cache` and
    reused; when `should_stop()` turns true the cells finished so far are returned.
    `shard`: this process's place in a torchrun sweep (see rope_viz.distributed); every process gets
    the same rows, computed from all processes' counts.
    Returns rows with keys model, resolution, mode, position (= method), top1, top5, n, method (and counts, seconds).
    """
    device = device or models.default_device()
    check_request(model_names, resolutions, dataset, limit, batch_size)  # fail before loading anything
    methods = list(methods) if methods else [check_position(position)]
    for method in methods:
        positions.split_method(method)
    cells = [(name, m, r) for name in model_names for m in methods for r in resolutions]
    rows, done, loaded = [], 0, {}
    for name, method, requested in cells:
        if should_stop is not None and should_stop():
            return rows
        patch = models.get_spec(name).patch_size if name not in loaded else loaded[name].spec.patch_size
        resolution = snap_resolution(int(requested), patch)
        key = cell_key(name, resolution, dataset, limit, method)
        # Sessions sharing a cache compute a cell once: the others wait for it and read it.
        with key_lock(("sweep cell", id(cache), key)) if cache is not None else contextlib.nullcontext():
            row = cache.get(key) if cache is not None else None
            if row is None:
                if name not in loaded:  # one build per model, reused at every resolution (dynamic size)
                    loaded = {name: load(name, device=device)}
                row = evaluate_cell(loaded[name], resolution, dataset, limit, batch_size=batch_size, shard=shard,
                                    method=method)
                if cache is not None:
                    cache[key] = row
        row = {**row, "requested": int(requested)}
        rows.append(row)
        done += 1
        if progress is not None:
            progress(done, len(cells), row)
    return rows


def train_resolution_change(rows: list[dict], train_res: dict[str, int]) -> list[dict]:
    """Each row's top-1 minus the same model's top-1 at its training resolution (None if not swept)."""
    base = {(r["model"], r["mode"], r["position"]): r["top1"] for r in rows if r["resolution"] == train_res.get(r["model"])}
    out = []
    for r in rows:
        ref = base.get((r["model"], r["mode"], r["position"]))
        out.append({**r, "delta_top1": None if ref is None else round(r["top1"] - ref, 2)})
    return out


def sweep_seconds_left(started: float, done: int, total: int) -> float:
    """Linear estimate of the time left after `done` of `total` cells."""
    if done == 0:
        return math.nan
    return (time.perf_counter() - started) / done * (total - done)



def attention_sweep(model_names, resolutions, dataset: str = "shapes", limit: int = 8, device: str | None = None,
                    progress: Callable[[int, int, dict], None] | None = None,
                    should_stop: Callable[[], bool] | None = None, load=models.load_model) -> list[dict]:
    """Mean attention distance (patches) and entropy (nats) per layer, averaged over heads and `limit` images.

    The model's own positions (native). Returns one row per model x resolution x
    layer: {model, resolution, mode, layer, distance, entropy, n}.
    """
    device = device or models.default_device()
    evalset = check_request(model_names, resolutions, dataset, limit)
    rows, done, total = [], 0, len(model_names) * len(resolutions)
    for name in model_names:
        loaded = load(name, device=device)
        for requested in resolutions:
            if should_stop is not None and should_stop():
                return rows
            resolution = snap_resolution(int(requested), loaded.spec.step)  # towers: patch x merge
            images, _ = eval_images(evalset, loaded.spec, resolution, limit, labelled=False)
            x = loaded.normalise(images)
            distance, entropy = [], []
            with memory.out_of_memory_as_error(f"Capturing attention of {name} at {resolution} px"):
                for start in range(0, len(x), 8):  # a few images per capture keeps q and k small
                    qk = capture.capture_qk(loaded, x[start:start + 8])
                    distance.append(capture.mean_attention_distance(qk).mean(-1))  # (b, L): mean over heads
                    entropy.append(capture.attention_entropy(qk).mean(-1))
            distance, entropy = torch.cat(distance).mean(0), torch.cat(entropy).mean(0)  # (L,)
            for layer in range(len(distance)):
                rows.append({"model": name, "resolution": resolution, "mode": evalset.mode, "layer": layer,
                             "distance": round(float(distance[layer]), 4), "entropy": round(float(entropy[layer]), 4),
                             "n": len(x)})
            done += 1
            if progress is not None:
                progress(done, total, rows[-1])
    return rows


CSV_COLUMNS = ("model", "resolution", "requested", "mode", "position", "ape_resample", "top1", "top5", "n",
               "correct1", "correct5", "seconds", "method")


def rows_to_csv(rows: list[dict]) -> str:
    """Sweep rows as CSV text with CSV_COLUMNS (the CLI and the page write the same file)."""
    return tables.to_csv(rows, CSV_COLUMNS)

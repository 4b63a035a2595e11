"""Benchmark: capture.capture_qk on a Hugging Face tower against the tower's own forward (random weights).

The tower: Qwen2.5-VL's vision width (hidden 1280, 16 heads, intermediate 3420, patch 14, 2 x 2 merge,
112 px windows) cut to 4 blocks, block 3 full attention, the others windowed; 448 x 448 px = 1024 patches,
16 windows of 64.
Targets, printed as ratios measured side by side in one run:
  (a) capture time <= 1.3x the tower's own forward with sdpa (medians of interleaved runs);
  (b) peak memory of a capture against eager attention that keeps its weights. transformers 5.23.0's Qwen
      towers return block outputs, not weights, as `attentions` even in eager mode (measured and printed
      here too), so the reference is eager attention with its weights recorded by wrapping the modeling
      file's eager_attention_forward (what it returns: per window in windowed layers), and those weights
      assembled into every layer's N x N in raster order (what a full map of each layer needs).
Peak memory: CUDA max_memory_allocated, or on CPU the process's peak RSS above the RSS just before the call
(bench/rss.py), each method in a fresh subprocess with glibc's mmap threshold fixed at 64 KiB (its default
rises after frees and then keeps freed blocks resident, which added 40-70 MiB of noise to these peaks).
Usage: python bench/tower_capture.py [--device cuda] [--size 448] [--repeats 7]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import transformers
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig

from rope_viz import capture
from rope_viz.adapters.towers import qwen2_5_vl
from rss import reset_peak_rss, status_bytes

ADAPTER = qwen2_5_vl.ADAPTER
CONFIG = dict(hidden_size=1280, num_heads=16, intermediate_size=3420, depth=4, fullatt_block_indexes=[3],
              window_size=112, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
MMAP_THRESHOLD = 64 * 1024  # glibc: blocks above this are mmap'd and go back on free, so RSS follows live tensors
MEMORY_METHODS = ("forward", "capture", "output_attentions", "eager_weights", "eager_maps")


def build(device: str, attention: str = "sdpa"):
    """The tower with rope-viz's face, seeded random weights, `attention` as its implementation."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        tower = ADAPTER.wrap(ADAPTER.build(Qwen2_5_VLVisionConfig(**CONFIG))).to(device)
    tower.hf.config._attn_implementation_internal = attention
    return tower


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def speed(size: int, device: str, repeats: int) -> dict:
    """Median seconds of the tower's forward and of a capture, run in turn (one of each per round) after a
    warm-up, so both see the same load."""
    tower = build(device)
    hf = tower.hf
    x = torch.randn(1, 3, size, size, device=device, generator=torch.Generator().manual_seed(0))
    runs = {"forward": lambda: hf(**ADAPTER.inputs(hf, x)), "capture": lambda: capture.capture_qk(tower, x)}
    times = {name: [] for name in runs}
    with torch.inference_mode():
        for fn in runs.values():
            fn()
        for _ in range(repeats):
            for name, fn in runs.items():
                sync(device)
                start = time.perf_counter()
                fn()
                sync(device)
                times[name].append(time.perf_counter() - start)
    qk = capture.capture_qk(tower, x)
    windows = [int(s.max()) + 1 for s in qk.segments] if qk.segments is not None else [1] * qk.num_layers
    return {"tokens": qk.num_tokens, "windows": windows, **{k: statistics.median(v) for k, v in times.items()},
            "spread": {k: (min(v), max(v)) for k, v in times.items()}}


def eager_weights(tower, x) -> list[list[torch.Tensor]]:
    """The weights transformers' eager attention computes per layer, as it returns them (one (1, H, n, n) per
    call: per window in windowed layers), recorded by wrapping the modeling file's eager_attention_forward."""
    attentions = ADAPTER.attentions(tower.hf)
    kept, own = [[] for _ in attentions], modeling_qwen2_5_vl.eager_attention_forward
    layer_of = {id(a): i for i, a in enumerate(attentions)}

    def wrapped(module, *args, **kwargs):
        out, weights = own(module, *args, **kwargs)
        kept[layer_of[id(module)]].append(weights.detach())
        return out, weights

    modeling_qwen2_5_vl.eager_attention_forward = wrapped
    try:
        tower.hf(**ADAPTER.inputs(tower.hf, x))
    finally:
        modeling_qwen2_5_vl.eager_attention_forward = own
    return kept


def eager_maps(tower, x) -> list[torch.Tensor]:
    """Eager weights assembled into every layer's (H, N, N) in raster order, zero outside a window (as
    tests/tower_checks.eager_maps builds the reference maps). Shapes: -> L x (H, N, N)"""
    grid = (x.shape[-2] // ADAPTER.patch(tower.hf), x.shape[-1] // ADAPTER.patch(tower.hf))
    order = ADAPTER.token_order(tower.hf, grid).to(x.device)  # internal token -> raster index
    maps = []
    for calls in eager_weights(tower, x):
        N = sum(c.shape[-1] for c in calls)
        full = torch.zeros(calls[0].shape[1], N, N, device=x.device)  # (H, N, N) internal order
        start = 0
        for c in calls:
            n = c.shape[-1]
            full[:, start:start + n, start:start + n] = c[0]
            start += n
        out = torch.zeros_like(full)
        out[:, order[:, None], order[None, :]] = full  # raster order
        maps.append(out)
    return maps


def peak_memory_child(method: str, size: int, device: str) -> None:
    """Run in a subprocess: print the peak memory one method adds on top of the built tower."""
    tower = build(device, "sdpa" if method in ("forward", "capture") else "eager")
    x = torch.randn(1, 3, size, size, device=device, generator=torch.Generator().manual_seed(0))
    run = {"forward": lambda: tower.hf(**ADAPTER.inputs(tower.hf, x)),
           "capture": lambda: capture.capture_qk(tower, x),
           "output_attentions": lambda: tower.hf(**ADAPTER.inputs(tower.hf, x), output_attentions=True),
           "eager_weights": lambda: eager_weights(tower, x),
           "eager_maps": lambda: eager_maps(tower, x)}[method]
    if device.startswith("cuda"):
        sync(device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = reset_peak_rss()
    with torch.inference_mode():
        out = run()
    if device.startswith("cuda"):
        sync(device)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = status_bytes("VmHWM") - base
    kept = sum(t.numel() * t.element_size() for t in _tensors(out))
    print(json.dumps({"method": method, "peak_bytes": peak, "kept_bytes": kept}))


def _tensors(out):
    """Every tensor a method returns (a QK, a model output, a list of weights)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    if hasattr(out, "__dataclass_fields__"):
        return [t for name in out.__dataclass_fields__ for t in _tensors(getattr(out, name))]
    return []


def peak_memory(method: str, size: int, device: str) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--size", str(size), "--device", device]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_memory_child(args.child, args.size, args.device)
        return
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"Qwen2.5-VL-width tower ({', '.join(f'{k} {v}' for k, v in CONFIG.items())}; random weights), "
          f"{args.size} x {args.size} px, {device_name}, torch {torch.__version__}, transformers {transformers.__version__}")
    r = speed(args.size, args.device, args.repeats)
    a = r["capture"] / r["forward"]
    print(f"{r['tokens']} tokens, windows per layer {r['windows']}; medians of {args.repeats} interleaved runs "
          f"(min-max): forward (sdpa) {r['forward']:.3f} s ({r['spread']['forward'][0]:.3f}-"
          f"{r['spread']['forward'][1]:.3f}), capture {r['capture']:.3f} s ({r['spread']['capture'][0]:.3f}-"
          f"{r['spread']['capture'][1]:.3f})")
    fastest = r["spread"]["capture"][0] / r["spread"]["forward"][0]
    print(f"(a) capture / forward {a:.2f}x {'PASS' if a <= 1.3 else 'FAIL'} (target <= 1.3x; fastest / fastest "
          f"{fastest:.2f}x; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    mem = {m: peak_memory(m, args.size, args.device) for m in MEMORY_METHODS}
    labels = {"forward": "forward (sdpa)", "capture": "capture_qk",
              "output_attentions": "eager, output_attentions=True (block outputs, not weights)",
              "eager_weights": "eager weights kept (per window, as eager returns them)",
              "eager_maps": "eager weights as every layer's N x N (raster order)"}
    print("peak memory above the built tower (kept: bytes of what the call returns)")
    for m in MEMORY_METHODS:
        print(f"  {labels[m]:<60} peak {mem[m]['peak_bytes'] / 2**20:>8.1f} MiB   kept {mem[m]['kept_bytes'] / 2**20:>7.1f} MiB")
    for ref in ("eager_weights", "eager_maps"):
        b = mem["capture"]["peak_bytes"] / mem[ref]["peak_bytes"]
        print(f"(b) capture / {labels[ref]}: {b:.2f}")


if __name__ == "__main__":
    main()

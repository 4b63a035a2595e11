"""Benchmark: capture.py against timm.utils.AttentionExtract on ViT-B/16 RoPE-Mixed (random weights).

Targets, each printed as a ratio measured side by side in one run:
  (a) a new query row after the first capture >= 50x faster than recomputing with AttentionExtract;
  (b) capture time <= 1.3x a plain fused forward;
  (c) peak memory at the largest size <= 25% of AttentionExtract's.
Peak memory: CUDA max_memory_allocated, or on CPU the process's peak RSS above the RSS just before the
call, with the kernel's peak reset right before it (/proc/self/clear_refs), so the model build's own
higher peak cannot hide it; each method in a fresh subprocess.
Usage: python bench/attention.py [--device cuda] [--sizes 224 448 896] [--repeats 3]
       python bench/attention.py --large 1024   # capture + map + rollout + statistics at 1024 px: peak memory
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time

import timm
import torch
from timm.utils import AttentionExtract

from rope_viz import capture
from rss import reset_peak_rss, status_bytes
from timing import best_of

MODEL = "vit_base_patch16_rope_mixed_224"


def build(device: str, fused: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(MODEL, pretrained=False, dynamic_img_size=True).eval().requires_grad_(False)
    if not fused:  # AttentionExtract reads attn_drop's input, which only the non-fused path produces
        model = copy.deepcopy(model)
        for block in model.blocks:
            block.attn.fused_attn = False
    return model.to(device)


def speed(size: int, device: str, repeats: int) -> dict:
    fused, plain = build(device), build(device, fused=False)
    extract = AttentionExtract(plain, method="hook", names=["*attn_drop"])
    x = torch.randn(1, 3, size, size, device=device)
    with torch.inference_mode():
        t_forward = best_of(lambda: fused(x), repeats, device)
        t_capture = best_of(lambda: capture.capture_qk(fused, x), repeats, device)
        t_extract = best_of(lambda: extract(x), max(1, repeats - 1), device)
        qk = capture.capture_qk(fused, x)
        query = qk.num_tokens // 2
        t_row = best_of(lambda: capture.attention_rows(qk, query), 20, device)
    return {"size": size, "tokens": qk.num_tokens, "forward_s": t_forward, "capture_s": t_capture,
            "extract_s": t_extract, "new_query_s": t_row}


def peak_memory_child(method: str, size: int, device: str) -> None:
    """Run in a subprocess: print the peak memory one method adds on top of the built model."""
    model = build(device, fused=method == "capture")
    run = (lambda x: capture.capture_qk(model, x)) if method == "capture" else \
        AttentionExtract(model, method="hook", names=["*attn_drop"])
    x = torch.randn(1, 3, size, size, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = reset_peak_rss()
    with torch.inference_mode():
        out = run(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = status_bytes("VmHWM") - base
    del out
    print(json.dumps({"method": method, "peak_bytes": peak}))


def peak_memory(method: str, size: int, device: str) -> int:
    cmd = [sys.executable, __file__, "--child", method, "--sizes", str(size), "--device", device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return json.loads(out)["peak_bytes"]


def check_large(size: int, device: str) -> None:
    """Capture, one full layer map, rollout and the statistics at `size` px: peak memory stays bounded."""
    model = build(device)
    x = torch.randn(1, 3, size, size, device=device)
    start = time.perf_counter()
    qk = capture.capture_qk(model, x)
    capture.attention_map(qk, 0)
    capture.rollout(qk)
    capture.mean_attention_distance(qk)
    capture.attention_entropy(qk)
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"{size} px ({qk.num_tokens} tokens): capture, a layer's map, rollout, distance and entropy in "
          f"{time.perf_counter() - start:.0f} s, peak memory {peak / 2**30:.1f} GiB (budget 24 GiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 896])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--large", type=int, default=None, help="also check memory of everything at this size")
    args = parser.parse_args()
    if args.large:
        check_large(args.large, args.device)
        return
    if args.child:
        peak_memory_child(args.child, args.sizes[0], args.device)
        return
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"{MODEL} (random weights), batch 1, {device_name}, torch {torch.__version__}, timm {timm.__version__}")
    print(f"{'px':>5} {'tokens':>6} {'forward':>9} {'capture':>9} {'extract':>9} {'new query':>10} "
          f"{'(a) extract/query':>18} {'(b) capture/forward':>20}")
    for size in args.sizes:
        r = speed(size, args.device, args.repeats)
        a, b = r["extract_s"] / r["new_query_s"], r["capture_s"] / r["forward_s"]
        print(f"{size:>5} {r['tokens']:>6} {r['forward_s']:>8.3f}s {r['capture_s']:>8.3f}s {r['extract_s']:>8.3f}s "
              f"{1e3 * r['new_query_s']:>8.2f}ms {a:>17.0f}x {b:>19.2f}x"
              f"   (a) {'PASS' if a >= 50 else 'FAIL'} (b) {'PASS' if b <= 1.3 else 'FAIL'}")
    size = max(args.sizes)
    cap, ext = peak_memory("capture", size, args.device), peak_memory("extract", size, args.device)
    c = cap / ext
    print(f"peak memory at {size} px: capture {cap / 2**20:.0f} MiB, AttentionExtract {ext / 2**20:.0f} MiB, "
          f"(c) ratio {c:.3f} {'PASS' if c <= 0.25 else 'FAIL'} (target <= 0.25)")


if __name__ == "__main__":
    main()

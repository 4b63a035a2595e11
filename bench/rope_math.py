"""Benchmark: rope.apply_rope against timm's apply_rot_embed_cat on the same tensors.

Prints the time of each and their ratio, measured side by side in one run.
Usage: python bench/rope_math.py [--device cuda]
"""
from __future__ import annotations

import argparse

import torch
from timm.layers import apply_rot_embed_cat

from rope_viz import rope
from timing import best_of


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"device: {args.device}, threads: {torch.get_num_threads()}")
    for grid in (14, 28, 56):
        B, H, D = 8, 12, 64  # ViT-B heads
        positions = rope.grid_positions(grid, grid)
        freqs = rope.mixed_freqs(D, H, seed=0)[0].to(args.device)  # (H, D/2, 2)
        x = torch.randn(B, H, grid * grid, D, device=args.device)
        ang = rope.angles(freqs, positions)  # (H, N, D/2)
        emb = torch.cat([ang.sin().repeat_interleave(2, -1), ang.cos().repeat_interleave(2, -1)], -1)
        assert (rope.apply_rope(x, ang) - apply_rot_embed_cat(x, emb)).abs().max() < 1e-5
        ours = best_of(lambda: rope.apply_rope(x, rope.angles(freqs, positions)), args.repeats, args.device)
        timm_ = best_of(lambda: apply_rot_embed_cat(x, emb), args.repeats, args.device)
        print(f"grid {grid:>2}x{grid:<2} N={grid * grid:>5}: rope_viz {ours * 1e3:7.2f} ms (angles included), "
              f"timm {timm_ * 1e3:7.2f} ms (sin/cos precomputed), ratio {ours / timm_:.2f}")


if __name__ == "__main__":
    main()

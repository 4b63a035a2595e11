"""Published ImageNet-1k top-1 of the paper's DeiT-III models, drawn beside measured curves as "reported".

Source: the naver-ai/rope-vit README, table "DeiT-III (400 epochs)", evaluated at 224 and 384 px
(resize and centre crop, ratio 1.0). The paper's 144-512 px curves are published only as a figure
(figures/rope_vit.png), so no values are read off it here.
"""
from __future__ import annotations

import timm

from rope_viz import models
from rope_viz.models.specs import pos_label

SOURCE = "naver-ai/rope-vit README, DeiT-III (400 epochs) table"

# (size, position kind) -> {resolution px: top-1 %}
REPORTED_TOP1 = {
    ("small", "ape"): {224: 80.4, 384: 79.4},
    ("small", "rope_axial"): {224: 80.9, 384: 80.0},
    ("small", "rope_mixed"): {224: 80.9, 384: 81.8},
    ("small", "rope_axial_ape"): {224: 80.7, 384: 81.2},
    ("small", "rope_mixed_ape"): {224: 80.9, 384: 81.7},
    ("base", "ape"): {224: 83.4, 384: 82.8},
    ("base", "rope_axial"): {224: 83.6, 384: 83.9},
    ("base", "rope_mixed"): {224: 83.8, 384: 84.4},
    ("base", "rope_axial_ape"): {224: 83.7, 384: 83.8},
    ("base", "rope_mixed_ape"): {224: 83.8, 384: 84.3},
    ("large", "ape"): {224: 84.6, 384: 84.2},
    ("large", "rope_axial"): {224: 84.7, 384: 85.1},
    ("large", "rope_mixed"): {224: 84.8, 384: 85.6},
    ("large", "rope_axial_ape"): {224: 84.7, 384: 85.1},
    ("large", "rope_mixed_ape"): {224: 84.9, 384: 85.5},
}


NAVER_FAMILIES = ("naver_axial", "naver_mixed")
SIZE_OF_WIDTH = {384: "small", 768: "base", 1024: "large"}  # DeiT-III widths


def reported_for(model_name: str) -> dict[int, float] | None:
    """Reported top-1 for the paper's own naver weights in timm (tag naver_in1k), else None.

    The model is matched by its family, width and timm's pretrained tag, not by parsing its name.
    The APE baseline in the table is naver's own DeiT-III, not timm's deit3 weights, so only the
    RoPE models are matched.
    """
    spec = models.get_spec(model_name)
    if spec.source != "hub" or spec.family not in NAVER_FAMILIES:
        return None
    cfg = timm.models.get_pretrained_cfg(spec.arch)
    if cfg is None or cfg.tag != "naver_in1k":
        return None
    return REPORTED_TOP1.get((SIZE_OF_WIDTH.get(spec.embed_dim), spec.pos))


def reported_rows(sizes=("small", "base", "large")) -> list[dict]:
    """All reported points as rows {label, size, pos, resolution, top1}."""
    return [{"label": f"ViT-{size[0].upper()} {pos_label(pos)} (reported)", "size": size, "pos": pos,
             "resolution": res, "top1": top1}
            for (size, pos), points in REPORTED_TOP1.items() if size in sizes for res, top1 in points.items()]

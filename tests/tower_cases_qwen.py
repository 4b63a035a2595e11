"""Tiny tower cases (see tests/tower_cases.py): Qwen2-VL, Qwen2.5-VL and Qwen3-VL.

Patches of 4 px merged 2 x 2, so image sides are multiples of 8 px. Qwen2.5-VL's windows are 16 px (2 x 2
merge blocks) with layer 1 full: at 32 x 48 px six whole windows, at 24 x 40 px six windows of which the
bottom and right ones are cut short. Weights are drawn wider than transformers' 0.02 so that the maps are far
from uniform and a wrong token order shows.
"""
from __future__ import annotations

import torch
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import (Qwen2_5_VLConfig, Qwen2_5_VLTextConfig,
                                                                     Qwen2_5_VLVisionConfig)
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl import modeling_qwen2_vl
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLConfig, Qwen2VLTextConfig, Qwen2VLVisionConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLForConditionalGeneration
from transformers.models.qwen3_vl import modeling_qwen3_vl
from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLConfig, Qwen3VLTextConfig, Qwen3VLVisionConfig
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLForConditionalGeneration

from rope_viz.adapters.towers import qwen2_5_vl, qwen2_vl, qwen3_vl
from tower_cases import TowerCase

SIZES = ((32, 48), (24, 40))
INIT = 0.2  # initializer_range
COMMON = dict(depth=3, num_heads=2, patch_size=4, spatial_merge_size=2, temporal_patch_size=2, initializer_range=INIT)
TEXT = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=256)
MROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}  # head_dim 16: 8 pairs


def qwen2_vl_config():
    return Qwen2VLVisionConfig(embed_dim=32, hidden_size=32, mlp_ratio=2, **COMMON)


def qwen2_5_vl_config():
    return Qwen2_5_VLVisionConfig(hidden_size=32, intermediate_size=64, out_hidden_size=32, window_size=16,
                                  fullatt_block_indexes=[1], **COMMON)


def qwen3_vl_config():
    return Qwen3VLVisionConfig(hidden_size=32, intermediate_size=64, out_hidden_size=32, num_position_embeddings=36,
                               deepstack_visual_indexes=[0, 1], **COMMON)


def builder(adapter, config):
    def build():
        with torch.random.fork_rng():  # never reseed the global RNG
            torch.manual_seed(0)
            return adapter.wrap(adapter.build(config()))
    return build


def apply_own(modeling):
    """The modeling file's apply_rotary_pos_emb_vision on x (H, T, D): it takes q, k as (T, H, D)."""
    def apply(x, position_embeddings, layer):
        cos, sin = position_embeddings
        q = x.transpose(0, 1)
        rotated, _ = modeling.apply_rotary_pos_emb_vision(q, q, cos, sin)
        return rotated.transpose(0, 1)
    return apply


def saver(vlm_class, config_class, text_class, vision_config, text_rope):
    def save_vlm(path):
        config = config_class(vision_config=vision_config().to_dict(),
                              text_config=text_class(**TEXT, rope_parameters=text_rope).to_dict())
        with torch.random.fork_rng():
            torch.manual_seed(0)
            vlm_class(config).save_pretrained(path)
    return save_vlm


CASES: list = [
    TowerCase("qwen2_vl", builder(qwen2_vl.ADAPTER, qwen2_vl_config), SIZES, apply_own(modeling_qwen2_vl),
              saver(Qwen2VLForConditionalGeneration, Qwen2VLConfig, Qwen2VLTextConfig, qwen2_vl_config, MROPE)),
    TowerCase("qwen2_5_vl", builder(qwen2_5_vl.ADAPTER, qwen2_5_vl_config), SIZES, apply_own(modeling_qwen2_5_vl),
              saver(Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLConfig, Qwen2_5_VLTextConfig, qwen2_5_vl_config,
                    MROPE)),
    TowerCase("qwen3_vl", builder(qwen3_vl.ADAPTER, qwen3_vl_config), SIZES, apply_own(modeling_qwen3_vl),
              saver(Qwen3VLForConditionalGeneration, Qwen3VLConfig, Qwen3VLTextConfig, qwen3_vl_config,
                    {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                     "mrope_interleaved": True})),
]

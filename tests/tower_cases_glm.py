"""Tiny tower cases (see tests/tower_cases.py): GLM-4V, Kimi K2.5 and InternVL's vision towers.

Each is seeded, 2 layers, width 32, 2 heads, 4 px patches and a 6 x 6 APE table, at two sizes (one non-square;
InternVL's first is its table's own grid). InternVL is APE only: no apply_own; the rotation and method tests skip it.
"""
from __future__ import annotations

import torch
from transformers import (Glm4vConfig, Glm4vForConditionalGeneration, InternVLConfig, InternVLForConditionalGeneration,
                          Kimi_K25Config, Kimi_K25ForConditionalGeneration)
from transformers.models.glm4v import modeling_glm4v
from transformers.models.kimi_k25 import modeling_kimi_k25

from rope_viz.adapters.towers import glm4v, internvl, kimi_k25
from tower_cases import TowerCase

GLM_VISION = dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=48, patch_size=4,
                  image_size=24, spatial_merge_size=2, temporal_patch_size=2)  # APE table 6 x 6
GLM_TEXT = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                        "mrope_section": [1, 1, 2], "partial_rotary_factor": 0.5})
KIMI_VISION = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64, patch_size=4,
                   pos_emb_height=6, pos_emb_width=6, pos_emb_time=2, merge_kernel_size=(2, 2))  # APE table 6 x 6
KIMI_TEXT = dict(model_type="deepseek_v3", vocab_size=128, hidden_size=32, intermediate_size=64,
                 moe_intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                 n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1,
                 first_k_dense_replace=1, kv_lora_rank=8, q_lora_rank=8, qk_rope_head_dim=8, qk_nope_head_dim=8,
                 v_head_dim=8)
INTERNVL_VISION = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                       image_size=(24, 24), patch_size=(4, 4), use_qk_norm=True, norm_type="rms_norm")  # table 6 x 6
INTERNVL_TEXT = dict(model_type="qwen2", vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=1)


def _seeded(build):
    torch.manual_seed(0)
    return build()


def glm_tower():
    adapter = glm4v.ADAPTER
    config = Glm4vConfig(vision_config=GLM_VISION, text_config=GLM_TEXT)
    return adapter.wrap(_seeded(lambda: adapter.build(adapter.vision_config(config))))


def glm_rotate(x, position_embeddings, layer):
    """Glm4vVisionAttention's own rotation: q (T, H, D) with (cos, sin) (T, D)."""
    cos, sin = position_embeddings
    q, _ = modeling_glm4v.apply_rotary_pos_emb_vision(x.transpose(0, 1), x.transpose(0, 1), cos, sin)
    return q.transpose(0, 1)


def glm_vlm(path):
    config = Glm4vConfig(vision_config=GLM_VISION, text_config=GLM_TEXT)
    _seeded(lambda: Glm4vForConditionalGeneration(config)).save_pretrained(path)


def kimi_config():
    return Kimi_K25Config(vision_config=KIMI_VISION, text_config=KIMI_TEXT, projection_hidden_size=32)


def kimi_tower():
    adapter = kimi_k25.ADAPTER
    return adapter.wrap(_seeded(lambda: adapter.build(adapter.vision_config(kimi_config()))))


def kimi_rotate(x, position_embeddings, layer):
    """Kimi_K25VisionAttention's own rotation: q (1, T, H, D) with (cos, sin) (T, D)."""
    cos, sin = position_embeddings
    q, _ = modeling_kimi_k25.apply_rotary_pos_emb_vision(x.transpose(0, 1)[None], x.transpose(0, 1)[None], cos, sin)
    return q[0].transpose(0, 1)


def kimi_vlm(path):
    _seeded(lambda: Kimi_K25ForConditionalGeneration(kimi_config())).save_pretrained(path)


def internvl_config():
    return InternVLConfig(vision_config=INTERNVL_VISION, text_config=INTERNVL_TEXT)


def internvl_tower():
    adapter = internvl.ADAPTER
    return adapter.wrap(_seeded(lambda: adapter.build(adapter.vision_config(internvl_config()))))


def internvl_vlm(path):
    _seeded(lambda: InternVLForConditionalGeneration(internvl_config())).save_pretrained(path)


CASES: list = [
    TowerCase("glm4v", glm_tower, ((16, 32), (32, 24)), glm_rotate, save_vlm=glm_vlm),
    TowerCase("kimi_k25", kimi_tower, ((24, 16), (32, 40)), kimi_rotate, save_vlm=kimi_vlm),
    TowerCase("internvl", internvl_tower, ((24, 24), (16, 28)), None, save_vlm=internvl_vlm),  # APE only: no rotation
]

"""Tiny tower cases (see tests/tower_cases.py): DINOv3 (transformers), Gemma 4's vision encoder, SAM 3's ViT."""
from __future__ import annotations

import torch
from transformers import (CLIPTextConfig, DINOv3ViTConfig, Gemma4Config, Gemma4ForConditionalGeneration,
                          Gemma4TextConfig, Gemma4VisionConfig, Sam3Config, Sam3Model, Sam3ViTConfig,
                          Sam3VisionConfig)
from transformers.models.dinov3_vit import modeling_dinov3_vit
from transformers.models.gemma4 import modeling_gemma4
from transformers.models.sam3 import modeling_sam3

from rope_viz.adapters.towers import dinov3_hf, gemma4_vision, sam3
from tower_cases import TowerCase


def dinov3_config() -> DINOv3ViTConfig:
    """Two registers; the coordinate augmentations are set so that the tests show they are off in eval mode."""
    return DINOv3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           patch_size=4, image_size=16, num_register_tokens=2, pos_embed_shift=0.2,
                           pos_embed_jitter=1.5, pos_embed_rescale=2.0)


def gemma4_vision_config() -> Gemma4VisionConfig:
    """Two heads sharing one kv head (grouped), head_dim 16, 2 x 2 pooling."""
    return Gemma4VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              num_key_value_heads=1, head_dim=16, patch_size=4, pooling_kernel_size=2,
                              position_embedding_size=16)


def sam3_vit_config() -> Sam3ViTConfig:
    """Global layers 0 and 2 around a windowed layer 1 (2 x 2 windows); configured for 16 px (8 x 8 patches)."""
    return Sam3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                         image_size=16, patch_size=2, window_size=2, global_attn_indexes=[0, 2],
                         pretrain_image_size=8)


def build(adapter, config):
    def make():
        torch.manual_seed(0)
        return adapter.wrap(adapter.build(config()))
    return make


# -- the towers' own rotation functions; x (H, T, D) in the layer's internal order

def dinov3_apply(x, pe, layer):
    cos, sin = pe
    return modeling_dinov3_vit.apply_rotary_pos_emb(x[None], x[None], cos, sin)[0][0]


def gemma4_apply(x, pe, layer):
    """apply_multidimensional_rope on (B, T, H, D); it reads only the last size of position ids (2 axes)."""
    cos, sin = pe
    ids = torch.zeros(1, x.shape[1], 2, dtype=torch.long)
    return modeling_gemma4.apply_multidimensional_rope(x.transpose(0, 1)[None], cos, sin, ids)[0].transpose(0, 1)


def sam3_apply(x, pe, layer):
    """apply_rotary_pos_emb_2d on (calls' batch rows, H, n, D): windows one after another."""
    cos, sin = pe
    rows = x.unflatten(1, (-1, cos.shape[-2])).transpose(0, 1)  # (rows, H, n, D)
    q, _ = modeling_sam3.apply_rotary_pos_emb_2d(rows, rows, cos, sin)
    return q.transpose(0, 1).flatten(1, 2)


# -- tiny full models, written with save_pretrained

def dinov3_save(path):
    """DINOv3 has no bigger model in transformers: the DINOv3ViTModel itself."""
    torch.manual_seed(0)
    modeling_dinov3_vit.DINOv3ViTModel(dinov3_config()).save_pretrained(path)


def gemma4_save(path):
    text = Gemma4TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=16,
                            vocab_size_per_layer_input=64, hidden_size_per_layer_input=8,
                            layer_types=["full_attention"])
    torch.manual_seed(0)
    config = Gemma4Config(text_config=text, vision_config=gemma4_vision_config(), audio_config=None)
    Gemma4ForConditionalGeneration(config).save_pretrained(path)


def sam3_save(path):
    small = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
    config = Sam3Config(
        vision_config=Sam3VisionConfig(backbone_config=sam3_vit_config(), fpn_hidden_size=16,
                                       backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]]),
        text_config=CLIPTextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, projection_dim=16,
                                   num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=8,
                                   bos_token_id=0, eos_token_id=1, pad_token_id=1),
        geometry_encoder_config={**small, "num_layers": 1}, detr_encoder_config={**small, "num_layers": 1},
        detr_decoder_config={**small, "num_layers": 1, "num_queries": 4},
        mask_decoder_config={"hidden_size": 16, "num_attention_heads": 2, "num_upsampling_stages": 1})
    torch.manual_seed(0)
    Sam3Model(config).save_pretrained(path)


CASES: list = [
    TowerCase("dinov3_hf", build(dinov3_hf.ADAPTER, dinov3_config), ((16, 16), (12, 20)), dinov3_apply,
              save_vlm=dinov3_save),
    TowerCase("gemma4_vision", build(gemma4_vision.ADAPTER, gemma4_vision_config), ((16, 16), (16, 24)),
              gemma4_apply, save_vlm=gemma4_save),
    TowerCase("sam3", build(sam3.ADAPTER, sam3_vit_config), ((16, 16), (8, 16)), sam3_apply, save_vlm=sam3_save,
              window_local=True),
]

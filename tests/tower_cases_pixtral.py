"""Tiny tower cases (see tests/tower_cases.py): Pixtral, Llama 4 vision, MLCD.

Each tower is built from a seeded random config (width 32, 2 heads of 16 channels, 2 blocks, 8 px patches) and
rotated by its own modeling file's function. Llama 4 takes only its configured image size (one size); MLCD's
CLS turns by its learned angles, so its prefix is not checked as unrotated.
"""
from __future__ import annotations

import torch
from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
from transformers.models.llama4 import Llama4Config, Llama4ForConditionalGeneration, Llama4TextConfig
from transformers.models.llama4 import modeling_llama4
from transformers.models.llama4.configuration_llama4 import Llama4VisionConfig
from transformers.models.mlcd import MLCDVisionConfig, modeling_mlcd
from transformers.models.pixtral import PixtralVisionConfig, modeling_pixtral

from rope_viz.adapters.towers import llama4, mlcd, pixtral
from tower_cases import TowerCase

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 8}


def pixtral_config():
    return PixtralVisionConfig(**TINY, intermediate_size=64, image_size=64)


def llama4_config():
    return Llama4VisionConfig(**TINY, intermediate_size=128, image_size=48, vision_output_dim=64,
                              projector_input_dim=64, projector_output_dim=64, pixel_shuffle_ratio=0.5)


def mlcd_config():
    return MLCDVisionConfig(**TINY, intermediate_size=64, image_size=48)


def tiny_text(config_class=LlamaConfig, **extra):
    return config_class(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                        num_key_value_heads=1, head_dim=16, vocab_size=128, **extra)


def built(adapter, config):
    """The adapter's tower from `config`, seeded without touching the caller's RNG, wrapped."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return adapter.wrap(adapter.build(config))


def save_llava(vision):
    """A tiny LLaVA (the container of Pixtral-12B's and of LLaVA-MLCD's checkpoints) around `vision`."""
    def save(path):
        config = LlavaConfig(vision_config=vision, text_config=tiny_text(), image_token_index=127)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            LlavaForConditionalGeneration(config).save_pretrained(path)
    return save


def save_llama4(path):
    text = tiny_text(Llama4TextConfig, intermediate_size_mlp=64, num_local_experts=1, interleave_moe_layer_step=1)
    config = Llama4Config(vision_config=llama4_config(), text_config=text, image_token_index=127)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        Llama4ForConditionalGeneration(config).save_pretrained(path)


def pixtral_own(x, position_embeddings, layer):
    """PixtralAttention: apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=0) on (B, H, T, D)."""
    cos, sin = position_embeddings
    return modeling_pixtral.apply_rotary_pos_emb(x[None], x[None], cos, sin, unsqueeze_dim=0)[0][0]


def llama4_own(x, freqs_ci, layer):
    """Llama4VisionAttention: vision_apply_rotary_emb(q, k, freqs_ci) on (B, T, H, D)."""
    q = x.transpose(0, 1)[None]
    return modeling_llama4.vision_apply_rotary_emb(q, q, freqs_ci=freqs_ci)[0][0].transpose(0, 1)


def mlcd_own(x, position_embeddings, layer):
    """MLCDAttention: cos/sin unsqueezed to (1, T, D), then apply_rotary_pos_emb_vision on (B, T, H, D)."""
    cos, sin = (t.unsqueeze(0).float() for t in position_embeddings)
    q = x.transpose(0, 1)[None]
    return modeling_mlcd.apply_rotary_pos_emb_vision(q, q, cos, sin)[0][0].transpose(0, 1)


CASES: list = [
    TowerCase("pixtral", lambda: built(pixtral.ADAPTER, pixtral_config()), ((40, 56), (48, 48)), pixtral_own,
              save_vlm=save_llava(pixtral_config())),
    TowerCase("llama4", lambda: built(llama4.ADAPTER, llama4_config()), ((48, 48),), llama4_own,
              save_vlm=save_llama4),
    TowerCase("mlcd", lambda: built(mlcd.ADAPTER, mlcd_config()), ((40, 56), (32, 32)), mlcd_own,
              save_vlm=save_llava(mlcd_config()), check_prefix=False),
]

"""What a Hugging Face vision tower's adapter answers, beyond rope_viz.adapters.base.Adapter.

Every tower differs in four places, and its adapter file says how, reading the built module only:
  building   which config and class make the tower (from a full VLM's config too) and where its weights sit
  inputs     the tower's own input format from a normalised image (flattened patches + grid_thw, image_sizes, ...)
  order      which rope-viz token (prefix first, then patches row-major) each of the tower's internal tokens is
  rotation   its frequencies in rad/patch, positions, pair layout, and the position_embeddings its attentions
             receive for given frequencies (the override that every position method goes through)
Capture needs nothing per tower: the attention function transformers dispatches to is recorded
(rope_viz.adapters.towers.record), so q and k are exactly what the tower multiplies, window by window.

transformers is imported lazily, by module name (`hf_modeling`), only when a tower is built or run: importing
rope-viz and opening its Home page must not pay for it.
"""
from __future__ import annotations

import importlib

import torch

from rope_viz.adapters.base import Adapter
from rope_viz.adapters.calls import RopeCall
from rope_viz.adapters.towers.tower import Tower
from rope_viz.errors import FamilyError


def to_rope_viz_order(x: torch.Tensor, order: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Tokens of the tower's internal order put in rope-viz order: entry t of `dim` goes to index order[t].
    Shapes: x (..., T, ...) along dim, order (T,) -> like x"""
    return torch.empty_like(x).index_copy_(dim, order.to(x.device), x)


def hf_modeling(model_type: str):
    """transformers' modeling module of one model type, e.g. 'qwen2_5_vl' (imported on first use)."""
    return importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")


class TowerCall(RopeCall):
    """A transformers attention: `position_embeddings` (whatever form the tower uses: (cos, sin), a complex
    table, ...) passed as a keyword, hidden states with tokens on dimension `token_dim`."""

    def __init__(self, keyword: str = "position_embeddings", token_dim: int = 1):
        self.keyword, self.token_dim = keyword, token_dim

    def read(self, args, kwargs):
        return kwargs.get(self.keyword)

    def replace(self, args, kwargs, rope):
        return args, {**kwargs, self.keyword: rope}

    def tokens(self, args, kwargs) -> int:
        hidden = args[0] if args else kwargs["hidden_states"]
        return int(hidden.shape[self.token_dim])

    def build(self, freqs_layer, pos, pairs):
        raise FamilyError("A vision tower builds its rotation through its adapter (TowerAdapter.build_rotation).")


class TowerAdapter(Adapter):
    """A transformers vision tower. Subclasses fill in the class attributes and the methods that raise."""

    library = "transformers"
    any_size = True
    call: TowerCall = TowerCall()
    model_types: tuple[str, ...] = ()  # config.json model_type values read: the full VLM's and the tower's own
    weight_prefixes: tuple[str, ...] = ()  # where the tower's weights sit in a full checkpoint, e.g. "model.visual."

    # -- recognition
    def matches(self, body) -> bool:
        return isinstance(body, Tower) and body.adapter is self

    # -- building (models layer: rope_viz.models.towers)
    def vision_config(self, config):
        """The tower's config from a full VLM's config or from the tower's own (a transformers PretrainedConfig)."""
        return getattr(config, "vision_config", None) or config

    def build(self, vision_config) -> torch.nn.Module:
        """The transformers tower, randomly initialised (sdpa attention), in eval mode."""
        raise NotImplementedError

    def rename_weights(self, hf, state: dict) -> dict:
        """A checkpoint's tower weights (weight prefix stripped) under the built tower's names: transformers' own
        load-time renamings for it (DINOv3 checkpoints keep 'layer.N.*', its module 'model.layer.N.*')."""
        loading = importlib.import_module("transformers.core_model_loading")
        mapping = importlib.import_module("transformers.conversion_mapping").get_model_conversion_mapping(hf)
        renamings = [r for r in mapping if isinstance(r, loading.WeightRenaming)]
        return {loading.apply_renamings(key, renamings): value for key, value in state.items()}

    def convert_weights(self, weights: dict[str, torch.Tensor], vision_config) -> dict[str, torch.Tensor]:
        """The tower's state dict from a checkpoint's vision weights (weight prefix stripped): the same names unless
        the checkpoint keeps another layout (Kimi K2.5's original fused, RoPE-permuted wqkv)."""
        return weights

    def wrap(self, hf, mean=None, std=None) -> Tower:
        """The built tower with rope-viz's face, normalised with `mean`/`std` (default: its processor's)."""
        default_mean, default_std = self.mean_std(hf)
        return Tower(hf.eval().requires_grad_(False), self, mean or default_mean, std or default_std)

    def mean_std(self, hf) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The image processor's default mean and std, where the directory has no preprocessor_config.json."""
        raise NotImplementedError

    # -- geometry
    def attentions(self, hf) -> list[torch.nn.Module]:
        """Each block's attention module, first to last."""
        raise NotImplementedError

    def num_heads(self, hf) -> int:
        return int(hf.config.num_attention_heads)

    def width(self, hf) -> int:
        return int(hf.config.hidden_size)

    def patch(self, hf) -> int:
        return int(hf.config.patch_size)

    def size_multiple(self, hf) -> int:
        """Image sides must be a multiple of this many pixels (patch x spatial merge for Qwen and GLM)."""
        return self.patch(hf)

    def train_grid(self, body, module=None) -> tuple[int, int]:
        """The tower's configured image size in patches, where it has one; else 16 x 16 patches."""
        size = getattr(body.hf.config, "image_size", None)
        side = int(size) // self.patch(body.hf) if size else 16
        return side, side

    def check_image_size(self, body, height: int, width: int) -> None:
        m = self.size_multiple(body.hf)
        if height % m or width % m:
            raise FamilyError(f"{self.label} takes image sides that are multiples of {m} px; "
                              f"{height} x {width} px is not.")

    def has_ape(self, body) -> bool:
        return False

    def windowed_layers(self, body) -> tuple[bool, ...]:
        """Per layer: True where queries see only their window, False for full attention."""
        return (False,) * len(self.attentions(body.hf))

    # -- running
    def inputs(self, hf, image: torch.Tensor) -> dict:
        """The tower's own forward arguments for one normalised image. Shapes: image (1, 3, H, W)"""
        raise NotImplementedError

    def run(self, hf, image: torch.Tensor):
        """The tower's forward on one normalised image, whose output last_hidden reads (its own forward; a tower
        whose forward pools its tokens runs the part before the pooling). Shapes: image (1, 3, H, W)"""
        return hf(**self.inputs(hf, image))

    def last_hidden(self, hf, output) -> torch.Tensor:
        """The last block's tokens from the tower's output, in its internal order. Shapes: -> (T, C)"""
        hidden = output.last_hidden_state
        return hidden[0] if hidden.dim() == 3 else hidden

    def last_tokens(self, hf, image: torch.Tensor) -> torch.Tensor:
        """The tower's own forward on one normalised image: its last per-patch tokens (last_hidden), in its
        internal order. Towers whose output keeps no per-patch tokens (GLM-4V merges them) override this.
        Shapes: image (1, 3, H, W) -> (T, C)"""
        return self.last_hidden(hf, self.run(hf, image))

    def token_order(self, hf, grid: tuple[int, int], layer: int | None = None) -> torch.Tensor:
        """For each of the tower's internal tokens, its rope-viz index (prefix tokens 0..n-1, then patch
        y * gw + x + n): as layer `layer`'s attention calls receive them (the calls' batch rows one after
        another), or, with layer None, as the tower's last hidden state holds them. -1 marks padding.
        Shapes: -> (T,) long"""
        raise NotImplementedError

    def features(self, body: Tower, image: torch.Tensor) -> torch.Tensor:
        """The last block's tokens in rope-viz order for one image. Shapes: image (1, 3, H, W) -> (N, C)"""
        gh, gw = image.shape[-2] // self.patch(body.hf), image.shape[-1] // self.patch(body.hf)
        return to_rope_viz_order(self.last_tokens(body.hf, image), self.token_order(body.hf, (gh, gw)))

    # -- rotation
    def q_scale_point(self, attn):
        """q's own projection (`q_proj`), or the first third of a fused `qkv` projection's output."""
        if hasattr(attn, "q_proj"):
            return attn.q_proj, lambda output, scale: output * scale
        if hasattr(attn, "qkv"):
            def scale_q(output, scale):
                q, kv = output.split([output.shape[-1] // 3, 2 * output.shape[-1] // 3], dim=-1)
                return torch.cat([q * scale, kv], dim=-1)
            return attn.qkv, scale_q
        return None

    def build_rotation(self, body, freqs_layer: torch.Tensor, pos: torch.Tensor, grid: tuple[int, int]):
        """What one layer's attention receives as `position_embeddings` to rotate patch p by freqs . p, in the
        tower's internal token order. Shapes: freqs_layer (H, D/2, 2) rad/patch, pos (gh * gw, 2) raster"""
        raise NotImplementedError

"""SAM 3's ViT in transformers (`Sam3ViTModel`, inside Sam3Model's vision encoder): axial RoPE with interleaved
pairs (an x block, then a y block), a learned APE tiled to the grid, no prefix tokens, and window attention in every
layer but the global ones (config.global_attn_indexes).

Windowed layers cut the patch grid into w x w windows, stacked as the batch of one attention call (window-major,
row-major inside), and rotate by positions inside their window (window origins cancel in q . k, so rope-viz's
global positions give the same attention). Global layers rotate by patch indices scaled by w / gw, as the tower
precomputes them for its configured size: that is its only size, so for another grid rope-viz gives each global
layer's attention the rotation of positions re-derived the same way (Sam3ViTLayer.precompute_positions' rule: the
tower as configured for that size), through a pre-hook that lasts one forward of the calling thread; the shared
model itself is never changed.
Image sides must fill whole windows: the tower would pad them.
"""
from __future__ import annotations

import importlib
import threading

import torch

from rope_viz.adapters.base import axis_pairs
from rope_viz.adapters.towers.base import TowerAdapter, TowerCall, hf_modeling
from rope_viz.errors import FamilyError
from rope_viz.rotary import rope2d


class Sam3Call(TowerCall):
    """Sam3ViTRoPEAttention(hidden_states, position_embeddings): (cos, sin) as the second positional argument,
    hidden states (windows or the image, h, w, C), so its tokens are all of them (one image: gh * gw).

    The adapter builds rotations on the patch grid, (H', gh, gw, D) each (H' = 1 or heads); `replace` puts them in
    the form the layer takes: (1, P, D) (or (1, H, P, D)) for a global layer, and for a windowed one window by
    window (windows, H', w * w, D), turned back by each window's first patch's angle so that, as in the tower,
    windows rotate by positions inside them."""

    def read(self, args, kwargs):
        return args[1] if len(args) > 1 else kwargs.get(self.keyword)

    def replace(self, args, kwargs, rope):
        hidden = args[0] if args else kwargs["hidden_states"]
        rope = self.layer_form(rope, tuple(hidden.shape[1:3]))
        if len(args) > 1:
            return (args[0], rope, *args[2:]), kwargs
        return args, {**kwargs, self.keyword: rope}

    def tokens(self, args, kwargs) -> int:
        hidden = args[0] if args else kwargs["hidden_states"]
        return int(hidden.shape[:-1].numel())

    @staticmethod
    def layer_form(rope, window: tuple[int, int]):
        """Grid-form (cos, sin) (H', gh, gw, D) -> the form a layer whose calls hold `window` (h, w) patches takes."""
        cos, sin = rope
        heads, gh, gw, dim = cos.shape
        if window == (gh, gw):  # global layer: the whole grid row-major, (1, P, D) or (1, H, P, D)
            return tuple(t.reshape(heads, gh * gw, dim)[None] if heads > 1 else t.reshape(1, gh * gw, dim)
                         for t in (cos, sin))
        w = window[0]
        cos0, sin0 = cos[:, ::w, ::w], sin[:, ::w, ::w]  # (H', gh / w, gw / w, D) each window's first patch

        def windows(t):  # (H', gh/w, gw/w, ...) per window -> (windows, H', w * w, D)
            t = t.reshape(heads, gh // w, w, gw // w, w, dim).permute(1, 3, 0, 2, 4, 5)
            return t.reshape(-1, heads, w * w, dim)

        c, s = windows(cos), windows(sin)
        c0 = cos0.permute(1, 2, 0, 3).reshape(-1, heads, 1, dim)
        s0 = sin0.permute(1, 2, 0, 3).reshape(-1, heads, 1, dim)
        return c * c0 + s * s0, s * c0 - c * s0  # cos(a - a0), sin(a - a0)


def global_positions(config, grid: tuple[int, int]) -> torch.Tensor:
    """What Sam3ViTLayer.precompute_positions gives a global layer of a tower configured for this grid: (x, y)
    patch indices times window_size / gw (both axes). Shapes: -> (gh * gw, 2)"""
    return rope2d.grid_positions(*grid) * (float(config.window_size) / grid[1])


class Sam3(TowerAdapter):
    key = "sam3"
    label = "SAM 3 ViT"
    kind = "axial"
    grid_dependent = True  # global layers' positions are scaled by window / grid width
    about = "axial RoPE, interleaved pairs, window attention with global layers, a learned APE tiled to the grid"
    own_ape_resampling = True  # tiled (repeated), not interpolated
    call = Sam3Call()
    model_types = ("sam3", "sam3_video", "sam3_vision_model", "sam3_vit_model")
    weight_prefixes = ("vision_encoder.backbone.", "detector_model.vision_encoder.backbone.", "backbone.")

    # -- building
    def vision_config(self, config):
        """Sam3Config (or a video model's detector_config) -> vision_config -> backbone_config, the ViT's."""
        for name in ("detector_config", "vision_config", "backbone_config"):
            config = getattr(config, name, None) or config
        return config

    def build(self, vision_config) -> torch.nn.Module:
        model = hf_modeling("sam3").Sam3ViTModel._from_config(vision_config, attn_implementation="sdpa")
        return model.eval()

    def mean_std(self, hf):
        cls = importlib.import_module("transformers.models.sam3.image_processing_sam3").Sam3ImageProcessor
        return tuple(cls.image_mean), tuple(cls.image_std)

    # -- geometry
    def attentions(self, hf) -> list[torch.nn.Module]:
        return [layer.attention for layer in hf.layers]

    def windows(self, hf) -> list[int]:
        """Each layer's window side in patches (0: global), from the built layers."""
        return [int(layer.window_size) for layer in hf.layers]

    def size_multiple(self, hf) -> int:
        return self.patch(hf) * max([w for w in self.windows(hf) if w] or [1])

    def has_ape(self, body) -> bool:
        return getattr(body.hf.embeddings, "position_embeddings", None) is not None

    def windowed_layers(self, body) -> tuple[bool, ...]:
        return tuple(w > 0 for w in self.windows(body.hf))

    def check_image_size(self, body, height: int, width: int) -> None:
        m = self.size_multiple(body.hf)
        if height % m or width % m:
            raise FamilyError(f"{self.label} attends within windows of {m} x {m} px, so image sides must be multiples "
                              f"of {m} px (it would pad the windows); {height} x {width} px is not.")

    # -- running
    def inputs(self, hf, image: torch.Tensor) -> dict:
        return {"pixel_values": image}

    def run(self, hf, image: torch.Tensor):
        """The tower's forward; at a grid other than its configured one, each global layer's attention receives the
        rotation of positions re-derived for this grid (a pre-hook for this thread and this forward only, placed
        first so that an override entered earlier still replaces it). Shapes: image (1, 3, H, W)"""
        p, owner = self.patch(hf), threading.get_ident()
        wanted = global_positions(hf.config, (image.shape[-2] // p, image.shape[-1] // p))
        handles = []

        def rotation(layer, positions):
            def hook(attn, args, kwargs):
                if threading.get_ident() != owner:
                    return None
                return (args[0], layer.rotary_emb(args[0], positions), *args[2:]), kwargs
            return hook

        try:
            for layer in hf.layers:
                if layer.window_size == 0 and not (layer.position_ids.shape == wanted.shape
                                                   and torch.equal(layer.position_ids.cpu(), wanted)):
                    handles.append(layer.attention.register_forward_pre_hook(
                        rotation(layer, wanted.to(layer.position_ids)), with_kwargs=True, prepend=True))
            return hf(**self.inputs(hf, image))
        finally:
            for handle in handles:
                handle.remove()

    def token_order(self, hf, grid, layer=None) -> torch.Tensor:
        """Global layers and the output: row-major. Windowed layers: window by window (windows row-major), then
        row-major inside each window; -1 where the tower pads a window. Shapes: -> (T,)"""
        gh, gw = grid
        w = 0 if layer is None else self.windows(hf)[layer]
        if not w:
            return torch.arange(gh * gw)
        ph, pw = -(-gh // w) * w, -(-gw // w) * w  # padded up to whole windows
        ys, xs = torch.meshgrid(torch.arange(ph), torch.arange(pw), indexing="ij")
        index = torch.where((ys < gh) & (xs < gw), ys * gw + xs, -1)
        return index.reshape(ph // w, w, pw // w, w).permute(0, 2, 1, 3).flatten()

    # -- rotation
    def read_freqs(self, body, grid) -> torch.Tensor:
        hf = body.hf
        out = []
        for layer, w in zip(hf.layers, self.windows(hf)):
            inv_freq = layer.rotary_emb.inv_freq.detach().double().cpu()  # (D/4,) rad per position unit
            scale = float(hf.config.window_size) / (w or grid[1])  # precompute_positions: window_size / grid width
            out.append(axis_pairs(inv_freq * scale, inv_freq * scale, "xy"))  # x block first: position_ids (x, y)
        return torch.stack(out).float()[:, None].expand(-1, self.num_heads(hf), -1, -1).contiguous()

    def layout(self, body) -> tuple[str, str]:
        return "xy", "interleaved"

    def prefix_tokens(self, body) -> dict[str, int]:
        return {"cls": 0, "registers": 0, "total": 0}

    def build_rotation(self, body, freqs_layer, pos, grid):
        """(cos, sin) on the patch grid, each pair's angle on features 2j and 2j + 1; Sam3Call.replace puts them in
        the layer's own form (whole grid, or window by window with in-window positions), since this does not know
        the layer. Shapes: freqs_layer (H, D/2, 2), pos (P, 2) raster -> (1 | H, gh, gw, D) each"""
        same = bool((freqs_layer == freqs_layer[:1]).all())
        angles = rope2d.angles(freqs_layer[:1] if same else freqs_layer, pos)  # (H', P, D/2)
        angles = angles.repeat_interleave(2, dim=-1).unflatten(1, tuple(grid))  # (H', gh, gw, D)
        return torch.cos(angles), torch.sin(angles)


ADAPTER = Sam3()

"""APE-only ViTs (DeiT-III, ViT): a learned absolute table, no rotary embedding."""
from rope_viz.adapters.base import Adapter, rope_module


class ApeOnly(Adapter):
    key = "ape"
    label = "APE only"
    kind = "ape"
    about = "a learned absolute table, no rotary embedding"

    def matches(self, body) -> bool:
        return rope_module(body) is None and hasattr(body, "pos_embed") and hasattr(body, "blocks")


ADAPTER = ApeOnly()

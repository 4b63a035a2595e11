"""rope-viz: see what Rotary Position Embedding does inside Vision Transformers."""
__version__ = "0.1.0"

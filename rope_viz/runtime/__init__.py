"""Process-wide services: the memory budget, byte-bounded caches and per-model locks."""

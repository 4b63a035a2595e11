"""Memory: how much there is, what a request needs, and one byte-bounded cache shared by everything.

A leaf module (it imports nothing else from rope_viz but the error base class), so any module may use it.

The cache budget is one number for the whole process (every session, every kind of cached result):
- the environment variable ROPE_VIZ_CACHE_BYTES, in bytes or with a K/M/G/T suffix ("6G"), when set;
- otherwise CACHE_FRACTION of the machine's total RAM (/proc/meminfo MemTotal, else os.sysconf);
- when neither can be read, UNKNOWN_MEMORY_BUDGET, and a warning saying so (set the variable instead).
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import fields, is_dataclass
from typing import Callable, Hashable

import numpy as np
import torch

from rope_viz.errors import RopeVizError

log = logging.getLogger(__name__)

BUDGET_ENV = "ROPE_VIZ_CACHE_BYTES"
CACHE_FRACTION = 0.25  # of total RAM: leaves room for the models, the forwards and the browser-side work
UNKNOWN_MEMORY_BUDGET = 2 << 30  # documented default when the machine's memory cannot be read
GIB = 2 ** 30


class MemoryBudgetError(RopeVizError):
    """A request that alone needs more memory than the cache budget or the free memory; one sentence."""


class OutOfMemory(RopeVizError):
    """The device ran out of memory during a computation; the caches were emptied. One sentence."""


# ---------------------------------------------------------------- the machine

def _meminfo(field: str) -> int | None:
    """A /proc/meminfo field in bytes, or None where there is no /proc (macOS, Windows)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sysconf(name: str) -> int | None:
    try:
        value = os.sysconf(name) * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return value if value > 0 else None


def total_memory() -> int | None:
    """Total RAM in bytes, or None when the machine does not say."""
    return _meminfo("MemTotal") or _sysconf("SC_PHYS_PAGES")


def available_memory(device: str = "cpu") -> int | None:
    """Free bytes on `device` (CUDA: free device memory; CPU: MemAvailable, which counts reclaimable
    page cache, else free pages), or None when it cannot be read: callers say so rather than guess."""
    if str(device).startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    return _meminfo("MemAvailable") or _sysconf("SC_AVPHYS_PAGES")


def parse_bytes(text: str) -> int:
    """'3221225472', '3G', '512M', '1.5 GiB' -> bytes. Raises ValueError naming the accepted forms."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"{BUDGET_ENV}={text!r} is not a size; use bytes or a K/M/G/T suffix, e.g. 6G.")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


def cache_budget() -> int:
    """The cache budget in bytes: $ROPE_VIZ_CACHE_BYTES, else CACHE_FRACTION of total RAM (see module doc)."""
    if os.environ.get(BUDGET_ENV):
        return parse_bytes(os.environ[BUDGET_ENV])
    total = total_memory()
    if total is None:
        log.warning("Could not read this machine's memory; the cache budget is %.1f GiB. Set %s to change it.",
                    UNKNOWN_MEMORY_BUDGET / GIB, BUDGET_ENV)
        return UNKNOWN_MEMORY_BUDGET
    return int(total * CACHE_FRACTION)


def describe_budget(budget: int | None = None) -> str:
    """One line for the UI and the CLI: the budget and where it came from."""
    budget = cache_budget() if budget is None else budget
    if os.environ.get(BUDGET_ENV):
        source = f"set by {BUDGET_ENV}"
    elif total_memory() is not None:
        source = f"{CACHE_FRACTION:.0%} of {total_memory() / GIB:.1f} GiB RAM; set {BUDGET_ENV} to change it"
    else:
        source = f"the machine's memory could not be read; set {BUDGET_ENV} to change it"
    return f"cache budget {budget / GIB:.2f} GiB ({source})"


# ---------------------------------------------------------------- estimates

# Every estimate in rope-viz is built from these three, in fp32 unless told: a capture's peak
# (rope_viz.measure.capture), a sweep batch (rope_viz.measure.sweep) and a kept capture (the app's cache).

def qk_bytes(batch: int, depth: int, tokens: int, width: int, dtype_bytes: int = 4) -> int:
    """Bytes of one capture's stored q and k: two (B, L, N, C) tensors (C = heads x head_dim)."""
    return 2 * batch * depth * tokens * width * dtype_bytes


def forward_bytes(batch: int, tokens: int, width: int, dtype_bytes: int = 4) -> int:
    """A rough upper bound on one forward's live activations: the residual stream and the MLP's hidden
    layer (4x) with their copies, eight (B, N, C) tensors in all."""
    return 8 * batch * tokens * width * dtype_bytes


def scores_bytes(batch: int, heads: int, rows: int, tokens: int, dtype_bytes: int = 4) -> int:
    """Bytes of `rows` query rows of attention scores in every head: one (B, H, rows, N) tensor."""
    return batch * heads * rows * tokens * dtype_bytes


def nbytes(obj) -> int:
    """Bytes held by tensors and arrays inside obj (tuples, lists, dicts, dataclasses, modules).

    Small Python objects count as 0: the budget is about the large buffers.
    """
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, torch.nn.Module):
        return sum(nbytes(t) for t in (*obj.parameters(), *obj.buffers()))
    if isinstance(obj, (bytes, bytearray, str)):
        return len(obj)
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(nbytes(v) for v in obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return sum(nbytes(getattr(obj, f.name)) for f in fields(obj))
    return 0


def format_bytes(n: float) -> str:
    """Bytes for a sentence: '3.2 GiB', '512.0 MiB', '97.7 KiB' (never '0.0 GiB')."""
    for unit, size in (("GiB", GIB), ("MiB", 2 ** 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 2 ** 10:.1f} KiB"


# ---------------------------------------------------------------- the cache

class ByteLRU:
    """A thread-safe least-recently-used cache bounded by the bytes of its values.

    get_or_compute runs one computation per key at a time (others asking for the same key wait for
    it and share the result), outside the cache-wide lock, so different keys compute in parallel.
    Values are shared by every caller: treat them as read-only.
    """

    def __init__(self, budget: int, sizeof: Callable[[object], int] = nbytes):
        self.budget = int(budget)
        self.sizeof = sizeof
        self._items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._items

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key, default=None):
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key, value) -> None:
        """Keep value (evicting the least recently used); a value larger than the budget is not kept."""
        size = self.sizeof(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if size > self.budget:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.budget:
                _, (_, freed) = self._items.popitem(last=False)
                self._bytes -= freed

    def pop(self, key, default=None):
        with self._lock:
            if key not in self._items:
                return default
            value, size = self._items.pop(key)
            self._bytes -= size
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def check_fits(self, need: int, what: str) -> None:
        """Raise MemoryBudgetError when `what` alone needs more than the whole budget."""
        if need > self.budget:
            raise MemoryBudgetError(f"{what} needs about {format_bytes(need)}, more than the whole cache budget of "
                                    f"{format_bytes(self.budget)} ({BUDGET_ENV}); choose a smaller size or raise it.")

    def get_or_compute(self, key, compute: Callable[[], object], estimate: int | None = None, what: str = "This"):
        """The cached value of key, computing it once with compute() when missing.

        estimate: bytes the value will need, checked against the budget before computing (see check_fits).
        """
        found = self.get(key, _MISSING)
        if found is not _MISSING:
            return found
        if estimate is not None:
            self.check_fits(estimate, what)
        with self._lock:
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:
            found = self.get(key, _MISSING)  # another caller may have finished it while we waited
            if found is not _MISSING:
                return found
            try:
                value = compute()
                self.put(key, value)
                return value
            finally:
                with self._lock:
                    if self._computing.get(key) is key_lock:
                        del self._computing[key]


_MISSING = object()
_SHARED: ByteLRU | None = None
_SHARED_GUARD = threading.Lock()


def shared_cache() -> ByteLRU:
    """The process's one byte-bounded cache (captures, images, attributions, scene sets), made on first use."""
    global _SHARED
    with _SHARED_GUARD:
        if _SHARED is None:
            _SHARED = ByteLRU(cache_budget())
        return _SHARED


# ---------------------------------------------------------------- running out

def is_out_of_memory(err: BaseException) -> bool:
    """CUDA out-of-memory, Python's MemoryError, or the CPU allocator's refusal (a RuntimeError)."""
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


def free_caches() -> None:
    """Empty the shared cache and give freed CUDA memory back to the driver."""
    shared_cache().clear()
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def out_of_memory_as_error(what: str):
    """Turn running out of memory inside the block into OutOfMemory (one sentence), after freeing the caches."""
    device = None
    try:
        yield
    except Exception as err:  # noqa: BLE001  (anything that is not running out of memory is re-raised as is)
        if not is_out_of_memory(err):
            raise
        device = "the GPU" if isinstance(err, torch.cuda.OutOfMemoryError) else "this machine"
    if device is not None:  # outside the except block: the failed frames (and their tensors) are gone
        free_caches()
        raise OutOfMemory(f"{what} ran out of memory on {device}; the caches were emptied, so try again "
                          f"with a lower resolution or fewer images.")

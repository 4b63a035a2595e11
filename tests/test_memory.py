"""memory.py: the budget from the machine, the byte-bounded LRU under threads, running out of memory in the app."""
from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from rope_viz.runtime import memory


def meminfo_kib(field: str) -> int:
    """The reference: /proc/meminfo read independently of memory.py."""
    for line in open("/proc/meminfo"):
        key, value = line.split(":")
        if key == field:
            return int(value.split()[0])
    raise KeyError(field)


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="needs /proc/meminfo to compare with")
def test_budget_default_is_a_quarter_of_total_ram(monkeypatch):
    monkeypatch.delenv(memory.BUDGET_ENV, raising=False)
    total = meminfo_kib("MemTotal") * 1024
    assert memory.total_memory() == total
    assert memory.total_memory() == pytest.approx(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), rel=0.05)
    assert memory.cache_budget() == int(total * 0.25)
    free = memory.available_memory("cpu")
    assert 0 < free <= total
    assert "25% of" in memory.describe_budget()


@pytest.mark.parametrize("text,expected", [("1048576", 1 << 20), ("6G", 6 << 30), ("512M", 512 << 20),
                                           ("1.5 GiB", 3 << 29), ("64k", 64 << 10)])
def test_budget_from_the_environment(monkeypatch, text, expected):
    monkeypatch.setenv(memory.BUDGET_ENV, text)
    assert memory.cache_budget() == expected
    assert memory.BUDGET_ENV in memory.describe_budget()


def test_bad_budget_names_the_accepted_forms(monkeypatch):
    monkeypatch.setenv(memory.BUDGET_ENV, "lots")
    with pytest.raises(ValueError, match="K/M/G/T suffix"):
        memory.cache_budget()


def test_unreadable_memory_says_so_and_uses_the_documented_default(monkeypatch, caplog):
    monkeypatch.delenv(memory.BUDGET_ENV, raising=False)
    monkeypatch.setattr(memory, "_meminfo", lambda field: None)
    monkeypatch.setattr(memory, "_sysconf", lambda name: None)
    assert memory.total_memory() is None and memory.available_memory("cpu") is None  # nothing invented
    with caplog.at_level(logging.WARNING, logger="rope_viz.memory"):
        assert memory.cache_budget() == memory.UNKNOWN_MEMORY_BUDGET == 2 << 30
    assert "Could not read this machine's memory" in caplog.text and memory.BUDGET_ENV in caplog.text


def test_nbytes_counts_tensors_arrays_and_modules():
    module = torch.nn.Linear(10, 4)  # 44 float32 parameters
    value = {"a": torch.zeros(3, 5), "b": [np.zeros(7, np.uint8), (torch.zeros(2, dtype=torch.float64),)],
             "m": module, "s": "x"}
    assert memory.nbytes(value) == 3 * 5 * 4 + 7 + 2 * 8 + 44 * 4 + 1


def test_lru_evicts_least_recently_used_by_bytes():
    cache = memory.ByteLRU(budget=100)
    for key in "abc":
        cache.put(key, np.zeros(30, np.uint8))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", np.zeros(30, np.uint8))  # 120 > 100: b goes
    assert "b" not in cache and {k for k in "acd" if k in cache} == set("acd") and cache.bytes == 90
    cache.put("big", np.zeros(101, np.uint8))  # larger than the whole budget: not kept, nothing evicted
    assert "big" not in cache and len(cache) == 3
    cache.put("e", np.zeros(80, np.uint8))
    assert [k for k in "acde" if k in cache] == ["e"] and cache.bytes == 80


def test_a_request_larger_than_the_budget_is_one_sentence_with_the_estimate():
    cache = memory.ByteLRU(budget=2 << 30)
    with pytest.raises(memory.MemoryBudgetError) as info:
        cache.get_or_compute("x", lambda: pytest.fail("must not compute"), estimate=3 << 30, what="A capture at 2048 px")
    message = str(info.value)
    assert message.startswith("A capture at 2048 px needs about 3.0 GiB") and "2.0 GiB" in message
    assert message.count(".") == 3 and memory.BUDGET_ENV in message  # one sentence (two decimal points)


def test_eight_threads_asking_for_one_key_compute_it_once():
    cache = memory.ByteLRU(budget=1 << 20)
    calls, barrier, results = [], threading.Barrier(8), [None] * 8

    def compute():
        calls.append(1)
        threading.Event().wait(0.2)  # slow enough that every thread asks while it runs
        return np.arange(10)

    def work(i):
        barrier.wait()
        results[i] = cache.get_or_compute("scene", compute)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(calls) == 1 and all(r is results[0] for r in results)


def test_different_keys_compute_in_parallel_and_errors_are_not_cached():
    cache = memory.ByteLRU(budget=1 << 20)
    inside = threading.Barrier(4, timeout=10)  # breaks if the computations ran one at a time

    def compute(i):
        inside.wait()
        return np.full(4, i)

    threads = [threading.Thread(target=cache.get_or_compute, args=(i, lambda i=i: compute(i))) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert [int(cache.get(i)[0]) for i in range(4)] == [0, 1, 2, 3]
    with pytest.raises(KeyError):
        cache.get_or_compute("bad", lambda: {}["missing"])
    assert "bad" not in cache and cache.get_or_compute("bad", lambda: np.zeros(1)) is not None


def test_concurrent_puts_and_evictions_keep_the_books():
    cache = memory.ByteLRU(budget=1000)
    errors = []

    def work(i):
        try:
            for j in range(300):
                cache.put((i, j % 17), np.zeros(37 + j % 50, np.uint8))
                cache.get((7 - i, j % 13))
                cache.get_or_compute((i % 3, j % 5), lambda: np.zeros(90, np.uint8))
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    kept = [cache.get(k) for k in list(cache._items)]
    assert cache.bytes == sum(v.nbytes for v in kept) <= 1000


def test_out_of_memory_becomes_one_sentence_and_frees_the_cache():
    shared = memory.shared_cache()
    shared.put("kept", np.zeros(8))
    with pytest.raises(memory.OutOfMemory, match=r"^Capturing x at 2048 px ran out of memory on the GPU; the caches"):
        with memory.out_of_memory_as_error("Capturing x at 2048 px"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
    assert len(shared) == 0
    with pytest.raises(memory.OutOfMemory, match="on this machine"):
        with memory.out_of_memory_as_error("Sweeping"):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    with pytest.raises(RuntimeError, match="shape mismatch"):  # a bug stays a bug
        with memory.out_of_memory_as_error("Sweeping"):
            raise RuntimeError("shape mismatch")


# ---------------------------------------------------------------- in the app

@pytest.fixture
def attention_page(bundled_dir, monkeypatch):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(bundled_dir))
    from rope_viz.app import cached

    cached.get_available_models.clear()
    memory.shared_cache().clear()
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.run()
    at.switch_page("pages/attention.py")
    return at


def test_cuda_out_of_memory_in_the_app_is_one_sentence_and_the_app_keeps_running(attention_page, monkeypatch):
    from timm.models.eva import Eva

    forward = Eva.forward_features
    calls = []

    def out_of_memory(self, x, **kwargs):
        calls.append(x.shape)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

    monkeypatch.setattr(Eva, "forward_features", out_of_memory)
    memory.shared_cache().put("old capture", np.zeros(1000))
    at = attention_page.run()
    assert not at.exception and calls, at.exception
    assert "ran out of memory on the GPU; the caches were emptied" in at.error[0].value
    assert "old capture" not in memory.shared_cache()
    monkeypatch.setattr(Eva, "forward_features", forward)
    at.number_input(key="att_res").set_value(40).run()  # the user carries on
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == 2  # distance, entropy
    assert any(e.key == "att_explorer" for e in at.get("bidi_component"))  # and the maps, in the browser


def test_a_capture_larger_than_the_budget_is_one_sentence_in_the_app(attention_page, monkeypatch):
    monkeypatch.setattr(memory.shared_cache(), "budget", 50 * 1024)
    at = attention_page.run()  # 32 px: 2 x (2 layers x 17 tokens x 32 features) x 4 bytes = 8.5 KiB of q and k
    assert not at.exception and not at.error
    at.number_input(key="att_res").set_value(128).run()  # 257 tokens: 128.5 KiB
    assert not at.exception
    assert at.error[0].value.endswith("A capture of tiny-ape at 128 px needs about 128.5 KiB, more than the whole "
                                      "cache budget of 50.0 KiB (ROPE_VIZ_CACHE_BYTES); choose a smaller size or "
                                      "raise it.")
    at.number_input(key="att_res").set_value(32).run()
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == 2  # distance, entropy
    assert any(e.key == "att_explorer" for e in at.get("bidi_component"))  # and the maps, in the browser

"""Eight real browser sessions at once on one server: every number equals the serial run (bench/load.py drives them)."""
from __future__ import annotations

import sys
import time

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import load  # noqa: E402  (bench/load.py: the same sessions the load benchmark times)

pytestmark = pytest.mark.browser
SESSIONS = 8


def test_eight_sessions_at_once_see_the_serial_numbers(streamlit_url, tmp_path):
    started = time.perf_counter()
    reference = load.serial_reference(SESSIONS)
    print(f"serial reference {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    results = load.drive_sessions(streamlit_url, SESSIONS, tmp_path)
    seconds = time.perf_counter() - started
    for session, (got, _) in enumerate(results):
        load.compare(session, got, reference)  # raises on any number that differs, or an error box
    assert load.server_up(streamlit_url)
    print(f"{SESSIONS} sessions in {seconds:.1f} s")

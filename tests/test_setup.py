"""The README's `make test` does its own set-up: Debian's chromium for the browser tests."""
from __future__ import annotations

import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_browser(tmp_path: Path, user_id: int, chromium: Path) -> subprocess.CompletedProcess:
    """`make browser` with a stand-in apt-get that logs its arguments and 'installs' `chromium`."""
    apt = tmp_path / "apt-get"
    log = tmp_path / "apt.log"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {log}\n'
                   f'if [ "$1" = install ]; then printf "#!/bin/sh\\n" > {chromium}; chmod +x {chromium}; fi\n')
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    return subprocess.run(["make", "-s", "-C", str(ROOT), "browser", f"CHROMIUM={chromium}", f"APT_GET={apt}",
                           f"USER_ID={user_id}"], capture_output=True, text=True, timeout=60)


def test_root_installs_missing_chromium_with_apt(tmp_path):
    chromium = tmp_path / "chromium"
    out = make_browser(tmp_path, 0, chromium)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "apt.log").read_text().splitlines() == ["update -q", "install -y -q chromium"]
    assert chromium.exists()


def test_non_root_without_chromium_gets_the_command(tmp_path):
    out = make_browser(tmp_path, 1000, tmp_path / "chromium")
    assert out.returncode != 0 and not (tmp_path / "apt.log").exists()
    first = out.stderr.splitlines()[0]
    assert first == (f"The browser tests need Debian's chromium at {tmp_path / 'chromium'}: run "
                     "'sudo apt-get update && sudo apt-get install -y chromium', then make test again.")


def test_present_chromium_installs_nothing(tmp_path):
    chromium = tmp_path / "chromium"
    chromium.write_text("#!/bin/sh\n")
    chromium.chmod(0o755)
    out = make_browser(tmp_path, 0, chromium)
    assert out.returncode == 0 and out.stdout == "" and not (tmp_path / "apt.log").exists()


def test_test_target_depends_on_browser_and_ci_only_calls_make_test():
    makefile = (ROOT / "Makefile").read_text()
    assert "\ntest: install browser\n" in makefile
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test" and not any(word in ("apt-get", "pip", "pip3") for line in ci for word in line.split())

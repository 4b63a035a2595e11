# rope-viz: `make app` serves the app, `make test` runs every test (`make test-fast` all but the browser
# and load tests), `make bench` the benchmarks.
# The virtual environment is created once in .venv and reused; it is rebuilt when the requirements change.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
HOST   ?= 127.0.0.1
# The browser tests drive Debian's chromium. `make test` installs it when it is missing and we are
# root (as CI is); anyone else gets the one command to run. Overridable so the check itself is tested.
CHROMIUM ?= $(or $(shell command -v chromium 2>/dev/null),/usr/bin/chromium)
APT_GET  ?= apt-get
USER_ID  ?= $(shell id -u)

.PHONY: app test test-fast bench install clean models browser

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

app: install
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT)

browser:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$(USER_ID)" = 0 ]; then \
	  echo "Installing Debian's chromium for the browser tests (apt-get)."; \
	  DEBIAN_FRONTEND=noninteractive $(APT_GET) update -q && \
	  DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -q chromium && [ -x "$(CHROMIUM)" ] || \
	  { echo "Could not install chromium with apt-get; install it with 'apt-get install chromium' and run make test again." >&2; exit 1; }; \
	else \
	  echo "The browser tests need Debian's chromium at $(CHROMIUM): run 'sudo apt-get update && sudo apt-get install -y chromium', then make test again." >&2; \
	  exit 1; \
	fi

test: install browser
	PYTHONPATH=$(CURDIR) $(PY) -m pytest

# The inner loop: the library and unit tests (not the browser, load, AppTest page or whole-pipeline tests).
test-fast: install
	PYTHONPATH=$(CURDIR) $(PY) -m pytest -m "not browser and not slow" -q

bench: install
	PYTHONPATH=$(CURDIR) $(PY) bench/rope_math.py
	PYTHONPATH=$(CURDIR) $(PY) bench/attention.py
	PYTHONPATH=$(CURDIR) $(PY) bench/sweep.py
	PYTHONPATH=$(CURDIR) $(PY) bench/attribution.py
	PYTHONPATH=$(CURDIR) $(PY) bench/ig_steps.py
	PYTHONPATH=$(CURDIR) $(PY) bench/interaction.py
	PYTHONPATH=$(CURDIR) $(PY) bench/load.py
	PYTHONPATH=$(CURDIR) $(PY) bench/html_sizes.py
	PYTHONPATH=$(CURDIR) $(PY) bench/tower_capture.py

# Retrain the five bundled models with the shared recipe and measure their model cards (CPU: about 70 min).
KINDS := ape rope_axial rope_mixed rope_axial_ape rope_mixed_ape
models: install
	for pos in $(KINDS); do PYTHONPATH=$(CURDIR) $(PY) -m rope_viz train --pos $$pos --seed 0 || exit 1; done
	for pos in $(KINDS); do PYTHONPATH=$(CURDIR) $(PY) -m rope_viz eval --model scenes-$$(echo $$pos | tr _ -) --write || exit 1; done

clean:
	rm -rf $(VENV) tests/screenshots .pytest_cache

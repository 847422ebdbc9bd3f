# The two commands a newcomer needs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
OUT ?= out
WORKERS ?= 2

.PHONY: install demo test lint clean browser bubblewrap graphviz

$(BIN)/grader: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[tf,course,dev]'
	touch $@

install: $(BIN)/grader graphviz

## demo: build the offline asset kit (once), run the reference, grade submissions/ into out/
demo: install
	$(BIN)/grader assets build
	$(BIN)/grader grade submissions --rubric rubrics/transfer_learning.toml --out $(OUT) --quick --workers $(WORKERS)
	@echo "Class page:  $(OUT)/index.html"
	@echo "Spreadsheets: $(OUT)/grades.csv $(OUT)/grades.xlsx $(OUT)/canvas.csv"
	@echo "Feedback zips: grader feedback $(OUT)"
	@echo "Reports:     $(OUT)/reports/"

## browser: Debian's chromium for the browser test (installed with apt when missing)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing chromium (apt) for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

## graphviz: Graphviz's dot, which the tutorial's plot_model cell needs (apt when missing)
graphviz:
	@command -v dot >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
	  { echo "installing graphviz (apt) for notebooks that draw their model"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz; } || \
	    echo "graphviz could not be installed: plot_model cells will fail"; }

## bubblewrap: Debian's bubblewrap for the ordinary user's sandbox test (apt when missing)
bubblewrap:
	@command -v bwrap >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
	  { echo "installing bubblewrap (apt) for the sandbox tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; } || \
	    echo "bubblewrap could not be installed: its tests are skipped"; }

## test: lint, fast tests, then kernel tests (real kernels, real TensorFlow, a real browser)
test: install lint browser bubblewrap
	$(BIN)/pytest -q -m "not kernel"
	$(BIN)/pytest -q -m kernel --durations=15

lint: install
	$(BIN)/ruff check grader tests bench

clean:
	rm -rf $(OUT) .pytest_cache

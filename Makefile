# The course's commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch's build: auto (CUDA where nvidia-smi works, else CPU), cpu or cuda. See tools/install.py.
# No OMP_NUM_THREADS needed: importing the package gives torch one thread (common.py, use_default_threads).
TORCH  ?= auto

.PHONY: FORCE help setup book test grade report assignment student autograder outline rubric batch-grade mutants browser-check screenshot clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(VENV)/.installed  ## create .venv and install requirements.txt (make setup TORCH=cpu|cuda to choose torch)

# TORCH=... on the command line runs the installer again: it replaces torch if the build differs.
ifeq ($(origin TORCH),command line)
$(VENV)/.installed: FORCE
endif
$(VENV)/.installed: requirements.txt tools/install.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python tools/install.py --torch $(TORCH)
	touch $@

FORCE:

book: setup  ## build the instructor's book into _build/html (warnings are errors)
	$(BIN)/jupyter-book build book/ -W -n --keep-going

# The notebooks run twice: on this CPU's own kernels, and on torch's and MKL's portable ones (the
# same code path on every x86 CPU), so that no saved output depends on the machine that made it.
PORTABLE_KERNELS := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE

test: setup  ## the project's own tests (full points on solutions, zero on the stubs, no drift), nbval twice
	$(BIN)/python -m pytest tests/project book --nbval --nbval-current-env
	$(PORTABLE_KERNELS) $(BIN)/python -m pytest book --nbval --nbval-current-env -p no:cacheprovider

grade: setup  ## grade your own assignment/ package (writes results.json)
	$(BIN)/python -m pytest tests/graded --impl=assignment --results=results.json

report: setup  ## the answer sheets (book/answers/part*.ipynb) printed to report.pdf for manual grading (needs chromium)
	$(BIN)/python -m tools.report --out report.pdf

mutants: setup  ## the graded tests against the catalogue of mistakes and correct alternatives (tests/mutants)
	$(BIN)/python -m tools.mutants --out mutants.json

assignment: setup  ## regenerate assignment/ from solutions/ (instructors only)
	$(BIN)/python -m tools.make_assignment

student: setup  ## the student edition in dist/student: stubs, public tests, the book without solutions
	$(BIN)/python -m tools.release --out dist/student

autograder: setup  ## the Gradescope autograder zip, dist/autograder.zip (graded and hidden tests)
	$(BIN)/python -m grader.bundle --out dist/autograder.zip

outline: setup  ## the hand-graded questions and rubric items for Gradescope: dist/gradescope-outline.md and .json
	$(BIN)/python -m tools.rubric outline --out dist/gradescope-outline.md

rubric: setup  ## after editing rubric.toml: rewrite the answer sheets and rubric pages, check the tests and the book against it
	$(BIN)/python -m tools.rubric write
	$(BIN)/python -m tools.rubric check

SUBMISSIONS ?= submissions
BATCH_ARGS  ?=
batch-grade: setup  ## grade every folder or zip in SUBMISSIONS=... into scores.csv (BATCH_ARGS="--jobs 2" ...)
	$(BIN)/python -m grader.batch $(SUBMISSIONS) --out scores.csv $(BATCH_ARGS)

browser-check: book  ## open the built book in headless Chromium: equations typeset offline, figures load, nothing overflows at 1366 px
	$(BIN)/python -m tools.browser_check _build/html

screenshot: book  ## the same check, and a new docs/screenshot-part1.png (replaces the committed one: commit it only on purpose)
	$(BIN)/python -m tools.browser_check _build/html --screenshot docs/screenshot-part1.png

clean:  ## remove the built book and caches (keeps .venv)
	rm -rf _build .pytest_cache results.json mutants.json report.pdf dist

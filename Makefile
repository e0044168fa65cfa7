# The course's commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Torch on two cores: one thread per process keeps parallel runs from slowing each other down.
export OMP_NUM_THREADS ?= 1

.PHONY: help setup book test grade assignment student autograder batch-grade browser-check clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(VENV)/.installed  ## create .venv and install requirements.txt

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

book: setup  ## build the instructor's book into _build/html (warnings are errors)
	$(BIN)/jupyter-book build book/ -W -n --keep-going

test: setup  ## the project's own tests: full points on solutions, zero on the stubs, no drift, nbval
	$(BIN)/python -m pytest tests/project book --nbval --nbval-current-env

grade: setup  ## grade your own assignment/ package (writes results.json)
	$(BIN)/python -m pytest tests/graded --impl=assignment --results=results.json

assignment: setup  ## regenerate assignment/ from solutions/ (instructors only)
	$(BIN)/python -m tools.make_assignment

student: setup  ## the student edition in dist/student: stubs, public tests, the book without solutions
	$(BIN)/python -m tools.release --out dist/student

autograder: setup  ## the Gradescope autograder zip, dist/autograder.zip (graded and hidden tests)
	$(BIN)/python -m tools.autograder --out dist/autograder.zip

SUBMISSIONS ?= submissions
batch-grade: setup  ## grade every folder or zip in SUBMISSIONS=... into scores.csv
	$(BIN)/python -m tools.batch_grade $(SUBMISSIONS) --out scores.csv

browser-check: book  ## open the built book in headless Chromium: equations typeset offline, figures load
	$(BIN)/python -m tools.browser_check _build/html --screenshot docs/screenshot-part1.png

clean:  ## remove the built book and caches (keeps .venv)
	rm -rf _build .pytest_cache results.json dist

"""The graded tests against the catalogue of student mistakes and correct alternatives (tests/mutants):
every mistake loses points, every alternative keeps them all (tools/mutants.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from tools.mutants import ROOT, load_catalogue, uncovered

MIN_MUTANTS, MIN_ALTERNATIVES = 120, 20


def test_the_catalogue_applies_and_covers_every_solution_region():
    entries = load_catalogue()  # raises on a stale edit, a duplicate id or a missing field
    kinds = Counter(e.kind for e in entries)
    assert kinds["mutant"] >= MIN_MUTANTS and kinds["alternative"] >= MIN_ALTERNATIVES, kinds
    assert uncovered(entries) == [], "solution regions that no mutant edits"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_mistake_loses_points_and_every_alternative_keeps_them(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tools.mutants", "--jobs", "2", "--out", str(tmp_path / "m.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=3500)
    summary = [line for line in done.stdout.splitlines() if "mutants killed" in line or line.startswith("DEFECT")]
    print("\n".join(summary))
    assert done.returncode == 0, "\n".join(summary) or done.stderr[-2000:]
    outcomes = json.loads((tmp_path / "m.json").read_text())
    assert len(outcomes) == len(load_catalogue())

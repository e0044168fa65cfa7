"""The hidden tests: the autograder adds them to the graded ones; a failure points to the same chapters."""
from tests.graded import CHAPTERS  # noqa: F401 (read by the grader, grader/report.py)

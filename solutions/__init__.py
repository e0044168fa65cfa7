"""The code of the course "Recurrent Neural Networks and Graph Neural Networks": part1, part2, part3."""
### BEGIN INSTRUCTOR
# The reference solutions. The student package `assignment` is generated from this one by
# `python -m tools.make_assignment`, with every solution region replaced by a stub.
### END INSTRUCTOR
from .common import use_default_threads

use_default_threads()  # one torch thread unless $OMP_NUM_THREADS says otherwise (see common.py)

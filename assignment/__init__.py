"""The code of the course "Recurrent Neural Networks and Graph Neural Networks": part1, part2, part3."""
from .common import use_default_threads

use_default_threads()  # one torch thread unless $OMP_NUM_THREADS says otherwise (see common.py)

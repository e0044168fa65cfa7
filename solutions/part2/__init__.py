"""Part 2: a stacked character LSTM as a generative model of text.

- ``books``: download (or copy from a mirror folder) the three books, sha256-checked and cached.
- ``dataset``: ``TextDataset``, ``seq_length``-character pieces of a book and their next-character targets.
- ``model``: ``TextGenerationModel``, the stacked LSTM (you write it, Question 2.1 (a)).
- ``sampling``: greedy and temperature sampling, generation that carries the state (2.1 (b), (c), 2.2).
- ``train``: the training command ``python -m solutions.part2.train --book sherlock_holmes``.
"""

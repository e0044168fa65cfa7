"""The graded tests. ``CHAPTERS``: for each graded question, the chapter of the book to re-read when one
of its tests fails (the chapter's title, as its page shows it). The grader adds it to every failure."""
CHAPTERS = {
    "1.1": "1.1 Gradients of the vanilla RNN",
    "1.2": "1.2 The vanilla RNN and gradient clipping",
    "1.3": "1.3 and 1.6 Accuracy against input length",
    "1.4": "1.4 Momentum, RMSprop and Adam",
    "1.5": "1.5 The gates of the LSTM and its parameter count",
    "1.6": "1.5 The gates of the LSTM and its parameter count",
    "2.1 (a)": "2.1 A character-level LSTM on three books",
    "2.1 (b)": "2.1 A character-level LSTM on three books",
    "2.1 (c)": "2.1 A character-level LSTM on three books",
    "2.2": "2.2 Writing text of any length",
    "3.1 (a)": "3.1 (a) The GCN layer as message passing",
    "3.1 (b)": "3.1 (b) How many layers for 3 hops? A measurement",
    "3.3 (a)": "3.3 RNNs and GNNs",
}

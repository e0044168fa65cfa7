"""Part 1: vanilla RNN versus LSTM on palindrome memorisation."""

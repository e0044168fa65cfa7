"""Part 3: graph neural networks (the GCN of Kipf and Welling, from scratch)."""

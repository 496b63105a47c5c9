"""Dogs vs. Cats and transfer-learning benchmarks: datasets, HDF5 storage, splits, submissions."""

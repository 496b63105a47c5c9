"""Session fixtures with the real datasets in ../shared built once by the data stage."""

"""Demo: a procedurally generated dataset and a small model to build an atlas from."""

"""Training on Hangar columns with PyTorch: the bulk loader (`loader`); the built-in train and
evaluate stages are in `hangar_pipe.stages`."""

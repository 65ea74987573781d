"""Course 2 week 1, regularisation, on the football data:
``python -m experiments.course2_regularization.study``."""

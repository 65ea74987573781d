"""Course 1 week 4 on cat vs non-cat: ``python -m experiments.course1_week4.study``."""

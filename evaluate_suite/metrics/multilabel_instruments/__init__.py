"""Folder of the local `evaluate` module `multilabel_instruments`: load it with `evaluate_suite.metrics.load_metric("multilabel_instruments")`.

This file only makes the folder a regular package so that setuptools ships it without warnings.
"""

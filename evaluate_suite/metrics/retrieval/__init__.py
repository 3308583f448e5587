"""Folder of the local `evaluate` module `retrieval`: load it with `evaluate_suite.metrics.load_metric("retrieval")`.

This file only makes the folder a regular package so that setuptools ships it without warnings.
"""

"""Folder of the local `evaluate` module `video_phase`: load it with `evaluate_suite.metrics.load_metric("video_phase")`.

This file only makes the folder a regular package so that setuptools ships it without warnings.
"""

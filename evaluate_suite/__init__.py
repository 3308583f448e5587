"""evaluate_suite: see the README; filled in by its own issue."""

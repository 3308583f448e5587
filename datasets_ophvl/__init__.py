"""datasets_ophvl: see the README; filled in by its own issue."""

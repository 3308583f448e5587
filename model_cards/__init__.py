"""model_cards: see the README; filled in by its own issue."""

"""Training recipes: each one linear script, run by ``val-probing train run NAME`` or directly."""

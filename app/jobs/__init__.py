"""RQ job functions: thin, importable, taking ids and dates only."""

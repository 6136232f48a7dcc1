"""Camera registry, stream probing, picture diagnosis and the spatial camera index (issue 6)."""

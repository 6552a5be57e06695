"""magicore.graphs."""

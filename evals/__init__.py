"""magicore.evals."""

"""magicore.agents."""

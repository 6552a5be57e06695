"""magicore.tools."""

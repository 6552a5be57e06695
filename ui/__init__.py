"""magicore.ui."""

"""The Streamlit chat app (`magicore ui`): `main.py` is the script Streamlit runs; the other
modules are its parts (docs/ui.md has the table). Nothing here imports Streamlit on import of
the package itself."""

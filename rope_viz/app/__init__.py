"""The Streamlit side: cached wrappers, figures, browser components and URL state (the only Streamlit importer)."""

"""The bundled models' training recipe and their model cards."""

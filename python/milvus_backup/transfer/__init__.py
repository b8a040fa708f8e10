"""Moving objects: copy planning in Python, the engine's runs, and progress display."""

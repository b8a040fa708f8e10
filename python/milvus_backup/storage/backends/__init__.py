"""Built-in storage backends, each a plugin module registered like a third-party one."""

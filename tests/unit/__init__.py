"""Fast tests: planners and pure logic on ``memory://`` and ``file://``, no servers.

``pytest tests/unit`` runs them alone in seconds. A package, so that its modules may share
names with the slower test files beside it (``unit.test_verify`` and ``test_verify``)."""

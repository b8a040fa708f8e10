"""The contract server as pytest fixtures; a test module asks for them with::

    pytest_plugins = ["milvus_contract.fixtures"]

``contract_server`` starts once per session (an in-process gRPC server and an HTTP server,
well under a second); ``contract`` hands each test that server reset to a fresh cluster of
the default profile (2.6.11), an empty request log and no faults: ``contract.reset(profile)``
picks another line.
"""

from __future__ import annotations

import pytest

from .profiles import DEFAULT
from .server import ContractServer


@pytest.fixture(scope="session")
def contract_server():
    with ContractServer() as server:
        yield server


@pytest.fixture
def contract(contract_server: ContractServer) -> ContractServer:
    contract_server.reset(DEFAULT)
    return contract_server

import pytest


@pytest.fixture
def client(agent):
    with agent.client() as c:
        yield c

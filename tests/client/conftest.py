"""One gateway (file store, local tickets) shared by the client tests that talk to one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.client.state import StateFile
from gateway.client.tus import TIMEOUT, Tus
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway


@pytest.fixture(scope="module")
def client_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("client-gw")
    proc = start_gateway(workdir, gateway_env(workdir))
    yield proc
    proc.kill()


@pytest.fixture
def tus(client_gateway: GatewayProcess) -> Iterator[Tus]:
    """The tus endpoint of a fresh link, two retries."""
    with httpx.Client(timeout=TIMEOUT) as client:
        yield Tus(client, client_gateway.link("777"), retries=2)


@pytest.fixture
def states(tmp_path_factory: pytest.TempPathFactory) -> StateFile:
    return StateFile(tmp_path_factory.mktemp("state"))

import socket

import pytest


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run offline: opening a connection fails as it does on a machine with no network."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("CNNVIT_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

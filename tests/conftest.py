import socket

import pytest
import torch

from cnnvit.models import build


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
                ) -> None:
    """Tests run offline: opening a connection fails as it does on a machine with no network.
    cnnvit's cache (md5 sums of data files) goes to a temporary folder, never the user's."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("CNNVIT_DATA", raising=False)
    monkeypatch.setenv("CNNVIT_CACHE", str(tmp_path_factory.getbasetemp() / "cnnvit-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Small models on a shared 2-CPU machine: one intra-op thread avoids oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vit28():
    """An untrained `vit-small-input` for 28 px RGB inputs (4×4 patches, 7×7 grid)."""
    torch.manual_seed(0)
    return build("vit-small-input", 3, in_chans=3, image_size=28)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory: pytest.TempPathFactory):
    """One real `cnnvit run --preset quickstart` (2 CNN epochs, a one-block ViT, a small explain
    stage), made once per session and shared by the tests that read a finished run. Tests must
    not modify it: copy it first (`shutil.copytree`)."""
    from cnnvit.cli import main

    out = tmp_path_factory.mktemp("quick") / "run"
    threads = torch.get_num_threads()
    code = main(["run", "--preset", "quickstart", "--epochs", "2", "--quiet", "--threads", "1",
                 "--set", "vit-small-input.model_kwargs=width=32,depth=1,heads=2",
                 "--set", "vit-small-input.epochs=6",  # the tiny ViT needs them to learn
                 "--per-class", "1", "--include-errors", "1", "--out", str(out)])
    torch.set_num_threads(threads)
    assert code == 0
    return out

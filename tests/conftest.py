"""Test configuration shared by the whole suite."""

import sys
from pathlib import Path
from typing import NamedTuple

import pytest


TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

# Test helper modules (e.g. `remote_code`) are imported by plain name: `from remote_code import run_without_project`.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

# The project is normally installed (`pip install -e ".[test]"`, see the Makefile). Appending the repository root
# keeps the suite runnable from a checkout without that install; an installed copy still takes precedence.
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))


# -- the loopback fake Hub (tests/fake_hub.py) ------------------------------------------------------------------------

class FakeHubSession(NamedTuple):
    """What the `fake_hub` fixture yields: `endpoint, env, hub = fake_hub`."""

    endpoint: str  # http://127.0.0.1:<port>
    env: dict  # environment for a child process (HF_ENDPOINT, HF_TOKEN, HF_HUB_DISABLE_XET, a fresh cache, ...)
    hub: object  # the running `fake_hub.FakeHub` (failure injection, stored repositories, request log)


def _point_clients_at(monkeypatch, env: dict) -> None:
    """Point this process's huggingface_hub / datasets at the fake Hub: the environment, plus the module constants
    they read once at import time."""
    from huggingface_hub import HfFileSystem, constants

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    endpoint = env["HF_ENDPOINT"]
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    try:
        import datasets.config as datasets_config
    except ImportError:
        datasets_config = None
    if datasets_config is not None:
        monkeypatch.setattr(datasets_config, "HF_ENDPOINT", endpoint)
        monkeypatch.setattr(datasets_config, "HUB_DATASETS_URL", endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}")
        monkeypatch.setattr(datasets_config, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(datasets_config, "HF_DATASETS_CACHE", Path(env["HF_DATASETS_CACHE"]))
    HfFileSystem.clear_instance_cache()  # cached instances keep the endpoint they were made with


@pytest.fixture
def fake_hub(tmp_path_factory, monkeypatch):
    """A fake Hub on 127.0.0.1 (tests/fake_hub.py) for one test; this process's clients point at it.

    Yields `FakeHubSession(endpoint, env, hub)`; pass `env` to child processes (with `run_without_project`, as
    `env_extra`: it overrides that helper's offline default). The server stops when the test ends, or after 300 s.
    """
    from fake_hub import FakeHub

    root = tmp_path_factory.mktemp("fake_hub")
    with FakeHub(root / "server", ttl=300, quiet=True) as hub:
        env = hub.env(cache_dir=root / "client_cache")
        _point_clients_at(monkeypatch, env)
        yield FakeHubSession(hub.endpoint, env, hub)
        from huggingface_hub import HfFileSystem

        HfFileSystem.clear_instance_cache()
        assert not hub.unhandled, f"the fake Hub got requests it does not implement: {hub.unhandled}"

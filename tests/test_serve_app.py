"""The app in process (Starlette's TestClient): what a real server rarely shows on demand — no index,
shutting down, dimensions, settings, the schema command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from koe5.serve import Settings, create_app

OPENAPI = Path(__file__).parents[1] / "docs" / "openapi.json"


def test_no_index_and_shutting_down(tiny):
    with TestClient(create_app(tiny)) as client:
        r = client.post("/search", json={"query": "서울"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_index"
        assert client.get("/health").json()["index"] is None
        client.app.state.batcher.close()  # what the lifespan does once uvicorn has drained
        r = client.post("/embed", json={"inputs": "서울"})
        assert r.status_code == 503
        assert r.json()["code"] == "shutting_down" and r.json()["error_type"] == "unhealthy"
        r = client.post("/v1/embeddings", json={"input": "서울"})
        assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable_error"
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "draining"


def test_dimensions_truncate_and_renormalise_when_allowed(tiny, sample_texts):
    with TestClient(create_app(tiny, settings=Settings(allow_dimensions=True))) as client:
        full = tiny.encode_passages(sample_texts[:2])
        r = client.post("/v1/embeddings", json={"input": sample_texts[:2], "dimensions": 64})
        short = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
        expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
        np.testing.assert_allclose(short, expected, atol=2e-5)
        tei = client.post("/embed", json={"inputs": sample_texts[:2], "dimensions": 64}).json()
        np.testing.assert_allclose(np.array(tei), expected, atol=2e-5)
        assert client.post("/embed", json={"inputs": "x", "dimensions": tiny.dim}).status_code == 200
        assert client.post("/embed", json={"inputs": "x", "dimensions": tiny.dim + 1}).status_code == 422


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_inputs"):
        Settings(max_inputs=0)
    with pytest.raises(ValueError) as bad_key:
        Settings(api_key="비밀 key")
    assert "비밀" not in str(bad_key.value)
    assert Settings(batch_wait_ms=0).batch_wait_ms == 0
    assert "s3cret" not in repr(Settings(api_key="s3cret"))


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("KOE5_API_KEY", "from-env")
    assert Settings.from_env(max_queue=3).api_key == "from-env"
    monkeypatch.delenv("KOE5_API_KEY")
    assert Settings.from_env().api_key is None


def test_the_schema_command_prints_the_committed_schema():
    from typer.testing import CliRunner

    from koe5.cli import app

    result = CliRunner().invoke(app, ["serve", "--openapi"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(OPENAPI.read_text(encoding="utf-8"))

"""Publishing to the Hub, against a small stand-in for the Hub's endpoints on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import fixture_texts, tiny_config, write_jsonl

from qlora_gui.cli import main


class StandIn(BaseHTTPRequestHandler):
    """What huggingface_hub calls to create a repository and commit files to it (all as regular files)."""

    created: list[dict] = []
    committed: dict[str, bytes] = {}
    auth: list[str] = []
    validated: list[str] = []

    def _reply(self, payload: dict, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802  (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).auth.append(self.headers.get("Authorization", ""))
        if self.path == "/api/repos/create":
            request = json.loads(body)
            type(self).created.append(request)
            return self._reply({"url": f"http://{self.headers['Host']}/{request['organization']}/{request['name']}"})
        if self.path == "/api/validate-yaml":  # the model card's metadata
            type(self).validated.append(json.loads(body)["content"])
            return self._reply({"errors": [], "warnings": []})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self._reply(
                {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            )
        if "/commit/" in self.path:
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    type(self).committed[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            repo = self.path.split("/api/models/", 1)[1].split("/commit/", 1)[0]
            url = f"http://{self.headers['Host']}/{repo}/commit/{'0' * 40}"
            return self._reply({"commitUrl": url, "commitOid": "0" * 40, "pullRequestUrl": None})
        self._reply({"error": f"not in the stand-in: {self.path}"}, 404)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def hub(monkeypatch):
    import huggingface_hub.constants as constants

    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_standin")
    StandIn.created, StandIn.committed, StandIn.auth, StandIn.validated = [], {}, [], []
    yield StandIn
    server.shutdown()
    thread.join()


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_publish_a_peft_adapter_privately_with_a_model_card(tmp_path, demo_model, hub, capsys):
    from qlora_gui.core.train.trainer import Trainer

    rows = [{"prompt": t, "completion": "select name"} for t in fixture_texts(16, seed=4)]
    cfg = tiny_config(demo_model, write_jsonl(tmp_path / "pc.jsonl", rows), tmp_path / "run", iters=2)
    Trainer(cfg, lambda e: None).run()
    argv = ["export", str(tmp_path / "run"), "--format", "peft", "--out", str(tmp_path / "peft"), "--hub", "me/tiny"]
    assert main(argv) == 0, capsys.readouterr().err
    (created,) = hub.created
    assert created["name"] == "tiny" and created["organization"] == "me" and created["visibility"] == "private", created
    assert set(hub.committed) == {"README.md", "adapter_model.safetensors", "adapter_config.json"}
    assert hub.committed["adapter_config.json"] == (tmp_path / "peft" / "adapter_config.json").read_bytes()
    card = hub.committed["README.md"].decode()
    assert hub.validated == [card]
    assert "library_name: peft" in card and "QLoRA Studio" in card and "lora_parameters" in card
    assert "Validation loss: final" in card and "## Sample answers" in card
    assert all(a == "Bearer hf_standin" for a in hub.auth) and "Hugging Face Hub:" in capsys.readouterr().out


def test_publishing_without_a_token_says_how_to_log_in(tmp_path, demo_model, hub, monkeypatch, capsys):
    import huggingface_hub

    from qlora_gui.core.after.hub_upload import upload

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    from qlora_gui.core.errors import UserError

    with pytest.raises(UserError, match="hf auth login"):
        upload(tmp_path, "me/x")
    assert hub.created == []

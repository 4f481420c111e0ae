"""The README's model-server examples listen where ``make up`` does not: a reader who runs ``make up``
and then one of them gets no clash of ports."""

from __future__ import annotations

import re

from ashao_cli.config import UpSettings
from tests.helpers.tools import ROOT


def test_no_model_server_example_takes_a_port_of_make_up() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Running a worker on a GPU box") :]
    section = section[: section.index("\n## ", 1)]
    ports = [int(p) for p in re.findall(r"(?:--port |127\.0\.0\.1:)(\d+)", section)]
    assert len(ports) >= 5, ports  # vLLM, llama.cpp, Ollama, TGI (published and upstream), images
    defaults = (UpSettings.model_fields[f].default for f in ("http_addr", "grpc_addr"))
    taken = {int(addr.rpartition(":")[2]) for addr in defaults}
    assert taken == {8080, 50051}
    assert not taken & set(ports), ports

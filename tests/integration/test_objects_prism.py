"""Every operation of files, uploads, batches and stored chat completions, with the documented
parameters, through the gateway to Prism running OpenAI's own OpenAPI description
(tests/support/prism.py): Prism refuses (422) any request that does not match the description, so each
call answering 2xx went upstream as OpenAI documents it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway
from tests.support.prism import Prism
from tests.support.servers import LoopThread, start_gateway

ALICE = "sk-test-alice-key-0123456789"


@pytest.fixture(scope="module")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prism]:
    server = Prism(tmp_path_factory.mktemp("prism"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def gateway(loop_thread: LoopThread, prism: Prism, tmp_path: Path) -> Iterator[Gateway]:
    config = f"""
server: {{master_key: "{MASTER_KEY}"}}
logging: {{request_log: "off"}}
providers:
  prism: {{kind: openai, base_url: "{prism.url}", api_key: "sk-prism-0123456789"}}
models:
  mini: {{targets: [{{provider: prism, model: gpt-4o-mini}}]}}
keys:
  alice: {{secret: "{ALICE}"}}
"""
    runner, url = loop_thread.run(start_gateway(config, {}))
    yield Gateway(url, tmp_path / "none.log")
    loop_thread.run(runner.cleanup())


def test_every_operation_passes_through_as_the_description_says(gateway: Gateway) -> None:
    with (
        openai.OpenAI(base_url=gateway.v1, api_key=ALICE, max_retries=0) as alice,
        openai.OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0) as master,
    ):
        # Files, as the key that owns them.
        made = alice.files.create(
            file=("in.jsonl", io.BytesIO(b'{"custom_id": "a"}\n' * 1000)),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 3600},
        )
        alice.files.retrieve(made.id)
        alice.files.content(made.id).read()
        alice.files.list(purpose="batch", limit=5, order="asc", after="file-0")
        batch = alice.batches.create(
            input_file_id=made.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"run": "prism"},
            output_expires_after={"anchor": "created_at", "seconds": 7200},
        )
        alice.batches.retrieve(batch.id)
        alice.batches.list(after="batch_0", limit=3)
        alice.batches.cancel(batch.id)
        alice.files.delete(made.id)

        upload = alice.uploads.create(bytes=6, filename="a.jsonl", mime_type="text/jsonl", purpose="batch")
        part = alice.uploads.parts.create(upload.id, data=io.BytesIO(b"abcdef"))
        alice.uploads.complete(upload.id, part_ids=[part.id], md5="e80b5017098950fc58aad83c8c14978e")
        alice.uploads.cancel(upload.id)

        # Stored chat completions Prism made up: only the master key reaches those ids.
        master.chat.completions.list(
            model="gpt-4o-mini", metadata={"a": "b"}, after="c", limit=2, order="desc"
        )
        master.chat.completions.retrieve("chatcmpl-1")
        master.chat.completions.update("chatcmpl-1", metadata={"a": "c"})
        master.chat.completions.messages.list("chatcmpl-1", after="m", limit=2, order="asc")
        master.chat.completions.delete("chatcmpl-1")
        with pytest.raises(openai.NotFoundError):
            alice.chat.completions.retrieve("chatcmpl-1")

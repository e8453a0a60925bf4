"""The rest of OpenAI's surface through the gateway, with the official `openai` SDK against an
OpenAI-format upstream over real HTTP: legacy completions, moderations, images, audio, models,
and the cost header of each answer."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from gateway.accounting.pricing import load_price_file
from tests.conftest import MASTER_KEY, Gateway
from tests.support.servers import LoopThread, Upstream, start_gateway
from tests.support.surface_upstream import SPEECH_AUDIO

LIMITED_KEY = "sk-test-limited-key-0123456789"
MAX_BODY = 65536


@pytest.fixture
def surface(loop_thread: LoopThread, upstream: Upstream, tmp_path: Path) -> Iterator[Gateway]:
    log_path = tmp_path / "requests.log"
    config = f"""
server: {{master_key: "{MASTER_KEY}", max_body_bytes: {MAX_BODY}}}
logging: {{request_log: "{log_path}"}}
providers:
  up: {{kind: openai, base_url: "{upstream.url}", api_key: "{upstream.api_key}"}}
  claude: {{kind: anthropic, base_url: "{upstream.url}", api_key: "sk-ant-secret-0123456789"}}
models:
  instruct: {{targets: [{{provider: up, model: gpt-3.5-turbo-instruct}}]}}
  moderator: {{targets: [{{provider: up, model: omni-moderation-latest}}]}}
  painter: {{targets: [{{provider: up, model: dall-e-3}}]}}
  listener: {{targets: [{{provider: up, model: whisper-1}}]}}
  speaker: {{targets: [{{provider: up, model: tts-1}}]}}
  claude: {{targets: [{{provider: claude, model: claude-sonnet-4-5}}]}}
keys:
  limited: {{secret: "{LIMITED_KEY}", endpoints: [chat, audio], models: [listener, speaker, painter]}}
"""
    runner, url = loop_thread.run(start_gateway(config, {}))
    yield Gateway(url, log_path)
    while _CLIENTS:
        _CLIENTS.pop().close()
    loop_thread.run(runner.cleanup())


_CLIENTS: list[openai.OpenAI] = []


def client(gateway: Gateway, key: str = MASTER_KEY) -> openai.OpenAI:
    """An SDK client, closed when the test's gateway stops (its pooled sockets with it)."""
    made = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    _CLIENTS.append(made)
    return made


def _usd(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _price(model: str) -> dict[str, object]:
    price = load_price_file().kinds["openai"].models[model]
    return {"input": price.input, "output": price.output, "per_image": price.per_image}


def test_completions_plain_and_streamed_with_cost(surface: Gateway, upstream: Upstream) -> None:
    raw = client(surface).completions.with_raw_response.create(
        model="instruct", prompt="tell me", max_tokens=5
    )
    answer = raw.parse()
    assert answer.choices[0].text == "once upon"
    assert answer.model == "instruct"
    assert b'"model":"gpt-3.5-turbo-instruct"' in upstream.raw[-1][2]
    # 5 prompt tokens at $1.50/M and 3 completion tokens at $2.00/M: 7.5 + 6 = 13.5 -> 14 micro-USD.
    assert raw.headers["x-tollway-cost-usd"] == _usd(14)

    with httpx.stream(
        "POST",
        surface.v1 + "/completions",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={
            "model": "instruct",
            "prompt": "tell me",
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as streamed:
        text = b"".join(streamed.iter_bytes()).decode()
    assert '"text":"once"' in text and '"text":" upon"' in text
    assert '"usage":{"cost":0.000014,"prompt_tokens":5' in text  # the cost the header says too
    assert ": x-tollway-cost-usd=0.000014" in text

    chunks = list(client(surface).completions.create(model="instruct", prompt="tell me", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "once upon"
    assert all(c.usage is None for c in chunks)  # not asked for: the gateway's own usage chunk is hidden


def test_moderations_are_free(surface: Gateway, upstream: Upstream) -> None:
    raw = client(surface).moderations.with_raw_response.create(model="moderator", input="hello")
    assert raw.parse().results[0].flagged is False
    assert raw.headers["x-tollway-cost-usd"] == "0.000000"
    assert b'"model":"omni-moderation-latest"' in upstream.raw[-1][2]


def test_images_generate_priced_per_image(surface: Gateway, upstream: Upstream) -> None:
    raw = client(surface).images.with_raw_response.generate(
        model="painter", prompt="a fox", n=2, size="1024x1792", quality="hd"
    )
    assert raw.parse().data[0].b64_json == "aGVsbG8="
    per_image = _price("dall-e-3")["per_image"]
    assert isinstance(per_image, dict)
    assert raw.headers["x-tollway-cost-usd"] == _usd(2 * round(per_image["1024x1792/hd"] * 1_000_000))
    assert upstream.raw[-1][0] == "/v1/images/generations"


def _multipart_sent(upstream: Upstream, path: str) -> bytes:
    sent = [body for seen, _, body in upstream.raw if seen == path]
    assert sent
    return sent[-1]


def test_image_edit_upload_larger_than_the_body_limit_streams_through(
    surface: Gateway, upstream: Upstream
) -> None:
    image = os.urandom(3 * 1024 * 1024)  # far over max_body_bytes: not held whole
    raw = client(surface).images.with_raw_response.edit(
        model="painter", image=("fox.png", io.BytesIO(image), "image/png"), prompt="add a hat"
    )
    assert raw.status_code == 200
    body = _multipart_sent(upstream, "/v1/images/edits")
    assert image in body  # byte for byte
    assert b'name="model"\r\n\r\ndall-e-3\r\n' in body
    headers = upstream.raw[-1][1]
    assert int(headers["Content-Length"]) == len(body)
    assert raw.headers["x-tollway-cost-usd"] == _usd(40000)  # one 1024x1024 standard image


def test_transcription_upload_priced_by_seconds(surface: Gateway, upstream: Upstream) -> None:
    audio = os.urandom(2 * 1024 * 1024 + 17)
    raw = client(surface).audio.transcriptions.with_raw_response.create(
        model="listener", file=("talk.mp3", io.BytesIO(audio), "audio/mpeg")
    )
    assert raw.parse().text == "hello there"
    assert audio in _multipart_sent(upstream, "/v1/audio/transcriptions")
    assert raw.headers["x-tollway-cost-usd"] == _usd(12 * 100)  # 12 s at $0.0001 a second


def test_speech_is_streamed_back_as_audio(surface: Gateway, upstream: Upstream) -> None:
    with client(surface).audio.speech.with_streaming_response.create(
        model="speaker", voice="alloy", input="hello world"
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        assert response.headers.get("transfer-encoding") == "chunked"
        received = b"".join(response.iter_bytes())
    assert received == SPEECH_AUDIO  # no SSE trailer in the audio


def test_models_retrieve(surface: Gateway) -> None:
    model = client(surface).models.retrieve("painter")
    assert model.id == "painter" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as unknown:
        client(surface).models.retrieve("nope")
    with pytest.raises(openai.NotFoundError) as hidden:
        client(surface, LIMITED_KEY).models.retrieve("instruct")
    for refused, name in ((unknown, "nope"), (hidden, "instruct")):
        assert refused.value.message.endswith(
            f"the model '{name}' does not exist or you do not have access to it"
        )


def test_key_without_the_images_right_is_refused(surface: Gateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(surface, LIMITED_KEY).images.generate(model="painter", prompt="a fox")
    assert "may not use the images endpoint" in str(refused.value)


def test_unknown_and_unserved_paths_say_which(surface: Gateway) -> None:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    unknown = httpx.post(surface.v1 + "/no/such/thing", headers=headers, json={})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"].startswith(
        "POST /v1/no/such/thing is not an endpoint the gateway serves"
    )
    stores = httpx.get(surface.v1 + "/vector_stores", headers=headers)
    assert stores.status_code == 404
    assert "GET /v1/vector_stores is an OpenAI endpoint the gateway knows but does not serve" in stores.text


def test_a_provider_kind_that_cannot_serve_the_endpoint_is_a_400(surface: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(surface).images.generate(model="claude", prompt="a fox")
    message = str(refused.value)
    assert "/v1/images/generations" in message and "provider kind 'anthropic'" in message


def test_an_upload_without_a_model_is_a_400(surface: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        httpx_client = client(surface)
        httpx_client.post(
            "/audio/transcriptions",
            cast_to=object,
            body={"prompt": "x"},
            files=[("file", ("a.mp3", b"abc", "audio/mpeg"))],
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
    assert "model" in str(refused.value)

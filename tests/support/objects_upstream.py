"""An OpenAI-format upstream that keeps files, uploads, batches and stored chat completions as
the OpenAPI description says, in memory: uploads are kept as the raw bytes that came (checked
byte for byte by the tests), a batch finishes on its first retrieve (or poll) with an output file
whose lines carry the usage `USAGE` of each request of its input file."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from tests.support.servers import start_site

USAGE = {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200}
_encode = msgspec.json.encode


@dataclass
class ObjectsUpstream:
    url: str = ""
    api_key: str = "sk-objects-secret-0123456789abcdef"
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)  # file id -> the multipart body as received
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    parts: dict[str, list[bytes]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    completions: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, query
    auth: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}"


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encode(value), content_type="application/json")


def _missing(what: str) -> web.Response:
    return _json(
        {"error": {"message": f"No such {what}", "type": "invalid_request_error", "code": None}}, 404
    )


def _file_part(body: bytes, boundary: bytes) -> tuple[dict[str, str], bytes]:
    """The text fields and the file's bytes of a multipart body."""
    fields: dict[str, str] = {}
    content = b""
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, value = part[2:].partition(b"\r\n\r\n")
        value = value[:-2]
        name = re.search(rb'name="([^"]*)"', head)
        if b"filename=" in head:
            content = value
        elif name:
            fields[name.group(1).decode()] = value.decode()
    return fields, content


def _page(items: list[dict[str, Any]], request: web.Request) -> web.Response:
    after = request.query.get("after")
    limit = int(request.query.get("limit", "20"))
    ids = [item["id"] for item in items]
    start = ids.index(after) + 1 if after in ids else 0
    chosen = items[start : start + limit]
    return _json(
        {
            "object": "list",
            "data": chosen,
            "first_id": chosen[0]["id"] if chosen else None,
            "last_id": chosen[-1]["id"] if chosen else None,
            "has_more": start + limit < len(items),
        }
    )


def objects_app(state: ObjectsUpstream) -> web.Application:
    app = web.Application(client_max_size=64 << 20)

    @web.middleware
    async def note(request: web.Request, handler: Any) -> web.StreamResponse:
        state.seen.append((request.method, request.path, request.query_string))
        state.auth.append(request.headers.get("Authorization", ""))
        result: web.StreamResponse = await handler(request)
        return result

    app.middlewares.append(note)

    def add_file(purpose: str, filename: str, content: bytes) -> dict[str, Any]:
        file_id = state.new_id("file-")
        made = {"id": file_id, "object": "file", "bytes": len(content), "created_at": 1700000000}
        made |= {"filename": filename, "purpose": purpose, "status": "processed"}
        state.files[file_id] = made
        state.contents[file_id] = content
        return made

    async def create_file(request: web.Request) -> web.Response:
        body = await request.read()
        boundary = re.search(r"boundary=(\S+)", request.headers["Content-Type"])
        assert boundary is not None
        fields, content = _file_part(body, boundary.group(1).encode())
        made = add_file(fields.get("purpose", ""), "upload.jsonl", content)
        state.raw[made["id"]] = body
        return _json(made)

    async def list_files(request: web.Request) -> web.Response:
        purpose = request.query.get("purpose")
        return _page([f for f in state.files.values() if purpose in (None, f["purpose"])], request)

    async def one_file(request: web.Request) -> web.Response:
        found = state.files.get(request.match_info["id"])
        return _json(found) if found else _missing("file")

    async def delete_file(request: web.Request) -> web.Response:
        file_id = request.match_info["id"]
        if state.files.pop(file_id, None) is None:
            return _missing("file")
        return _json({"id": file_id, "object": "file", "deleted": True})

    async def content(request: web.Request) -> web.StreamResponse:
        data = state.contents.get(request.match_info["id"])
        if data is None:
            return _missing("file")
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(data)
        await response.prepare(request)
        for start in range(0, len(data), 65536):
            await response.write(data[start : start + 65536])
        await response.write_eof()
        return response

    async def create_upload(request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read())
        upload_id = state.new_id("upload_")
        made = {"id": upload_id, "object": "upload", "status": "pending", "file": None, **body}
        state.uploads[upload_id] = made
        state.parts[upload_id] = []
        return _json(made)

    async def add_part(request: web.Request) -> web.Response:
        upload_id = request.match_info["id"]
        if upload_id not in state.uploads:
            return _missing("upload")
        body = await request.read()
        boundary = re.search(r"boundary=(\S+)", request.headers["Content-Type"])
        assert boundary is not None
        state.parts[upload_id].append(_file_part(body, boundary.group(1).encode())[1])
        part_id = f"part_{upload_id}_{len(state.parts[upload_id])}"
        return _json({"id": part_id, "object": "upload.part", "upload_id": upload_id, "created_at": 1})

    async def complete_upload(request: web.Request) -> web.Response:
        upload = state.uploads.get(request.match_info["id"])
        if upload is None:
            return _missing("upload")
        made = add_file(upload["purpose"], upload["filename"], b"".join(state.parts[upload["id"]]))
        upload.update(status="completed", file=made)
        return _json(upload)

    async def cancel_upload(request: web.Request) -> web.Response:
        upload = state.uploads.get(request.match_info["id"])
        if upload is None:
            return _missing("upload")
        upload["status"] = "cancelled"
        return _json(upload)

    async def create_batch(request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read())
        if body.get("input_file_id") not in state.files:
            return _missing("file")
        batch_id = state.new_id("batch_")
        made = {"id": batch_id, "object": "batch", "status": "validating", "output_file_id": None, **body}
        state.batches[batch_id] = made
        return _json(made)

    def run(batch: dict[str, Any]) -> None:
        """The batch runs: one output line per input line, each with USAGE."""
        if batch["status"] != "validating":
            return
        lines = []
        for raw in state.contents[batch["input_file_id"]].splitlines():
            line = msgspec.json.decode(raw)
            answer = {"id": "chatcmpl-x", "model": line["body"]["model"], "usage": USAGE}
            out = {"id": state.new_id("batch_req_"), "custom_id": line["custom_id"]}
            lines.append(_encode({**out, "response": {"status_code": 200, "body": answer}, "error": None}))
        output = add_file("batch_output", "output.jsonl", b"\n".join(lines) + b"\n")
        batch.update(status="completed", output_file_id=output["id"])

    async def one_batch(request: web.Request) -> web.Response:
        batch = state.batches.get(request.match_info["id"])
        if batch is None:
            return _missing("batch")
        run(batch)
        return _json(batch)

    async def list_batches(request: web.Request) -> web.Response:
        return _page(list(state.batches.values()), request)

    async def cancel_batch(request: web.Request) -> web.Response:
        batch = state.batches.get(request.match_info["id"])
        if batch is None:
            return _missing("batch")
        batch["status"] = "cancelling"
        return _json(batch)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = msgspec.json.decode(await request.read())
        completion_id = state.new_id("chatcmpl-")
        message = {"role": "assistant", "content": "stored"}
        answer = {"id": completion_id, "object": "chat.completion", "created": 1, "model": body["model"]}
        answer |= {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": USAGE}
        if body.get("store"):
            state.completions[completion_id] = answer | {"metadata": body.get("metadata") or {}}
        if not body.get("stream"):
            return _json(answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        delta = {"index": 0, "delta": {"role": "assistant", "content": "stored"}, "finish_reason": "stop"}
        await response.write(b"data: " + _encode(chunk | {"choices": [delta]}) + b"\n\n")
        await response.write(b"data: " + _encode(chunk | {"choices": [], "usage": USAGE}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def list_completions(request: web.Request) -> web.Response:
        return _page(list(state.completions.values()), request)

    async def one_completion(request: web.Request) -> web.Response:
        found = state.completions.get(request.match_info["id"])
        if found is None:
            return _missing("chat completion")
        if request.method == "POST":
            found["metadata"] = msgspec.json.decode(await request.read())["metadata"]
        if request.method == "DELETE":
            del state.completions[found["id"]]
            return _json({"id": found["id"], "object": "chat.completion.deleted", "deleted": True})
        return _json(found)

    async def messages(request: web.Request) -> web.Response:
        if request.match_info["id"] not in state.completions:
            return _missing("chat completion")
        return _page([{"id": "msg_0", "role": "user", "content": "hi"}], request)

    router = app.router
    router.add_post("/v1/files", create_file)
    router.add_get("/v1/files", list_files)
    router.add_get("/v1/files/{id}", one_file)
    router.add_delete("/v1/files/{id}", delete_file)
    router.add_get("/v1/files/{id}/content", content)
    router.add_post("/v1/uploads", create_upload)
    router.add_post("/v1/uploads/{id}/parts", add_part)
    router.add_post("/v1/uploads/{id}/complete", complete_upload)
    router.add_post("/v1/uploads/{id}/cancel", cancel_upload)
    router.add_post("/v1/batches", create_batch)
    router.add_get("/v1/batches", list_batches)
    router.add_get("/v1/batches/{id}", one_batch)
    router.add_post("/v1/batches/{id}/cancel", cancel_batch)
    router.add_post("/v1/chat/completions", chat)
    router.add_get("/v1/chat/completions", list_completions)
    for method in ("GET", "POST", "DELETE"):
        router.add_route(method, "/v1/chat/completions/{id}", one_completion)
    router.add_get("/v1/chat/completions/{id}/messages", messages)
    return app


async def start_objects_upstream(state: ObjectsUpstream) -> web.AppRunner:
    runner, port = await start_site(objects_app(state))
    state.url = f"http://127.0.0.1:{port}/v1"
    return runner

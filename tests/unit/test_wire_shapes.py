"""One module owns each OpenAI wire shape (STYLE.md: "One module owns each shape; everything else
imports it"): a msgspec Struct that looks like an OpenAI chat or embeddings shape may be declared
only in adapters/openai/shapes.py, or in adapters/schema.py (the neutral form, OpenAI-shaped by
design). Other providers' own wire modules (`<provider>_wire.py`) may look alike: Mistral's chat
format is OpenAI's nearly field for field, but it is Mistral's to change.
"""

from __future__ import annotations

import ast

from tests.support import paths

ROOT = paths.REPO
OWNERS = {"adapters/openai/shapes.py", "adapters/schema.py"}
OTHER_PROVIDERS_WIRE = {
    "adapters/anthropic/wire.py",
    "adapters/bedrock/wire.py",
    "adapters/cohere/wire.py",
    "adapters/gemini/wire.py",
    "adapters/mistral/wire.py",
    "adapters/ollama/wire.py",
    "adapters/responses/wire.py",
}
# In-memory values that happen to carry such a field name; no body is decoded into them or
# encoded from them.
NOT_WIRE = {
    "adapters/base.py:UpstreamError (error detail)",  # the neutral error every classify_error returns
    "adapters/mock.py:_Answer (usage)",  # one planned answer, before it is encoded
    "adapters/mock.py:_Plan (stream options)",
    # One probe across the three answer formats (OpenAI's, Anthropic's, Responses'), for span facts.
    "gateway/observability/genai.py:_AnswerProbe (completion or chunk)",
}

# Field names, or sets of them, that only OpenAI's chat and embeddings shapes use among ours.
_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("completion or chunk", frozenset({"choices"})),
    ("choice", frozenset({"finish_reason", "delta"})),
    ("choice", frozenset({"finish_reason", "message"})),
    ("usage", frozenset({"prompt_tokens"})),
    ("usage", frozenset({"completion_tokens"})),
    ("message or delta", frozenset({"tool_calls"})),
    ("message", frozenset({"tool_call_id"})),
    ("reasoning extension", frozenset({"thinking_blocks"})),
    ("reasoning extension", frozenset({"reasoning_content"})),
    ("stream options", frozenset({"include_usage"})),
    ("request", frozenset({"stream_options"})),
    ("request", frozenset({"max_completion_tokens"})),
    ("response format", frozenset({"json_schema"})),
    ("embeddings", frozenset({"embedding"})),
    ("embeddings request", frozenset({"encoding_format"})),
    ("error detail", frozenset({"message", "type", "code"})),
    ("error envelope", frozenset({"error", "message", "detail"})),
)


def _is_struct(node: ast.ClassDef) -> bool:
    return any("Struct" in ast.unparse(base) for base in node.bases)


def _fields(node: ast.ClassDef) -> set[str]:
    return {
        item.target.id
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
    }


def openai_shaped(source: str) -> list[str]:
    """`Class (kind)` for every Struct declared in `source` that matches an OpenAI signature."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef) or not _is_struct(node):
            continue
        fields = _fields(node)
        for kind, signature in _SIGNATURES:
            if signature <= fields:
                found.append(f"{node.name} ({kind})")
                break
    return found


def _modules() -> list[str]:
    modules = (p for folder in ("adapters", "gateway") for p in (ROOT / folder).rglob("*.py"))
    return sorted(p.relative_to(ROOT).as_posix() for p in modules)


def test_openai_wire_shapes_are_declared_only_in_their_owner() -> None:
    allowed = OWNERS | OTHER_PROVIDERS_WIRE
    strays = [
        f"{module}:{hit}"
        for module in _modules()
        if module not in allowed
        for hit in openai_shaped((ROOT / module).read_text())
        if f"{module}:{hit}" not in NOT_WIRE
    ]
    assert strays == []


def test_the_owner_declares_them() -> None:
    # The guard above must be able to see a shape: the owner's own ones match the signatures.
    owned = openai_shaped((ROOT / "adapters/openai/shapes.py").read_text())
    kinds = {hit.split(" (", 1)[1] for hit in owned}
    assert {"completion or chunk)", "usage)", "message or delta)", "error detail)"} <= kinds


def test_a_copy_elsewhere_is_caught() -> None:
    copy = (
        "import msgspec\n"
        "class _Chunk(msgspec.Struct):\n"
        "    id: str = ''\n"
        "    choices: list[int] | None = None\n"
        "class _Err(msgspec.Struct):\n"
        "    message: str = ''\n"
        "    type: str | None = None\n"
        "    code: str | None = None\n"
    )
    assert openai_shaped(copy) == ["_Chunk (completion or chunk)", "_Err (error detail)"]


# --- near-copies inside the owner ----------------------------------------------------------------
# One module holding every shape is not enough if it holds one shape twice. Two Structs there are
# one shape when they declare the same fields (names, types and defaults) with the same options,
# `omit_defaults` aside (it changes only what is written, never what is read); and two read probes
# are one shape when they declare the same fields with the same types, whatever their defaults
# (what a reader makes of an absent field is the reader's to apply: `probe.message or "..."`).


def _declaration(node: ast.ClassDef, with_defaults: bool) -> tuple[object, ...]:
    fields = sorted(
        (
            item.target.id,
            ast.unparse(item.annotation),
            ast.unparse(item.value) if with_defaults and item.value is not None else None,
        )
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
    )
    options = sorted((k.arg or "", ast.unparse(k.value)) for k in node.keywords if k.arg != "omit_defaults")
    return (tuple(fields), tuple(options))


def near_copies(source: str) -> list[list[str]]:
    """Groups of Structs in `source` that declare one shape twice (see above)."""
    structs = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and _is_struct(n)]
    groups: dict[tuple[object, ...], list[str]] = {}
    for node in structs:
        groups.setdefault(("same", *_declaration(node, True)), []).append(node.name)
        if node.name.endswith("Probe"):
            groups.setdefault(("probe", *_declaration(node, False)), []).append(node.name)
    return [names for names in groups.values() if len(set(names)) > 1]


def test_the_owner_declares_each_shape_once() -> None:
    for owner in sorted(OWNERS):
        assert near_copies((ROOT / owner).read_text()) == [], owner


def test_a_near_copy_in_the_owner_is_caught() -> None:
    source = (
        "import msgspec\n"
        "class OpenAIFunctionDelta(msgspec.Struct, omit_defaults=True):\n"
        "    name: str | None = None\n"
        "    arguments: str | None = None\n"
        "class OpenAIReplayFunction(msgspec.Struct):\n"
        "    arguments: str | None = None\n"
        "    name: str | None = None\n"
        "class OpenAIErrorProbe(msgspec.Struct):\n"
        "    message: str = ''\n"
        "class OpenAIGatewayErrorProbe(msgspec.Struct):\n"
        "    message: str = 'upstream error'\n"
        "class OpenAIThinkingBlockDelta(msgspec.Struct):\n"  # written: its required fields differ
        "    index: int\n"
        "class OpenAIThinkingBlockProbe(msgspec.Struct):\n"
        "    index: int = 0\n"
    )
    assert near_copies(source) == [
        ["OpenAIFunctionDelta", "OpenAIReplayFunction"],
        ["OpenAIErrorProbe", "OpenAIGatewayErrorProbe"],
    ]

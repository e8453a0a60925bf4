"""What several native adapters check or take apart alike in an OpenAI request: image parts and
JSON output for providers that have a schema mode but no plain JSON mode. Pure functions; each
failure is an InvalidRequest naming the provider and the field."""

from __future__ import annotations

from adapters.base import InvalidRequest
from adapters.schema import ImagePart, JsonSchemaFormat, ResponseFormat


def scheme_of(url: str) -> str:
    """The URL's scheme with its colon, lower-cased ("data:", "https:"); "" when it has none."""
    return url[: url.find(":") + 1].lower()


def refuse_image_detail(part: ImagePart, param: str, provider: str) -> None:
    """OpenAI's `detail` hint has no counterpart: only "auto" (or none) passes."""
    detail = part.image_url.detail
    if detail is not None and detail != "auto":
        raise InvalidRequest(
            f"image 'detail' {detail!r} is not supported by {provider}", f"{param}.image_url.detail"
        )


def base64_data_url(url: str, param: str, provider: str) -> tuple[str, str]:
    """(media type, lower-cased; base64 data) of `data:<media type>[;<parameter>]*;base64,<data>`.
    The caller has checked the scheme; a data URL that is not base64 is refused."""
    header, comma, data = url[5:].partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise InvalidRequest(
            f"data URLs that are not base64 are not supported by {provider}", f"{param}.image_url.url"
        )
    return header.partition(";")[0].strip().lower(), data


def required_json_schema(
    response_format: ResponseFormat | None, provider: str
) -> tuple[JsonSchemaFormat, bytes] | None:
    """For a provider with structured output but no JSON mode without a schema: None for text
    (or no response_format), else the `json_schema` spec and its schema's bytes. `json_object`,
    and `json_schema` without a schema, are refused."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        raise InvalidRequest(
            f"response_format 'json_object' is not supported by {provider}: it has no JSON mode without"
            " a schema; use 'json_schema' with a schema",
            "response_format",
        )
    spec = response_format.json_schema
    schema = spec.schema_bytes if spec is not None else None
    if spec is None or schema is None:
        raise InvalidRequest(
            f"response_format 'json_schema' needs a 'schema' for {provider}",
            "response_format.json_schema.schema",
        )
    return spec, schema

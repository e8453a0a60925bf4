"""The request checks several native adapters share: image parts and schema-only JSON output."""

from __future__ import annotations

import msgspec
import pytest

from adapters.base import InvalidRequest
from adapters.request_parts import base64_data_url, refuse_image_detail, required_json_schema, scheme_of
from adapters.schema import ImagePart, ImageUrl, JsonSchemaFormat, ResponseFormat


@pytest.mark.parametrize(
    ("url", "scheme"),
    [("data:image/png;base64,AAAA", "data:"), ("HTTPS://x/y.png", "https:"), ("no-scheme", "")],
)
def test_scheme_of(url: str, scheme: str) -> None:
    assert scheme_of(url) == scheme


def test_image_detail_other_than_auto_is_refused_by_name() -> None:
    refuse_image_detail(ImagePart(ImageUrl("data:,", "auto")), "messages[0].content[1]", "P")
    refuse_image_detail(ImagePart(ImageUrl("data:,")), "messages[0].content[1]", "P")
    with pytest.raises(InvalidRequest) as caught:
        refuse_image_detail(ImagePart(ImageUrl("data:,", "high")), "messages[0].content[1]", "P")
    assert caught.value.param == "messages[0].content[1].image_url.detail"
    assert "'high'" in caught.value.message and "P" in caught.value.message


def test_base64_data_url_splits_media_type_and_data() -> None:
    assert base64_data_url("data:Image/PNG;name=a.png;base64,iVBOR", "p", "P") == ("image/png", "iVBOR")
    for url in ("data:image/png,rawbytes", "data:image/png;base64"):
        with pytest.raises(InvalidRequest, match="not base64 are not supported by P") as caught:
            base64_data_url(url, "p", "P")
        assert caught.value.param == "p.image_url.url"


def test_required_json_schema() -> None:
    assert required_json_schema(None, "P") is None
    assert required_json_schema(ResponseFormat("text"), "P") is None
    spec = JsonSchemaFormat(name="r", schema=msgspec.Raw(b'{"type":"object"}'))
    assert required_json_schema(ResponseFormat("json_schema", spec), "P") == (spec, b'{"type":"object"}')
    with pytest.raises(InvalidRequest, match="no JSON mode without a schema") as caught:
        required_json_schema(ResponseFormat("json_object"), "P")
    assert caught.value.param == "response_format"
    for missing in (None, JsonSchemaFormat(name="r")):
        with pytest.raises(InvalidRequest, match="needs a 'schema' for P") as caught:
            required_json_schema(ResponseFormat("json_schema", missing), "P")
        assert caught.value.param == "response_format.json_schema.schema"

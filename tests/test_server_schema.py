"""Property-based conformance of ``seem serve`` with its own OpenAPI document (schemathesis, bounded).

Every operation gets generated requests (valid and invalid); each response must have a documented status
code, a documented content type and a body matching the documented schema, and never be a 5xx.
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (schemathesis brings hypothesis)

from seem import SeemPredictor  # noqa: E402
from seem.server import create_app  # noqa: E402

_APP = create_app(SeemPredictor.from_pretrained(None, vocabulary_cache_dir=None), warm=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


from schemathesis.specs.openapi import checks as openapi_checks  # noqa: E402

# what the document promises: no 5xx, documented status codes, content types, headers and bodies, Allow on
# 405. Not "schema-valid data is accepted": some rules are semantic (an image that is not one, a point
# outside the image) and answer 4xx with a detail naming the field.
CONFORMANCE = [schemathesis.checks.not_a_server_error, openapi_checks.status_code_conformance,
               openapi_checks.content_type_conformance, openapi_checks.response_schema_conformance,
               openapi_checks.response_headers_conformance, openapi_checks.allow_header_conformance]


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_conforms_to_its_schema(case):
    case.call_and_validate(checks=CONFORMANCE)

"""Refusals come back as the typed `Error` model, with a stable code."""

from http import HTTPStatus

import pytest

from conftest import SAMPLE_PNG, put_bytes
from upload_broker_client.api.images import latest_image
from upload_broker_client.api.uploads import confirm_upload, create_upload, get_upload
from upload_broker_client.models import CreateUploadRequest, Error, IssuedUpload


def _request(default_image_id, **overrides) -> CreateUploadRequest:
    fields = dict(image_id=default_image_id, filename="photo.png", content_type="image/png", size=len(SAMPLE_PNG))
    fields.update(overrides)
    return CreateUploadRequest(**fields)


def _error(response, status: HTTPStatus, code: str) -> Error:
    assert response.status_code == status, response.content
    assert isinstance(response.parsed, Error), type(response.parsed)
    assert response.parsed.code == code
    assert response.parsed.message
    return response.parsed


@pytest.mark.parametrize(
    "overrides, status, code",
    [
        (dict(content_type="text/plain", filename="notes.txt"), HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_type"),
        (dict(image_id="not valid!"), HTTPStatus.BAD_REQUEST, "invalid_image_id"),
        (dict(size=0), HTTPStatus.BAD_REQUEST, "invalid_size"),
    ],
    ids=["unsupported-type", "bad-image-id", "empty-file"],
)
def test_create_refusals_parse_as_error(client, image_id, overrides, status, code):
    response = create_upload.sync_detailed(client=client, body=_request(image_id, **overrides))
    _error(response, status, code)


def test_too_large_says_the_limit(client, image_id):
    response = create_upload.sync_detailed(client=client, body=_request(image_id, size=6 * 1024**4))
    error = _error(response, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large")
    assert isinstance(error.limit, int) and error.limit > 0


def test_confirm_before_upload_is_not_uploaded(client, image_id):
    issued = create_upload.sync(client=client, body=_request(image_id))
    assert isinstance(issued, IssuedUpload)
    _error(confirm_upload.sync_detailed(str(issued.upload_id), client=client), HTTPStatus.CONFLICT, "not_uploaded")


def test_other_bytes_fail_verification(client, image_id):
    issued = create_upload.sync(client=client, body=_request(image_id))
    not_a_png = b"\0" * len(SAMPLE_PNG)
    assert put_bytes(issued.url, issued.headers.to_dict(), not_a_png).status_code == 200
    response = confirm_upload.sync_detailed(str(issued.upload_id), client=client)
    _error(response, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_image")


def test_unknown_upload_is_not_found(client):
    _error(
        get_upload.sync_detailed("01890a5d-ac96-774b-bcce-b302099a8057", client=client),
        HTTPStatus.NOT_FOUND,
        "not_found",
    )


def test_malformed_upload_id_is_a_bad_request(client):
    _error(get_upload.sync_detailed("not-a-uuid", client=client), HTTPStatus.BAD_REQUEST, "invalid_upload_id")


def test_image_without_uploads_has_no_latest(client, image_id):
    _error(latest_image.sync_detailed(image_id, client=client), HTTPStatus.NOT_FOUND, "not_found")

"""With API_KEYS set: writes need the key, and a refusal is the typed `Error`."""

from http import HTTPStatus

from conftest import SAMPLE_PNG, put_bytes
from upload_broker_client import Client
from upload_broker_client.api.uploads import confirm_upload, create_upload, get_upload
from upload_broker_client.models import CreateUploadRequest, Metadata, Error, IssuedUpload


def _request(image_id):
    return CreateUploadRequest(
        image_id=image_id,
        filename="k.png",
        content_type="image/png",
        size=len(SAMPLE_PNG),
        metadata=Metadata.from_dict({"via": "key"}),
    )


def test_without_a_key_a_write_is_unauthorized(keys_base_url, image_id):
    with Client(base_url=keys_base_url, raise_on_unexpected_status=True) as anonymous:
        response = create_upload.sync_detailed(client=anonymous, body=_request(image_id))
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.headers["www-authenticate"] == "Bearer"
    assert isinstance(response.parsed, Error)
    assert response.parsed.code == "unauthorized"


def test_with_the_key_the_flow_works_and_reads_stay_open(key_client, keys_base_url, image_id):
    issued = create_upload.sync(client=key_client, body=_request(image_id))
    assert isinstance(issued, IssuedUpload)
    assert put_bytes(issued.url, issued.headers.to_dict(), SAMPLE_PNG).status_code == 200
    assert confirm_upload.sync_detailed(str(issued.upload_id), client=key_client).status_code == HTTPStatus.OK
    with Client(base_url=keys_base_url, raise_on_unexpected_status=True) as anonymous:
        read = get_upload.sync_detailed(str(issued.upload_id), client=anonymous)
    assert read.status_code == HTTPStatus.OK, read.content

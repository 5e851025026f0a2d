"""A legacy lookup through the generated client sees uploads made with v1."""

from http import HTTPStatus

from conftest import SAMPLE_PNG, fetch, issue, put_bytes
from upload_broker_client.api.legacy import legacy_latest_url
from upload_broker_client.api.uploads import confirm_upload
from upload_broker_client.models import Metadata, LegacyError, LegacyLatest


def test_legacy_latest_url_after_a_v1_upload(client, image_id):
    issued = issue(client, image_id, filename="seed.png", metadata=Metadata.from_dict({"via": "v1"}))
    assert put_bytes(issued.url, issued.headers.to_dict(), SAMPLE_PNG).status_code == 200
    assert confirm_upload.sync_detailed(str(issued.upload_id), client=client).status_code == HTTPStatus.OK

    response = legacy_latest_url.sync_detailed(image_id, client=client)
    assert response.status_code == HTTPStatus.OK, response.content
    latest = response.parsed
    assert isinstance(latest, LegacyLatest)
    assert latest.success is True
    assert latest.image_id == image_id
    assert latest.original_filename == "seed.png"
    assert latest.file_size == len(SAMPLE_PNG)
    assert latest.content_type == "image/png"
    # The seed's timestamp form: 2025-10-26T10:30:00.000000
    assert len(latest.uploaded_at) == 26 and latest.uploaded_at[10] == "T"
    assert fetch(latest.s3_url).content == SAMPLE_PNG


def test_legacy_latest_url_unknown_image(client, image_id):
    response = legacy_latest_url.sync_detailed(image_id, client=client)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert isinstance(response.parsed, LegacyError)
    assert response.parsed.success is False
    assert response.parsed.error

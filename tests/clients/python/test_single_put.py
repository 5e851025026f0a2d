"""The v1 single-PUT flow, through the generated client's typed functions."""

import re
from http import HTTPStatus

from conftest import SAMPLE_PNG, SAMPLE_SIZE, fetch, issue, put_bytes, sha256_b64
from upload_broker_client.api.images import latest_image, list_images
from upload_broker_client.api.uploads import confirm_upload, create_upload, delete_upload, get_upload
from upload_broker_client.models import (
    CreateUploadRequest,
    Metadata,
    Error,
    ImageList,
    IssuedUpload,
    Upload,
    UploadMethod,
    UploadState,
)
from upload_broker_client.types import UNSET


def _metadata(**values: str) -> Metadata:
    return Metadata.from_dict(values)


def _upload(client, image_id: str, body: bytes = SAMPLE_PNG, **extra) -> Upload:
    issued = issue(client, image_id, body, **extra)
    put = put_bytes(issued.url, issued.headers.to_dict(), body)
    assert put.status_code == 200, put.text
    response = confirm_upload.sync_detailed(str(issued.upload_id), client=client)
    assert response.status_code == HTTPStatus.OK, response.content
    assert isinstance(response.parsed, Upload)
    return response.parsed


def test_single_put_flow(client, image_id):
    checksum = sha256_b64(SAMPLE_PNG)
    issued = issue(client, image_id, checksum_sha256=checksum, metadata=_metadata(alt="a test image"))
    assert issued.method is UploadMethod.PUT
    assert issued.state is UploadState.PENDING
    assert issued.image_id == image_id
    assert issued.key == f"uploads/{image_id}/{issued.upload_id}.png"
    assert issued.url.startswith("http://127.0.0.1:")
    headers = issued.headers.to_dict()
    assert headers["Content-Type"] == "image/png"
    assert issued.expires_at.tzinfo is not None
    assert issued.part_size is UNSET and issued.part_count is UNSET

    put = put_bytes(issued.url, headers, SAMPLE_PNG)
    assert put.status_code == 200, put.text

    confirmed = confirm_upload.sync_detailed(str(issued.upload_id), client=client)
    assert confirmed.status_code == HTTPStatus.OK, confirmed.content
    record = confirmed.parsed
    assert isinstance(record, Upload)
    assert record.upload_id == issued.upload_id
    assert record.state is UploadState.COMPLETED
    assert record.image_id == image_id
    assert record.key == issued.key
    assert record.original_filename == "photo.png"
    assert record.content_type == "image/png"
    assert record.file_size == len(SAMPLE_PNG)
    assert (record.width, record.height) == SAMPLE_SIZE
    assert record.checksum_sha256 == checksum
    assert record.metadata.to_dict() == {"alt": "a test image"}
    assert isinstance(record.etag, str) and record.etag
    assert record.uploaded_at >= record.created_at

    served = fetch(record.s3_url)
    assert served.status_code == 200
    assert served.content == SAMPLE_PNG

    # The same record every time, but for its variants, which are made meanwhile.
    def settled(upload):
        body = upload.to_dict()
        assert body.pop("variants_state") in ("pending", "ready")
        body.pop("variants", None)
        return body

    again = confirm_upload.sync_detailed(str(issued.upload_id), client=client)
    assert again.status_code == HTTPStatus.OK
    assert settled(again.parsed) == settled(record)

    got = get_upload.sync_detailed(str(issued.upload_id), client=client)
    assert got.status_code == HTTPStatus.OK
    assert isinstance(got.parsed, Upload)
    assert settled(got.parsed) == settled(record)

    latest = latest_image.sync_detailed(image_id, client=client)
    assert latest.status_code == HTTPStatus.OK
    assert isinstance(latest.parsed, Upload)
    assert latest.parsed.upload_id == issued.upload_id
    assert fetch(latest.parsed.s3_url).content == SAMPLE_PNG

    listed = list_images.sync_detailed(image_id, client=client, limit=10)
    assert listed.status_code == HTTPStatus.OK
    assert isinstance(listed.parsed, ImageList)
    assert [u.upload_id for u in listed.parsed.images] == [issued.upload_id]


def test_newest_upload_is_latest_and_listing_pages(client, image_id):
    first = _upload(client, image_id, metadata=_metadata(n="1"))
    second = _upload(client, image_id, metadata=_metadata(n="2"))

    latest = latest_image.sync(image_id, client=client)
    assert isinstance(latest, Upload)
    assert latest.upload_id == second.upload_id

    page = list_images.sync(image_id, client=client, limit=1)
    assert isinstance(page, ImageList)
    assert [u.upload_id for u in page.images] == [second.upload_id]
    assert isinstance(page.next_cursor, str) and page.next_cursor
    rest = list_images.sync(image_id, client=client, limit=1, cursor=page.next_cursor)
    assert [u.upload_id for u in rest.images] == [first.upload_id]


def test_record_without_metadata_reads_back(client, image_id):
    """Most uploads carry no metadata; their record must still parse as `Upload`."""
    record = _upload(client, image_id)
    assert record.state is UploadState.COMPLETED
    assert not record.metadata
    assert fetch(record.s3_url).content == SAMPLE_PNG


def test_pending_record_reads_back(client, image_id):
    """Before confirm, the record has no s3_url, size or upload time yet."""
    issued = issue(client, image_id, metadata=_metadata(k="v"))
    response = get_upload.sync_detailed(str(issued.upload_id), client=client)
    assert response.status_code == HTTPStatus.OK, response.content
    record = response.parsed
    assert isinstance(record, Upload)
    assert record.state is UploadState.PENDING
    assert not record.s3_url
    assert not record.file_size
    assert not record.uploaded_at


def test_delete_removes_a_completed_upload(client, image_id):
    record = _upload(client, image_id, metadata=_metadata(k="v"))
    response = delete_upload.sync_detailed(str(record.upload_id), client=client)
    assert response.status_code == HTTPStatus.NO_CONTENT
    assert delete_upload.sync_detailed(str(record.upload_id), client=client).status_code == HTTPStatus.NO_CONTENT

    latest = latest_image.sync_detailed(image_id, client=client)
    assert latest.status_code == HTTPStatus.NOT_FOUND
    assert isinstance(latest.parsed, Error)
    assert latest.parsed.code == "not_found"

    gone = get_upload.sync_detailed(str(record.upload_id), client=client)
    assert gone.status_code == HTTPStatus.OK
    assert isinstance(gone.parsed, Upload)
    assert gone.parsed.state is UploadState.DELETED
    assert not gone.parsed.s3_url


def test_key_never_uses_the_file_name(client, image_id):
    request = CreateUploadRequest(
        image_id=image_id, filename="../../etc/passwd.png", content_type="image/png", size=len(SAMPLE_PNG)
    )
    issued = create_upload.sync(client=client, body=request)
    assert isinstance(issued, IssuedUpload)
    assert re.fullmatch(rf"uploads/{image_id}/[0-9a-f-]{{36}}\.png", issued.key)

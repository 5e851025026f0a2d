"""The v1 multipart flow (service started with 5 MiB threshold and parts)."""

from http import HTTPStatus

from conftest import MIB, fetch, issue, png_bytes, put_bytes
from upload_broker_client.api.uploads import confirm_upload, list_parts, sign_parts
from upload_broker_client.models import (
    Metadata,
    Error,
    IssuedUpload,
    SignedPartList,
    SignPartsRequest,
    Upload,
    UploadedPartList,
    UploadMethod,
    UploadState,
)
from upload_broker_client.types import UNSET

PART = 5 * MIB


def _issue(client, image_id, body: bytes) -> IssuedUpload:
    return issue(client, image_id, body, "big.png", metadata=Metadata.from_dict({"kind": "multipart"}))


def test_multipart_flow(multipart_client, image_id):
    client = multipart_client
    body = png_bytes(11 * MIB)
    issued = _issue(client, image_id, body)
    assert issued.method is UploadMethod.MULTIPART
    assert issued.state is UploadState.PENDING
    assert issued.part_size == PART
    assert issued.part_count == 3
    assert issued.url is UNSET
    upload_id = str(issued.upload_id)

    signed = sign_parts.sync_detailed(upload_id, client=client, body=SignPartsRequest(part_numbers=[1, 2, 3]))
    assert signed.status_code == HTTPStatus.OK, signed.content
    assert isinstance(signed.parsed, SignedPartList)
    parts = {p.part_number: p for p in signed.parsed.parts}
    assert sorted(parts) == [1, 2, 3]
    assert [parts[n].size for n in (1, 2, 3)] == [PART, PART, len(body) - 2 * PART]

    # Nothing is held yet.
    listed = list_parts.sync(upload_id, client=client)
    assert isinstance(listed, UploadedPartList)
    assert listed.parts == []
    assert (listed.part_size, listed.part_count) == (PART, 3)

    etags = {}
    for n in (3, 1, 2):
        chunk = body[(n - 1) * PART : n * PART]
        put = put_bytes(parts[n].url, parts[n].headers.to_dict(), chunk)
        assert put.status_code == 200, put.text
        etags[n] = put.headers["etag"]

    listed = list_parts.sync_detailed(upload_id, client=client)
    assert listed.status_code == HTTPStatus.OK
    assert isinstance(listed.parsed, UploadedPartList)
    assert [(p.part_number, p.size) for p in listed.parsed.parts] == [
        (1, PART),
        (2, PART),
        (3, len(body) - 2 * PART),
    ]
    assert {p.part_number: p.etag for p in listed.parsed.parts} == etags

    confirmed = confirm_upload.sync_detailed(upload_id, client=client)
    assert confirmed.status_code == HTTPStatus.OK, confirmed.content
    record = confirmed.parsed
    assert isinstance(record, Upload)
    assert record.state is UploadState.COMPLETED
    assert record.file_size == len(body)
    assert (record.width, record.height) == (64, 48)

    served = fetch(record.s3_url)
    assert served.status_code == 200
    assert served.content == body


def test_confirm_with_a_part_missing_is_refused(multipart_client, image_id):
    client = multipart_client
    body = png_bytes(11 * MIB)
    issued = _issue(client, image_id, body)
    upload_id = str(issued.upload_id)
    signed = sign_parts.sync(upload_id, client=client, body=SignPartsRequest(part_numbers=[1]))
    first = signed.parts[0]
    assert put_bytes(first.url, first.headers.to_dict(), body[:PART]).status_code == 200

    response = confirm_upload.sync_detailed(upload_id, client=client)
    assert response.status_code == HTTPStatus.CONFLICT, response.content
    assert isinstance(response.parsed, Error)
    assert response.parsed.code == "incomplete_upload"
    assert response.parsed.missing_parts == [2, 3]


def test_signing_outside_the_plan_is_refused(multipart_client, image_id):
    client = multipart_client
    issued = _issue(client, image_id, png_bytes(11 * MIB))
    response = sign_parts.sync_detailed(str(issued.upload_id), client=client, body=SignPartsRequest(part_numbers=[4]))
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert isinstance(response.parsed, Error)

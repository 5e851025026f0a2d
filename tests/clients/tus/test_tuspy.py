"""tus 1.0.0 at /api/v1/tus through tuspy, the tus project's Python client: one-request and
chunked uploads (three 5 MiB parts in storage), resuming with a new uploader, refusal of
a file that is no image (422), and upload checksums."""

import asyncio
import hashlib
import io
import json

import pytest
import requests
from tusclient.client import TusClient
from tusclient.exceptions import TusUploadFailed
from tusclient.storage.filestorage import FileStorage
from tusclient.uploader import Uploader

from conftest import LARGE_SIZE, PART_SIZE, SAMPLE_PNG, not_an_image, png_bytes, upload_id_of


def metadata(image_id: str, filename: str, filetype: str | None = "image/png") -> dict[str, str]:
    meta = {"image_id": image_id, "filename": filename}
    if filetype is not None:
        meta["filetype"] = filetype
    return meta


def write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_options_lists_what_tuspy_needs(endpoint):
    response = requests.options(endpoint, timeout=60)
    assert response.status_code in (200, 204)
    assert response.headers["Tus-Version"].split(",")[0].strip() == "1.0.0"
    extensions = {e.strip() for e in response.headers["Tus-Extension"].split(",")}
    assert {"creation", "termination", "checksum"} <= extensions
    assert "sha1" in response.headers["Tus-Checksum-Algorithm"].split(",")


def test_small_png_in_one_request(endpoint, image_id, tmp_path, patches, assert_completed):
    path = write(tmp_path, "sample.png", SAMPLE_PNG)
    uploader = TusClient(endpoint).uploader(file_path=path, metadata=metadata(image_id, "sample.png"))
    uploader.upload()

    assert uploader.url.startswith(endpoint + "/")
    assert uploader.offset == len(SAMPLE_PNG)
    assert [(p["offset"], p["length"], p["status"]) for p in patches] == [(0, len(SAMPLE_PNG), 204)]
    assert patches[0]["new_offset"] == str(len(SAMPLE_PNG))
    assert_completed(uploader.url, SAMPLE_PNG, image_id, "sample.png")
    # HEAD on a completed upload: all of it is there.
    assert uploader.get_offset() == len(SAMPLE_PNG)


def test_small_png_type_from_the_extension(endpoint, image_id, assert_completed):
    """Without `filetype`, the type follows the file name's extension."""
    uploader = TusClient(endpoint).uploader(
        file_stream=io.BytesIO(SAMPLE_PNG), metadata=metadata(image_id, "sample.png", filetype=None)
    )
    uploader.upload()
    assert_completed(uploader.url, SAMPLE_PNG, image_id, "sample.png")


def test_large_png_in_5_mib_chunks(endpoint, image_id, tmp_path, patches, assert_completed):
    data = png_bytes(LARGE_SIZE, seed=1)
    path = write(tmp_path, "large.png", data)
    uploader = TusClient(endpoint).uploader(
        file_path=path, chunk_size=PART_SIZE, metadata=metadata(image_id, "large.png")
    )
    uploader.upload()

    expected = [(0, PART_SIZE), (PART_SIZE, PART_SIZE), (2 * PART_SIZE, LARGE_SIZE - 2 * PART_SIZE)]
    assert [(p["offset"], p["length"]) for p in patches] == expected
    assert all(p["status"] == 204 for p in patches), patches
    assert [p["new_offset"] for p in patches] == [str(PART_SIZE), str(2 * PART_SIZE), str(LARGE_SIZE)]
    assert_completed(uploader.url, data, image_id, "large.png")


def test_large_png_with_the_async_uploader(endpoint, image_id, assert_completed):
    """tuspy's aiohttp-based uploader, in 5 MiB chunks."""
    data = png_bytes(LARGE_SIZE, seed=2)
    uploader = TusClient(endpoint).async_uploader(
        file_stream=io.BytesIO(data), chunk_size=PART_SIZE, metadata=metadata(image_id, "async.png")
    )
    asyncio.run(uploader.upload())
    assert uploader.offset == LARGE_SIZE
    assert_completed(uploader.url, data, image_id, "async.png")


@pytest.mark.parametrize(
    ("resume_with", "stop_at"),
    [
        # Stopped at a part's end: part 1 is in storage, nothing in the spool.
        ("url", PART_SIZE),
        # Stopped inside part 2: part 1 in storage, 2 MiB of part 2 in the spool.
        ("url", PART_SIZE + 2 * 1024 * 1024),
        # The library's own resumption: the URL kept in its URL storage, by fingerprint.
        ("url_storage", PART_SIZE + 2 * 1024 * 1024),
    ],
)
def test_resume_with_a_new_uploader(
    endpoint, image_id, tmp_path, patches, record, head, assert_completed, resume_with, stop_at
):
    data = png_bytes(LARGE_SIZE, seed=3 + stop_at % 7)
    path = write(tmp_path, "resumed.png", data)
    client = TusClient(endpoint)
    meta = metadata(image_id, "resumed.png")
    storage = {}
    if resume_with == "url_storage":
        storage = {"store_url": True, "url_storage": FileStorage(str(tmp_path / "tus-urls.json"))}

    first = client.uploader(file_path=path, chunk_size=PART_SIZE, metadata=meta, **storage)
    first.upload(stop_at=stop_at)
    assert first.offset == stop_at
    url = first.url
    assert record(upload_id_of(url))["state"] == "pending"
    status = head(url)
    assert status.status_code == 200
    assert status.headers["Upload-Offset"] == str(stop_at)
    assert status.headers["Upload-Length"] == str(LARGE_SIZE)
    assert status.headers.get("Cache-Control") == "no-store"

    if resume_with == "url":
        second = client.uploader(file_path=path, url=url, chunk_size=PART_SIZE, metadata=meta)
    else:
        second = client.uploader(file_path=path, chunk_size=PART_SIZE, metadata=meta, **storage)
    assert second.url == url
    assert second.offset == stop_at, "the new uploader reads the offset with HEAD"
    second.upload()

    assert patches[0]["offset"] == 0
    offsets = [p["offset"] for p in patches]
    assert offsets.count(stop_at) == 1, "the resumed uploader sends from where the first stopped"
    assert all(p["status"] == 204 for p in patches), patches
    assert_completed(url, data, image_id, "resumed.png")


def refused(error: TusUploadFailed) -> str:
    """The code of a 422 answer (its JSON body is `{code, message}`)."""
    assert error.status_code == 422
    body = json.loads(error.response_content)
    assert isinstance(body["message"], str) and body["message"]
    return body["code"]


@pytest.mark.parametrize("size", [1000, LARGE_SIZE], ids=["small", "large"])
def test_not_an_image_is_refused_with_422(endpoint, image_id, record, patches, size):
    data = not_an_image(size)
    uploader = TusClient(endpoint).uploader(
        file_stream=io.BytesIO(data), chunk_size=PART_SIZE, metadata=metadata(image_id, "x.png")
    )
    with pytest.raises(TusUploadFailed) as caught:
        uploader.upload()

    assert refused(caught.value) == "invalid_image"
    # The first bytes are checked as they arrive: a header that is not a PNG's is refused
    # at the first PATCH, before the rest is sent.
    assert [(p["offset"], p["length"], p["status"]) for p in patches] == [(0, min(size, PART_SIZE), 422)]

    upload = record(upload_id_of(uploader.url))
    assert upload["state"] == "failed", upload
    assert upload["failure_code"] == "invalid_image"
    assert upload["s3_url"] is None


def test_a_png_that_does_not_end_whole_is_refused_at_the_last_patch(endpoint, image_id, record, patches):
    """A good header, but the file does not end with IEND: only the PATCH that reaches the
    length, which verifies the whole file, can tell; it answers 422."""
    data = bytearray(png_bytes(LARGE_SIZE, seed=13))
    data[-12:] = b"not the end!"
    uploader = TusClient(endpoint).uploader(
        file_stream=io.BytesIO(bytes(data)), chunk_size=PART_SIZE, metadata=metadata(image_id, "cut.png")
    )
    with pytest.raises(TusUploadFailed) as caught:
        uploader.upload()

    assert refused(caught.value) == "invalid_image"
    assert [(p["offset"], p["status"]) for p in patches] == [(0, 204), (PART_SIZE, 204), (2 * PART_SIZE, 422)]
    assert patches[-1]["offset"] + patches[-1]["length"] == LARGE_SIZE

    upload = record(upload_id_of(uploader.url))
    assert upload["state"] == "failed", upload
    assert upload["failure_code"] == "invalid_image"
    assert upload["s3_url"] is None


class Sha256Uploader(Uploader):
    """tuspy sends sha1 by default; its checksum algorithm is a class attribute."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


class WrongChecksumUploader(Uploader):
    """Sends a sha1 of other bytes than the chunk's."""

    CHECKSUM_ALGORITHM_PAIR = ("sha1", lambda chunk: hashlib.sha1(chunk + b"!"))


@pytest.mark.parametrize(("uploader_class", "algorithm"), [(Uploader, "sha1"), (Sha256Uploader, "sha256")])
def test_upload_checksums(endpoint, image_id, patches, assert_completed, uploader_class, algorithm):
    data = png_bytes(LARGE_SIZE, seed=11)
    uploader = uploader_class(
        file_stream=io.BytesIO(data),
        client=TusClient(endpoint),
        chunk_size=PART_SIZE,
        metadata=metadata(image_id, "checked.png"),
        upload_checksum=True,
    )
    uploader.upload()

    assert len(patches) == 3
    for p in patches:
        assert p["checksum"] is not None and p["checksum"].startswith(algorithm + " "), p
        assert p["status"] == 204
    assert_completed(uploader.url, data, image_id, "checked.png")


def test_a_wrong_checksum_keeps_nothing(endpoint, image_id, patches, record):
    data = png_bytes(2 * PART_SIZE, seed=12)
    uploader = WrongChecksumUploader(
        file_stream=io.BytesIO(data),
        client=TusClient(endpoint),
        chunk_size=PART_SIZE,
        metadata=metadata(image_id, "wrong.png"),
        upload_checksum=True,
    )
    with pytest.raises(TusUploadFailed) as caught:
        uploader.upload()
    assert caught.value.status_code == 460
    assert json.loads(caught.value.response_content)["code"]
    assert uploader.get_offset() == 0, "the refused chunk's bytes do not count"
    assert record(upload_id_of(uploader.url))["state"] == "pending"

    # The same chunks with their right checksums then go through.
    fixed = Uploader(
        file_stream=io.BytesIO(data),
        client=TusClient(endpoint),
        url=uploader.url,
        chunk_size=PART_SIZE,
        upload_checksum=True,
    )
    fixed.upload()
    assert fixed.offset == len(data)
    assert record(upload_id_of(uploader.url))["state"] == "completed"

"""Fixtures for the tus client tests (tuspy). Apart from the generated-client tests on
purpose: these need nothing generated from the OpenAPI document.

`run.sh` starts a service with `PART_SIZE` of 5 MiB and passes its base URL as
UB_TUS_BASE_URL.
"""

import os
import struct
import uuid
import zlib
from pathlib import Path

import pytest
import requests

FIXTURES = Path(os.environ.get("UB_FIXTURES_DIR") or Path(__file__).resolve().parents[2] / "fixtures")
SAMPLE_PNG = (FIXTURES / "sample.png").read_bytes()
SAMPLE_SIZE = (64, 48)
MIB = 1024 * 1024
PART_SIZE = 5 * MIB
# Three parts of PART_SIZE, the last one short: 5 MiB + 5 MiB + a little over 2 MiB.
LARGE_SIZE = 12 * MIB + 12_345
TUS_PATH = "/api/v1/tus"
TUS_HEADERS = {"Tus-Resumable": "1.0.0"}
TIMEOUT = 60


def png_bytes(size: int, seed: int = 0) -> bytes:
    """A valid PNG of exactly `size` bytes: the 64x48 sample with a private ancillary
    chunk (`ubPd`) of padding before IEND, with its CRC. The padding counts up modulo
    251 from `seed`, so a part stored in the wrong place changes the bytes and two files
    with different seeds differ within their first 64 KiB (where clients fingerprint)."""
    head, iend = SAMPLE_PNG[:-12], SAMPLE_PNG[-12:]
    data_len = size - len(SAMPLE_PNG) - 12
    assert data_len >= 0, "size too small for a padded PNG"
    cycle = bytes((seed + i) % 251 for i in range(251))
    data = (cycle * (data_len // 251 + 1))[:data_len]
    chunk = b"ubPd" + data
    return head + struct.pack(">I", data_len) + chunk + struct.pack(">I", zlib.crc32(chunk)) + iend


def not_an_image(size: int) -> bytes:
    """`size` bytes of text: what a file named x.png holds when it is no image at all."""
    line = b"not an image\n"
    return (line * (size // len(line) + 1))[:size]


def fresh_image_id(prefix: str = "tuspy") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def upload_id_of(location: str) -> str:
    """A tus upload's URL ends with the v1 upload_id."""
    return location.rstrip("/").rsplit("/", 1)[-1]


@pytest.fixture
def base_url() -> str:
    value = os.environ.get("UB_TUS_BASE_URL")
    if not value:
        pytest.fail("UB_TUS_BASE_URL is not set: run these tests through tests/clients/run.sh", pytrace=False)
    return value.rstrip("/")


@pytest.fixture
def endpoint(base_url) -> str:
    return base_url + TUS_PATH


@pytest.fixture
def image_id() -> str:
    return fresh_image_id()


@pytest.fixture
def record(base_url):
    """GET /api/v1/uploads/{upload_id}: the v1 record of a tus upload, as JSON."""

    def get(upload_id: str) -> dict:
        response = requests.get(f"{base_url}/api/v1/uploads/{upload_id}", timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        return response.json()

    return get


@pytest.fixture
def head():
    """HEAD on a tus upload's URL, with Tus-Resumable."""

    def send(url: str) -> requests.Response:
        return requests.head(url, headers=TUS_HEADERS, timeout=TIMEOUT)

    return send


def served(url: str) -> bytes:
    response = requests.get(url, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.content


@pytest.fixture
def assert_completed(record):
    """The upload behind `url` is completed, with this many bytes, and `s3_url` serves
    exactly `data`."""

    def check(url: str, data: bytes, image_id: str, filename: str) -> dict:
        upload = record(upload_id_of(url))
        assert upload["state"] == "completed", upload
        assert upload["upload_id"] == upload_id_of(url)
        assert upload["image_id"] == image_id
        assert upload["original_filename"] == filename
        assert upload["content_type"] == "image/png"
        assert upload["file_size"] == len(data)
        assert (upload["width"], upload["height"]) == SAMPLE_SIZE
        assert upload["key"].startswith(f"uploads/{image_id}/")
        # A file over one part went to storage in PART_SIZE parts: a multipart object's ETag
        # ends with its number of parts.
        parts = -(-len(data) // PART_SIZE)
        if parts > 1:
            assert upload["etag"].strip('"').endswith(f"-{parts}"), upload["etag"]
        else:
            assert "-" not in upload["etag"], upload["etag"]
        assert upload["s3_url"], upload
        body = served(upload["s3_url"])
        assert len(body) == len(data)
        assert body == data, "the stored bytes differ from the file"
        return upload

    return check


@pytest.fixture
def patches(monkeypatch):
    """Every PATCH tuspy sends (it calls requests.patch): offset, body length, checksum
    header and the answer's status and Upload-Offset, in order."""
    sent: list[dict] = []
    real_patch = requests.patch

    def recording_patch(url, data=None, headers=None, **kwargs):
        response = real_patch(url, data=data, headers=headers, **kwargs)
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        sent.append(
            {
                "offset": int(lowered["upload-offset"]),
                "length": len(data or b""),
                "checksum": lowered.get("upload-checksum"),
                "status": response.status_code,
                "new_offset": response.headers.get("Upload-Offset"),
            }
        )
        return response

    monkeypatch.setattr(requests, "patch", recording_patch)
    return sent

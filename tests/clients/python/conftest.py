"""Fixtures for the generated Python client's tests.

`run.sh` starts the services and passes their base URLs:
  UB_BASE_URL            default settings
  UB_MULTIPART_BASE_URL  MULTIPART_THRESHOLD and PART_SIZE of 5 MiB
  UB_KEYS_BASE_URL       API_KEYS set (see KEY below)
The generated package `upload_broker_client` must be importable (run.sh puts it on
PYTHONPATH).
"""

import base64
import hashlib
import os
import struct
import uuid
import zlib
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from upload_broker_client import AuthenticatedClient, Client
from upload_broker_client.api.uploads import create_upload
from upload_broker_client.models import CreateUploadRequest, IssuedUpload

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SAMPLE_PNG = (FIXTURES / "sample.png").read_bytes()
SAMPLE_SIZE = (64, 48)
MIB = 1024 * 1024
KEY = "client-suite-key"


def _base_url(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through tests/clients/run.sh", pytrace=False)
    return value


def png_bytes(size: int) -> bytes:
    """A valid PNG of exactly `size` bytes: the 64x48 sample with an ancillary chunk of
    varying padding before IEND, so a misplaced part changes the bytes."""
    head, iend = SAMPLE_PNG[:-12], SAMPLE_PNG[-12:]
    data_len = size - len(SAMPLE_PNG) - 12
    assert data_len >= 0, "size too small for a padded PNG"
    data = bytes(i % 251 for i in range(251)) * (data_len // 251 + 1)
    chunk = b"clPd" + data[:data_len]
    return head + struct.pack(">I", data_len) + chunk + struct.pack(">I", zlib.crc32(chunk)) + iend


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def fresh_image_id(prefix: str = "py") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def put_bytes(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    """The raw PUT to storage, with the signed headers sent verbatim."""
    return httpx.put(url, content=body, headers=headers, timeout=60)


def fetch(url: str) -> httpx.Response:
    return httpx.get(url, timeout=60)


def issue(client, image_id: str, body: bytes = SAMPLE_PNG, filename: str = "photo.png", **extra) -> IssuedUpload:
    """POST /api/v1/uploads for a PNG of these bytes; it must answer 201."""
    request = CreateUploadRequest(
        image_id=image_id, filename=filename, content_type="image/png", size=len(body), **extra
    )
    response = create_upload.sync_detailed(client=client, body=request)
    assert response.status_code == HTTPStatus.CREATED, response.content
    assert isinstance(response.parsed, IssuedUpload)
    return response.parsed


def _client(name: str) -> Client:
    return Client(base_url=_base_url(name), raise_on_unexpected_status=True, timeout=httpx.Timeout(60))


@pytest.fixture
def client():
    with _client("UB_BASE_URL") as c:
        yield c


@pytest.fixture
def multipart_client():
    with _client("UB_MULTIPART_BASE_URL") as c:
        yield c


@pytest.fixture
def keys_base_url():
    return _base_url("UB_KEYS_BASE_URL")


@pytest.fixture
def key_client(keys_base_url):
    with AuthenticatedClient(base_url=keys_base_url, token=KEY, raise_on_unexpected_status=True) as c:
        yield c


@pytest.fixture
def image_id():
    return fresh_image_id()

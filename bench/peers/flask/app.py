"""A minimal re-creation of the Flask "Image Upload Service" that upload-broker replaces:
its upload and lookup routes as the seed documents them (Flask, boto3, SQLite), so the
benchmark measures what its users run today. Run it the way the seed deploys it:

    gunicorn -w 2 -b 127.0.0.1:PORT app:app

Settings are the seed's (AWS_*, DATABASE_PATH, MAX_FILE_SIZE), plus AWS_ENDPOINT_URL for
an S3-compatible store.
"""

import datetime
import os
import sqlite3
import uuid

import boto3
from flask import Flask, jsonify, request
from werkzeug.utils import secure_filename

ALLOWED = {"png", "jpg", "jpeg", "gif", "webp", "bmp", "tiff"}
BUCKET = os.environ["AWS_BUCKET_NAME"]
DATABASE = os.environ.get("DATABASE_PATH", "images.db")

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = int(os.environ.get("MAX_FILE_SIZE", 10 * 1024 * 1024))
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
    aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
)


def db():
    conn = sqlite3.connect(DATABASE, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


with db() as conn:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS images (id TEXT, s3_url TEXT, s3_key TEXT, "
        "original_filename TEXT, file_size INTEGER, content_type TEXT, uploaded_at TEXT, "
        "metadata TEXT)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS images_id ON images (id, uploaded_at)")


@app.get("/health")
def health():
    return jsonify(status="healthy", timestamp=datetime.datetime.utcnow().isoformat(),
                   environment=os.environ.get("ENVIRONMENT", "development"))


@app.post("/upload/<image_id>")
def upload(image_id):
    file = request.files.get("file")
    if file is None or file.filename == "":
        return jsonify(success=False, error="No file provided"), 400
    ext = file.filename.rsplit(".", 1)[-1].lower() if "." in file.filename else ""
    if ext not in ALLOWED:
        return jsonify(success=False, error="File type not allowed"), 400
    filename = secure_filename(file.filename)
    key = f"images/{image_id}/{uuid.uuid4().hex}_{filename}"
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(0)
    s3.upload_fileobj(file, BUCKET, key, ExtraArgs={"ContentType": file.content_type})
    s3_url = f"{s3.meta.endpoint_url}/{BUCKET}/{key}"
    uploaded_at = datetime.datetime.utcnow().isoformat()
    with db() as conn:
        conn.execute(
            "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (image_id, s3_url, key, filename, size, file.content_type, uploaded_at, None),
        )
    return jsonify(success=True, message="Image uploaded successfully", image_id=image_id,
                   s3_url=s3_url, uploaded_at=uploaded_at)


@app.get("/api/url/<image_id>")
def latest(image_id):
    with db() as conn:
        row = conn.execute(
            "SELECT * FROM images WHERE id = ? ORDER BY uploaded_at DESC LIMIT 1", (image_id,)
        ).fetchone()
    if row is None:
        return jsonify(success=False, error="Image not found"), 404
    return jsonify(success=True, image_id=image_id, s3_url=row["s3_url"],
                   original_filename=row["original_filename"], file_size=row["file_size"],
                   content_type=row["content_type"], uploaded_at=row["uploaded_at"])

// Uploads one file through the v1 API: ask for a signed URL, PUT the bytes, confirm.
const imageId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[0] || '');
const form = document.getElementById('upload-form');
const input = document.getElementById('file-input');
const status = document.getElementById('status');

document.getElementById('image-id-label').textContent = imageId ? `for ${imageId}` : '';

async function json(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

async function upload(file) {
  status.textContent = `Preparing ${file.name}…`;
  const issued = await json(await fetch('/api/v1/uploads', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ image_id: imageId, filename: file.name, content_type: file.type, size: file.size }),
  }));
  status.textContent = `Uploading ${file.name}…`;
  const put = await fetch(issued.url, { method: 'PUT', headers: issued.headers, body: file });
  if (!put.ok) throw new Error(`storage refused the upload (HTTP ${put.status})`);
  status.textContent = 'Verifying…';
  const record = await json(await fetch(`/api/v1/uploads/${issued.upload_id}/confirm`, { method: 'POST' }));
  status.textContent = `Uploaded ${record.original_filename} (${record.width}×${record.height}).`;
  document.getElementById('result-image').src = record.s3_url;
  const link = document.getElementById('result-link');
  link.href = record.s3_url;
  link.textContent = record.s3_url;
  document.getElementById('result').hidden = false;
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const file = input.files[0];
  if (!file) { status.textContent = 'Choose a file first.'; return; }
  upload(file).catch((err) => { status.textContent = `Upload failed: ${err.message}`; });
});

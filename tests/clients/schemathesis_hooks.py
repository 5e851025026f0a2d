"""Schemathesis hooks (run.sh points SCHEMATHESIS_HOOKS here).

The tus operations' bodies are application/offset+octet-stream: raw bytes, serialized as
application/octet-stream is (schemathesis knows only the latter by name).
"""

import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

"""A webhook receiver for the tests: it verifies every request with the official
`standardwebhooks` library (against each secret it is given: each must sign), answers as
its mode says, and keeps a log the tests read at GET /_log.

Modes (POST /_mode with a JSON object, or --mode at start):
  {"mode": "ok"}                  answer 204
  {"mode": "flaky"}               fail each webhook-id's first k attempts, k from 0 to 3 drawn
                                  from the id; each failure is a 500 or a dropped connection
  {"mode": "first", "percent": p} fail the first attempt of p percent of webhook-ids (500)
  {"mode": "fail"}                answer 500
  {"mode": "gone"}                answer 410
  {"mode": "redirect"}            answer 302 to /elsewhere on this receiver
  {"mode": "slow", "delay": s}    wait s seconds, then answer 204
Any mode takes "delay" (seconds before answering).
"""

import argparse
import hashlib
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Lock()
LOG = []
ATTEMPTS = {}
STATE = {"mode": "ok", "delay": 0.0}
SECRETS = []


def planned_failures(webhook_id):
    """k in 0..3 for this id, and for each failing attempt whether it drops the connection."""
    digest = hashlib.sha256(webhook_id.encode()).digest()
    return digest[0] % 4, digest[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", location=None):
        try:
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(body)))
            if body:
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The sender is gone (a killed service): nothing to answer.
            self.close_connection = True

    def do_GET(self):
        if self.path == "/_log":
            with LOCK:
                body = json.dumps(LOG).encode()
            self.reply(200, body)
        else:
            self.reply(404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path == "/_secrets":
            with LOCK:
                SECRETS[:] = json.loads(body)
            self.reply(204)
            return
        if self.path == "/_mode":
            with LOCK:
                STATE.clear()
                STATE.update({"delay": 0.0})
                STATE.update(json.loads(body))
            self.reply(204)
            return
        started = time.time()
        headers = {k.lower(): v for k, v in self.headers.items()}
        webhook_id = headers.get("webhook-id", "")
        entry = {
            "path": self.path,
            "id": webhook_id,
            "timestamp": headers.get("webhook-timestamp"),
            "signatures": len(headers.get("webhook-signature", "").split()),
            "user_agent": headers.get("user-agent"),
            "content_type": headers.get("content-type"),
            "started": started,
            "verified": True,
            "error": None,
        }
        event = None
        with LOCK:
            secrets = list(SECRETS)
        if not secrets:
            entry["verified"] = False
            entry["error"] = "the receiver has no secret to verify with"
        for secret in secrets:
            try:
                event = Webhook(secret).verify(body, headers)
            except (WebhookVerificationError, ValueError) as err:
                entry["verified"] = False
                entry["error"] = "%s: %s" % (type(err).__name__, err)
        if event is None:
            try:
                event = json.loads(body)
            except ValueError:
                event = {}
        data = event.get("data") or {}
        entry.update(
            {
                "type": event.get("type"),
                "event_timestamp": event.get("timestamp"),
                "state": data.get("state"),
                "upload_id": data.get("upload_id"),
                "image_id": data.get("image_id"),
                "failure_code": data.get("failure_code"),
                "variants_state": data.get("variants_state"),
                "variants": data.get("variants"),
            }
        )
        with LOCK:
            attempt = ATTEMPTS.get(webhook_id, 0) + 1
            ATTEMPTS[webhook_id] = attempt
            mode = dict(STATE)
        entry["attempt"] = attempt
        if mode.get("delay"):
            time.sleep(float(mode["delay"]))
        kind = mode.get("mode", "ok")
        answer = 204
        if kind == "flaky":
            failures, salt = planned_failures(webhook_id)
            if attempt <= failures:
                answer = "dropped" if (salt + attempt) % 2 else 500
        elif kind == "first":
            drawn = hashlib.sha256(webhook_id.encode()).digest()[2] * 100 // 256
            if attempt == 1 and drawn < int(mode.get("percent", 30)):
                answer = 500
        elif kind == "fail":
            answer = 500
        elif kind == "gone":
            answer = 410
        elif kind == "redirect" and self.path != "/elsewhere":
            answer = 302
        if not entry["verified"]:
            answer = 400
        entry["answer"] = answer
        entry["ended"] = time.time()
        with LOCK:
            LOG.append(entry)
        if answer == "dropped":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.reply(answer, location="/elsewhere" if answer == 302 else None)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", action="append", default=[])
    parser.add_argument("--mode", default="{}")
    args = parser.parse_args()
    SECRETS.extend(args.secret)
    STATE.update(json.loads(args.mode))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())

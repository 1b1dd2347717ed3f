#!/usr/bin/env python3
"""A webhook receiver for Tripline's end-to-end tests.

It verifies every request with the official Standard Webhooks library
(`pip install standardwebhooks`), not with Tripline's code, checks the body
against the documented schema of its format, and appends one JSON line per
request to --log.

Paths choose the format and the secret: a request to /<name> is checked as
the format --format-<name> says (tripline, alertmanager or slack) and
verified with the secret in <secrets>/<name> (read on every request, so a
test can write it after creating the webhook).

Behaviour for tests: --fail-first N answers the first N requests with
--fail-status (and Retry-After: --retry-after when given); --delay S waits S
seconds before answering; --status CODE answers every request with CODE.

Prints "port N" once listening.
"""

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def str_map(v, what):
    if not isinstance(v, dict):
        return f"{what} is not an object"
    for k, x in v.items():
        if not isinstance(k, str) or not isinstance(x, str):
            return f"{what}[{k!r}] is not a string"
    return None


def check_alertmanager(b):
    """Alertmanager's webhook receiver JSON, version 4, as documented in
    prometheus.io/docs/alerting/latest/configuration/#webhook_config."""
    if b.get("version") != "4":
        return "version is not \"4\""
    for k in ("groupKey", "receiver", "externalURL"):
        if not isinstance(b.get(k), str):
            return f"{k} is not a string"
    if not isinstance(b.get("truncatedAlerts"), int):
        return "truncatedAlerts is not an integer"
    if b.get("status") not in ("firing", "resolved"):
        return "status is not firing or resolved"
    for k in ("groupLabels", "commonLabels", "commonAnnotations"):
        e = str_map(b.get(k), k)
        if e:
            return e
    alerts = b.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        return "alerts is not a non-empty list"
    for a in alerts:
        if a.get("status") not in ("firing", "resolved"):
            return "alert status is not firing or resolved"
        for k in ("labels", "annotations"):
            e = str_map(a.get(k), k)
            if e:
                return e
        if "alertname" not in a["labels"]:
            return "an alert has no alertname label"
        for k in ("startsAt", "endsAt"):
            if not isinstance(a.get(k), str) or not RFC3339.match(a[k]):
                return f"{k} is not RFC 3339: {a.get(k)!r}"
        for k in ("generatorURL", "fingerprint"):
            if not isinstance(a.get(k), str):
                return f"{k} is not a string"
    return None


def check_slack(b):
    """A Slack incoming-webhook message (api.slack.com/messaging/webhooks):
    `text`, and optional `blocks` of section blocks with a text object."""
    if not isinstance(b.get("text"), str) or not b["text"]:
        return "text is not a non-empty string"
    for blk in b.get("blocks", []):
        if blk.get("type") != "section":
            return "a block is not a section"
        t = blk.get("text", {})
        if t.get("type") not in ("mrkdwn", "plain_text") or not isinstance(t.get("text"), str):
            return "a section's text is not a text object"
        if len(t["text"]) > 3000:
            return "a section's text is over 3000 characters"
    extra = set(b) - {"text", "blocks", "attachments", "thread_ts", "mrkdwn"}
    if extra:
        return f"fields Slack does not take: {sorted(extra)}"
    return None


def check_tripline(b):
    if b.get("type") not in ("alert.created", "alert.updated", "webhook.test"):
        return f"type {b.get('type')!r}"
    if not isinstance(b.get("timestamp"), str) or not isinstance(b.get("data"), dict):
        return "timestamp or data missing"
    return None


CHECKS = {"tripline": check_tripline, "alertmanager": check_alertmanager, "slack": check_slack}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log", required=True)
    p.add_argument("--secrets", required=True)
    p.add_argument("--format", action="append", default=[], help="name=format")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--retry-after", default=None)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--status", type=int, default=200)
    args = p.parse_args()
    formats = dict(f.split("=", 1) for f in args.format)
    lock = threading.Lock()
    seen = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            name = self.path.strip("/").split("?")[0] or "default"
            headers = {k.lower(): v for k, v in self.headers.items()}
            entry = {"path": self.path, "at": time.time(), "headers": headers, "body": body.decode("utf-8", "replace")}
            try:
                with open(os.path.join(args.secrets, name)) as f:
                    secret = f.read().strip()
                wh = Webhook(secret)
                payload = wh.verify(body, headers)
                entry["verified"] = True
                try:
                    wh.verify(body + b" ", headers)
                    entry["tamper_rejected"] = False
                except WebhookVerificationError:
                    entry["tamper_rejected"] = True
            except (WebhookVerificationError, OSError, ValueError) as e:
                entry["verified"] = False
                entry["verify_error"] = str(e)
                payload = None
            if payload is not None:
                fmt = formats.get(name, "tripline")
                entry["format"] = fmt
                entry["schema_error"] = CHECKS[fmt](payload)
            with lock:
                seen["n"] += 1
                n = seen["n"]
            status = args.status
            extra = {}
            if n <= args.fail_first:
                status = args.fail_status
                if args.retry_after is not None:
                    extra["Retry-After"] = args.retry_after
            if args.delay:
                time.sleep(args.delay)
            entry["answered"] = status
            with lock:
                with open(args.log, "a") as f:
                    f.write(json.dumps(entry) + "\n")
            self.send_response(status)
            if 300 <= status < 400:
                extra["Location"] = "http://127.0.0.1:9/elsewhere"
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())

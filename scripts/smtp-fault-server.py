#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) that refuses some recipients, for the tests of the
notification-service's failure handling. maildev accepts every recipient, so the
SMTP replies a production server gives to bad or busy mailboxes come from here.

RCPT TO behaviour (by local part, case-insensitive):
  reject*  -> 550 5.1.1 mailbox unavailable          (always)
  refuse*  -> 554 5.7.1 relaying denied              (always: the server refuses our mail)
  defer*   -> 451 4.3.0 try again                    (first N attempts per address, then 250)
  other    -> 250 OK
With --idle-timeout N, a connection idle for N seconds is closed the way maildev and
Postfix close them: "421 4.4.2 idle timeout" and then EOF.
Accepted messages are appended as JSON lines to --store and are also served over HTTP:
  GET    /messages          -> JSON list of stored messages (oldest first)
  DELETE /messages          -> clear store and reset defer counters
  GET    /stats             -> {"connections": n, "idle_closed": n} (client sessions)
  GET    /healthz           -> {"ok": true}
Prints "READY smtp=HOST:PORT http=HOST:PORT" to stdout once both listeners are up.
"""
import argparse
import base64
import json
import threading
import time
import uuid
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class FaultHandler:
    def __init__(self, store_path, defer_count):
        self.store_path = store_path
        self.defer_count = defer_count
        self.lock = threading.Lock()
        self.messages = []
        self.defer_attempts = {}  # address (lowercased) -> attempts seen so far
        self.connections = 0
        self.idle_closed = 0
        open(self.store_path, "w").close()  # start empty

    def reset(self):
        with self.lock:
            self.messages.clear()
            self.defer_attempts.clear()
            open(self.store_path, "w").close()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("refuse"):
            return "554 5.7.1 relaying denied"
        if local.startswith("defer"):
            with self.lock:
                n = self.defer_attempts.get(address.lower(), 0) + 1
                self.defer_attempts[address.lower()] = n
            if n <= self.defer_count:
                return "451 4.3.0 try again"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        text = html = None
        attachments = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            if part.get_content_disposition() == "attachment" or part.get_filename():
                payload = part.get_payload(decode=True) or b""
                attachments.append({
                    "filename": part.get_filename(),
                    "content_type": ctype,
                    "params": {k: v for k, v in (part.get_params() or [])[1:]},
                    "size": len(payload),
                    "content_b64": base64.b64encode(payload).decode(),
                })
            elif ctype == "text/plain" and text is None:
                text = part.get_content()
            elif ctype == "text/html" and html is None:
                html = part.get_content()
        record = {
            "id": uuid.uuid4().hex,
            "received_at": time.time(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "subject": msg.get("Subject"),
            "message_id": msg.get("Message-ID"),
            "headers": [[k, str(v)] for k, v in msg.items()],
            "text": text,
            "html": html,
            "attachments": attachments,
            "raw": raw.decode("utf-8", "replace"),
        }
        with self.lock:
            self.messages.append(record)
            with open(self.store_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        return "250 2.0.0 Message accepted for delivery"


class IdleClosingSMTP(SMTP):
    """Counts client sessions (those that said EHLO/HELO: not the controller's own
    start-up probe); on the idle timeout says 421 before closing."""

    def __init__(self, fault_handler, *args, **kwargs):
        super().__init__(fault_handler, *args, **kwargs)
        self.fault_handler = fault_handler
        self.greeted = False

    def _count_session(self):
        if not self.greeted:
            self.greeted = True
            with self.fault_handler.lock:
                self.fault_handler.connections += 1

    async def smtp_EHLO(self, arg):
        self._count_session()
        await super().smtp_EHLO(arg)

    async def smtp_HELO(self, arg):
        self._count_session()
        await super().smtp_HELO(arg)

    def _timeout_cb(self):
        if self.greeted:
            with self.fault_handler.lock:
                self.fault_handler.idle_closed += 1
        try:
            self.transport.write(b"421 4.4.2 idle timeout, closing connection\r\n")
        except Exception:
            pass
        super()._timeout_cb()


class FaultController(Controller):
    def __init__(self, handler, idle_timeout, **kwargs):
        super().__init__(handler, **kwargs)
        self.idle_timeout = idle_timeout

    def factory(self):
        return IdleClosingSMTP(self.handler, timeout=self.idle_timeout, **self.SMTP_kwargs)


def make_http_handler(handler):
    class H(BaseHTTPRequestHandler):
        def _json(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/healthz":
                return self._json(200, {"ok": True})
            if self.path == "/stats":
                with handler.lock:
                    return self._json(200, {"connections": handler.connections,
                                            "idle_closed": handler.idle_closed})
            if self.path.split("?")[0] == "/messages":
                with handler.lock:
                    return self._json(200, list(handler.messages))
            self._json(404, {"error": "not found"})

        def do_DELETE(self):
            if self.path == "/messages":
                handler.reset()
                return self._json(200, {"ok": True})
            self._json(404, {"error": "not found"})

        def log_message(self, *args):
            pass

    return H


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=11027)
    ap.add_argument("--http-port", type=int, default=11082)
    ap.add_argument("--store", required=True, help="JSON-lines file of accepted mail")
    ap.add_argument("--defer-count", type=int, default=2,
                    help="451 for the first N RCPT attempts per defer* address")
    ap.add_argument("--idle-timeout", type=float, default=300,
                    help="close a connection idle this many seconds (with a 421)")
    args = ap.parse_args()

    handler = FaultHandler(args.store, args.defer_count)
    controller = FaultController(handler, args.idle_timeout, hostname=args.host, port=args.port)
    controller.start()  # blocks until the SMTP listener is accepting
    httpd = ThreadingHTTPServer((args.host, args.http_port), make_http_handler(handler))
    print(f"READY smtp={args.host}:{args.port} http={args.host}:{args.http_port}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        controller.stop()


if __name__ == "__main__":
    main()

"""Alert channels against local receivers (an SMTP sink, an HTTP webhook) and the threshold helpers."""

from __future__ import annotations

import json
import socket
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines.alerts import send_alert
from pipelines.config import AlertsConfig
from pipelines.monitor import Thresholds, check_thresholds, find_breaches, percentile, read_gpu_temperatures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_sink():
    from aiosmtpd.controller import Controller

    class Sink:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller.port, handler.messages
    finally:
        controller.stop()


@pytest.fixture
def webhook():
    received = []
    status = {"code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(status["code"])
            self.end_headers()
            self.wfile.write(b'{"errcode":0}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/robot/send?access_token=t", received, status
    finally:
        server.shutdown()
        server.server_close()


def test_email_reaches_the_smtp_sink(smtp_sink):
    port, messages = smtp_sink
    config = AlertsConfig(email_to=("oncall@example.com", "ml@example.com"), smtp_host="127.0.0.1", smtp_port=port)
    result = send_alert(config, title="legal gate refused", text="accuracy 0.80 < 0.85", timeout=5)
    assert (result.email, result.webhook) == (True, None)
    assert len(messages) == 1
    mail_from, rcpt, content = messages[0]
    assert (mail_from, rcpt) == ("mlops-alerts@localhost", ["oncall@example.com", "ml@example.com"])
    message = message_from_bytes(content)
    assert message["Subject"] == "[mlops] legal gate refused"
    assert message.get_payload().strip() == "accuracy 0.80 < 0.85"


def test_webhook_gets_dingtalk_markdown(webhook):
    url, received, _status = webhook
    result = send_alert(AlertsConfig(webhook_url=url), title="KEK old", text="rotate it", timeout=5)
    assert (result.webhook, result.email) == (True, None)
    assert received == [("/robot/send?access_token=t", "application/json",
                         {"msgtype": "markdown", "markdown": {"title": "KEK old", "text": "### KEK old\n\nrotate it"}})]


def test_broken_channels_report_false_and_never_raise(webhook):
    url, _received, status = webhook
    status["code"] = 500
    config = AlertsConfig(webhook_url=url, email_to=("a@example.com",), smtp_host="127.0.0.1", smtp_port=_free_port())
    result = send_alert(config, title="t", text="x", timeout=5)
    assert (result.webhook, result.email) == (False, False)


def test_both_channels_and_thresholds(smtp_sink, webhook):
    port, messages = smtp_sink
    url, received, _status = webhook
    config = AlertsConfig(webhook_url=url, email_to=("oncall@example.com",), smtp_host="127.0.0.1", smtp_port=port)
    breaches = check_thresholds(alerts=config, gpu_temperatures={0: 84.0, 1: 91.0}, baseline_accuracy=0.90,
                                accuracy=0.85, latencies_ms=[100.0] * 90 + [900.0] * 10, where="gpu-node-1")
    assert [(b.metric, b.value) for b in breaches] == [("gpu_temperature_c", 91.0), ("accuracy_drop", 0.055556),
                                                       ("api_p95_ms", 900.0)]
    assert [r[2]["markdown"]["title"] for r in received] == [
        "gpu-node-1: GPU 1 at 91 C", "gpu-node-1: accuracy dropped 5.6%", "gpu-node-1: API p95 latency 900 ms"]
    assert len(messages) == 3


def test_thresholds_edges():
    assert find_breaches(gpu_temperatures={0: 85.0}, baseline_accuracy=0.9, accuracy=0.9 * 0.95,
                         api_p95_ms=500.0) == []  # at the limit is not over it
    assert [b.metric for b in find_breaches(baseline_accuracy=0.9, accuracy=0.855 - 1e-6)] == ["accuracy_drop"]
    assert find_breaches(baseline_accuracy=0.9, accuracy=0.95) == []  # improvement
    assert percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert [b.metric for b in find_breaches(thresholds=Thresholds(api_p95_ms=4.0), latencies_ms=[1, 2, 3, 4, 5])] \
        == ["api_p95_ms"]
    with pytest.raises(ValueError, match="fraction"):
        Thresholds(accuracy_drop=5)


def test_no_gpu_means_no_reading_and_no_alert():
    sent = []
    temps = read_gpu_temperatures()  # this machine has no GPU (or NVML): no error either way
    assert isinstance(temps, dict)
    breaches = check_thresholds(alerts=AlertsConfig(), send=lambda *a, **k: sent.append(k),
                                gpu_temperatures=None if not temps else {})
    assert breaches == [] and sent == []

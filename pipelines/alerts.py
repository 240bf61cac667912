"""Alerts: one notifier for DAGs and services, to a chat webhook (DingTalk-compatible JSON) and/or email."""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage

from pipelines.config import AlertsConfig

log = logging.getLogger("pipelines.alerts")


@dataclass(frozen=True)
class AlertResult:
    webhook: bool | None
    email: bool | None


def send_alert(config: AlertsConfig, *, title: str, text: str, timeout: float = 10.0) -> AlertResult:
    """Send an alert to every configured channel. Never raises: a broken channel is logged.

    The webhook body is DingTalk's markdown message (``{"msgtype": "markdown", ...}``), which most
    chat tools with an incoming-webhook feature accept or can map.
    """
    webhook = email = None
    if config.webhook_url:
        body = json.dumps({"msgtype": "markdown", "markdown": {"title": title, "text": f"### {title}\n\n{text}"}}).encode()
        request = urllib.request.Request(config.webhook_url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                webhook = 200 <= response.status < 300
        except OSError as exc:
            log.error("alert webhook failed: %s", exc)
            webhook = False
    if config.email_to and config.smtp_host:
        message = EmailMessage()
        message["Subject"] = f"[mlops] {title}"
        message["From"] = "mlops-alerts@localhost"
        message["To"] = ", ".join(config.email_to)
        message.set_content(text)
        try:
            with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=timeout) as smtp:
                smtp.send_message(message)
            email = True
        except OSError as exc:
            log.error("alert email failed: %s", exc)
            email = False
    if webhook is None and email is None:
        log.warning("alert (no channel configured): %s: %s", title, text)
    return AlertResult(webhook=webhook, email=email)

"""Real-shaped fake secrets, built at runtime by concatenation so no secret-looking literal sits in the repo.

``planted()`` gives one of each kind with the scrubber's placeholder type; ``snapshot_tar`` packs a tree.
"""

from __future__ import annotations

import io
import random
import string
import tarfile
import zipfile

_ALNUM = string.ascii_letters + string.digits


def _rand(n: int, alphabet: str = _ALNUM, *, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


def planted(seed: int = 7) -> dict[str, str]:
    """One fake secret or PII value of each kind: ``{kind: value}``."""
    upper = string.ascii_uppercase + string.digits
    key_body = "\n".join(_rand(64, _ALNUM + "+/", seed=seed + i) for i in range(4))
    return {
        "aws_key": "AK" + "IA" + _rand(16, upper, seed=seed),
        "aws_secret": _rand(40, _ALNUM + "+/", seed=seed + 1),
        "github_token": "gh" + "p_" + _rand(36, seed=seed + 2),
        "slack_token": "xo" + "xb-" + _rand(12, string.digits, seed=seed + 3) + "-" + _rand(24, seed=seed + 4),
        "stripe_key": "sk" + "_live_" + _rand(24, seed=seed + 5),
        "jwt": "ey" + "J" + _rand(20, seed=seed + 6) + ".ey" + "J" + _rand(30, seed=seed + 7) + "." + _rand(43, seed=seed + 8),
        "private_key": "-----BEGIN RSA " + "PRIVATE KEY-----\n" + key_body + "\n-----END RSA " + "PRIVATE KEY-----",
        "db_password": "Pw" + _rand(14, seed=seed + 9) + "!9",
        "connection_string": "postgres" + "ql://svc_app:" + _rand(16, seed=seed + 10) + "@db01.corp.example.internal:5432/orders",
        "email": "jane.doe" + str(seed) + "@" + "acme-internal.com",
        "author": "Jane " + "Qwertyson",
        "hostname": "build" + str(seed) + ".eng.acme.internal",
        "ip": "10." + str(seed) + ".12.34",
    }


def secret_file(values: dict[str, str]) -> str:
    """A Python file holding every planted value where such values are found in real code."""
    return (
        f'"""Order service client.\n\nAuthor: {values["author"]} <{values["email"]}>\n"""\n'
        "import os\n\n"
        f'AWS_ACCESS_KEY_ID = "{values["aws_key"]}"\n'
        f'aws_secret_access_key = "{values["aws_secret"]}"\n'
        f'GITHUB_TOKEN = "{values["github_token"]}"\n'
        f'SLACK = "{values["slack_token"]}"\n'
        f'stripe_api_key = "{values["stripe_key"]}"\n'
        f'SESSION = "{values["jwt"]}"\n'
        f'DB_PASSWORD = "{values["db_password"]}"\n'
        f'DATABASE_URL = "{values["connection_string"]}"\n'
        f'BUILD_HOST = "{values["hostname"]}"\n'
        f'CACHE_IP = "{values["ip"]}"\n'
        f'SIGNING_KEY = """{values["private_key"]}"""\n\n\n'
        "def connect(url: str = DATABASE_URL) -> str:\n"
        "    return url + os.sep\n"
    )


def snapshot_tar(files: dict[str, str | bytes], *, gz: bool = True) -> bytes:
    """A tar(.gz) archive of ``{path: content}``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for path, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def snapshot_zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, content in sorted(files.items()):
            zf.writestr(path, content)
    return buf.getvalue()

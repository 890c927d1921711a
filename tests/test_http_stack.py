"""The model layer over https: certificates are verified (a local TLS server whose
certificate a private CA signed: trusted through ``SSL_CERT_FILE``, refused at once
without it, with the fix named), with real programs against the scripted server.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.openai_server import ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parent.parent



def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    from tests.repl.conftest import terminal_env

    env = terminal_env(tmp_path / "home", PYGENT_USE_DOCKER="0", PYGENT_MODEL="test-model",
                       OPENAI_API_KEY="sk-test-key")  # fmt: skip
    env.pop("SSL_CERT_FILE", None)  # only the CA a test names is trusted beside the system's
    env.pop("SSL_CERT_DIR", None)
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT)
    return env



def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A private CA (ca.pem) and a certificate it signed for 127.0.0.1 (server.pem/.key)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is missing (Debian: apt-get install openssl)")
    d = tmp_path / "tls"
    d.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=Pygent test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
             cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)  # fmt: skip
    return d


@pytest.fixture
def https_server(certificates: Path) -> ScriptedOpenAIServer:
    """The scripted server behind TLS: its listening socket wrapped before any connection."""
    server = ScriptedOpenAIServer().start()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates / "server.pem", certificates / "server.key")
    httpd = server._httpd
    assert httpd is not None
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    yield server
    server.stop()


def _one_shot(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "pygent", "--no-docker", "--output-format", "json",
                           "-p", "hi"], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip


def test_https_verifies_against_the_trusted_ca(
    tmp_path: Path, https_server: ScriptedOpenAIServer, certificates: Path
) -> None:
    https_server.add_text("pong over tls")
    url = https_server.base_url.replace("http://", "https://")
    out = _one_shot(_env(tmp_path, OPENAI_BASE_URL=url, SSL_CERT_FILE=str(certificates / "ca.pem")),
                    tmp_path / "cwd")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["answer"] == "pong over tls"
    assert [r.path for r in https_server.model_requests] == ["/v1/chat/completions"]


def test_https_refuses_a_certificate_no_trusted_ca_signed(
    tmp_path: Path, https_server: ScriptedOpenAIServer
) -> None:
    https_server.add_text("must not be read")
    url = https_server.base_url.replace("http://", "https://")
    out = _one_shot(_env(tmp_path, OPENAI_BASE_URL=url), tmp_path / "cwd")
    assert out.returncode != 0
    assert "has a certificate this machine does not trust" in out.stderr, out.stderr[-2000:]
    assert "SSL_CERT_FILE" in out.stderr  # the hint
    assert "retrying" not in out.stderr  # a refused certificate is not asked again
    assert "Traceback" not in out.stderr
    assert https_server.model_requests == []  # the handshake failed: nothing was sent


VERSIONS = """
import json, sys
import pygent.http_stack
import httpcore2, httpx2
loaded = "importlib.metadata" in sys.modules
import importlib.metadata
print(json.dumps({
    "loaded_by_the_stack": loaded,
    "stack": [httpcore2.__version__, httpx2.__version__],
    "metadata": [importlib.metadata.version("httpcore2"), importlib.metadata.version("httpx2")],
    "user_agent": httpx2._client.USER_AGENT,
    "real_afterwards": hasattr(importlib.metadata, "entry_points")
        and type(importlib.metadata).__name__ == "module",
}))
"""


def test_the_stack_reads_its_versions_without_importlib_metadata(tmp_path: Path) -> None:
    """httpcore2 and httpx2 get their versions from the .dist-info names (pygent/http_stack.py)."""
    out = subprocess.run([sys.executable, "-c", VERSIONS], env=_env(tmp_path), cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["loaded_by_the_stack"] is False
    assert seen["stack"] == seen["metadata"]  # the versions importlib.metadata would give
    assert seen["user_agent"] == f"python-httpx2/{seen['metadata'][1]}"
    assert seen["real_afterwards"] is True  # code importing it later gets the real module


def test_the_metadata_stand_in_hands_anything_else_to_the_real_module() -> None:
    import importlib.metadata

    from pygent.http_stack import _installed_version, _MetadataStandIn

    stand_in = _MetadataStandIn("importlib.metadata")
    assert _installed_version("no-such-distribution-here") is None
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        stand_in.version("no-such-distribution-here")  # answered by the real module
    assert stand_in.version("h11") == importlib.metadata.version("h11")
    assert stand_in.entry_points is importlib.metadata.entry_points
    with pytest.raises(AttributeError):
        stand_in.__path__  # noqa: B018  (the import system's question: not the real module's)

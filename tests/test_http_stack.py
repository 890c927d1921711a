"""The model layer over https: certificates are verified (a local TLS server whose
certificate a private CA signed: trusted through ``SSL_CERT_FILE``, refused at once
without it, with the fix named), with real programs against the scripted server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

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
import httpcore2
loaded = sorted(m for m in ("importlib.metadata", "httpx2", "trio") if m in sys.modules)
import importlib.metadata
print(json.dumps({
    "loaded_by_the_stack": loaded,
    "version": httpcore2.__version__,
    "metadata": importlib.metadata.version("httpcore2"),
    "real_afterwards": hasattr(importlib.metadata, "entry_points")
        and type(importlib.metadata).__name__ == "module",
}))
"""


def test_the_stack_loads_httpcore2_alone_and_reads_its_version_without_importlib_metadata(
    tmp_path: Path,
) -> None:
    """httpcore2 gets its version from its .dist-info name (pygent/http_stack.py)."""
    out = subprocess.run([sys.executable, "-c", VERSIONS], env=_env(tmp_path), cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["loaded_by_the_stack"] == []  # nor httpx2, nor trio
    assert seen["version"] == seen["metadata"]  # the version importlib.metadata would give
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


# ---------------------------------------------------------------- server-sent events

STREAMS = [
    b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n',
    b"data: one\r\ndata: two\r\n\r\n: a comment\r\nevent: ping\r\n\r\ndata:x\r\rdata: y",
    b"id: 7\nretry: 10\ndata\ndata: \xe2\x82\xac uro\n\ndata: unfinished\n",
    b"data: cut at the end\r",
]


@pytest.mark.parametrize("raw", STREAMS, ids=range(len(STREAMS)))
def test_server_sent_events_read_as_httpx2_reads_them_however_the_bytes_arrive(raw: bytes) -> None:
    """The event reader (pygent/http_stack.py) gives what httpx2's EventSource gives."""
    import asyncio

    from httpx2._sse import _SSEParser

    from pygent.http_stack import event_data

    reference = _SSEParser()
    text = raw.decode("utf-8")
    expected = [e.data for e in [*reference.decode(text), *reference.flush()] if e.data]

    async def read(chunks: list[bytes]) -> list[str]:
        async def arrive() -> Any:
            for chunk in chunks:
                yield chunk

        return [data async for data in event_data(arrive()) if data]

    assert asyncio.run(read([raw])) == expected
    for cut in range(1, len(raw)):  # every split in two, through CRLFs and UTF-8 alike
        assert asyncio.run(read([raw[:cut], raw[cut:]])) == expected, cut
    assert asyncio.run(read([raw[i : i + 1] for i in range(len(raw))])) == expected


# ---------------------------------------------------------------- proxies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def proxy(tmp_path: Path) -> Any:
    """A real forward proxy (proxy.py from PyPI), its access log kept, asking for a login."""
    port = _free_port()
    log = tmp_path / "proxy.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", str(port),
             "--num-acceptors", "1", "--num-workers", "1", "--basic-auth", "ann:s3cret",
             "--log-level", "INFO"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, "proxy.py did not listen within 30 s"
                time.sleep(0.1)
        yield types.SimpleNamespace(port=port, log=log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _through(proxy: Any) -> list[str]:
    return [line for line in proxy.log.read_text().splitlines() if "access_log" in line]


def test_http_proxy_from_the_environment_carries_the_model_request(
    proxy: Any, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    openai_server.add_text("through the proxy")
    env = _env(tmp_path, OPENAI_BASE_URL=openai_server.base_url,
               HTTP_PROXY=f"http://ann:s3cret@127.0.0.1:{proxy.port}", NO_PROXY="")  # fmt: skip
    out = _one_shot(env, tmp_path / "cwd")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answer"] == "through the proxy"
    assert any(f"POST 127.0.0.1:{openai_server.port}/v1/chat/completions" in line
               for line in _through(proxy)), _through(proxy)  # fmt: skip


def test_no_proxy_sends_the_request_straight_to_the_server(
    proxy: Any, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    openai_server.add_text("straight")
    env = _env(tmp_path, OPENAI_BASE_URL=openai_server.base_url,
               http_proxy=f"http://ann:s3cret@127.0.0.1:{proxy.port}", no_proxy="127.0.0.1")  # fmt: skip
    out = _one_shot(env, tmp_path / "cwd")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answer"] == "straight"
    assert _through(proxy) == []


def test_https_through_the_proxy_is_a_verified_tunnel(
    proxy: Any, https_server: ScriptedOpenAIServer, certificates: Path, tmp_path: Path
) -> None:
    https_server.add_text("tunnelled")
    env = _env(tmp_path, OPENAI_BASE_URL=https_server.base_url.replace("http:", "https:"),
               SSL_CERT_FILE=str(certificates / "ca.pem"),
               HTTPS_PROXY=f"ann:s3cret@127.0.0.1:{proxy.port}")  # fmt: skip
    out = _one_shot(env, tmp_path / "cwd")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answer"] == "tunnelled"
    assert any(f"CONNECT 127.0.0.1:{https_server.port}" in line for line in _through(proxy)), \
        _through(proxy)


def test_a_proxy_that_refuses_the_login_is_a_clear_error(
    proxy: Any, openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    openai_server.add_text("never")
    env = _env(tmp_path, OPENAI_BASE_URL=openai_server.base_url,
               HTTP_PROXY=f"http://ann:wrong@127.0.0.1:{proxy.port}")  # fmt: skip
    out = _one_shot(env, tmp_path / "cwd")
    assert out.returncode != 0
    shown = out.stdout + out.stderr
    assert f"the proxy http://127.0.0.1:{proxy.port} refused the request" in shown
    assert "asks for a login (407)" in shown and "HTTPS_PROXY=http://user:password@" in shown
    assert "wrong" not in shown  # the proxy's password is never shown
    assert openai_server.model_requests == []


def test_an_unreachable_proxy_is_named_in_the_error(
    openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    port = _free_port()  # nothing listens there
    env = _env(tmp_path, OPENAI_BASE_URL=openai_server.base_url,
               HTTP_PROXY=f"http://ann:s3cret@127.0.0.1:{port}")  # fmt: skip
    out = _one_shot(env, tmp_path / "cwd")
    assert out.returncode != 0
    shown = out.stdout + out.stderr
    assert f"through the proxy http://127.0.0.1:{port}" in shown, shown
    assert "s3cret" not in shown
    assert openai_server.model_requests == []


def test_a_socks_proxy_without_its_package_is_a_clear_error(
    openai_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    import importlib.util

    if importlib.util.find_spec("socksio") is not None:
        pytest.fail("socksio is installed here: this case needs an environment without it")
    env = _env(tmp_path, OPENAI_BASE_URL=openai_server.base_url,
               ALL_PROXY="socks5://ann:s3cret@127.0.0.1:1080")  # fmt: skip
    out = _one_shot(env, tmp_path / "cwd")
    assert out.returncode != 0
    shown = out.stdout + out.stderr
    assert "the proxy socks5://127.0.0.1:1080 is a SOCKS proxy, which needs the socksio" in shown
    assert "Traceback" not in shown and "s3cret" not in shown
    assert openai_server.model_requests == []

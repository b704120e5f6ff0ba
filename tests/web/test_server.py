"""The real server (``camloc serve`` as a subprocess, uvicorn, loopback only) on a tiny model:
it starts and says where, refuses bad start-up options with exit 2, and survives a bad image, a
client that hangs up mid-upload, raw traversal requests and a burst of concurrent requests."""

from __future__ import annotations

import io
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from PIL import Image

from camloc.errors import ConfigError

pytestmark = pytest.mark.slow


def _jpeg(seed: int, w: int = 120, h: int = 90) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def _raw(url: str, request: bytes, read: bool = True) -> bytes:
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(request)
        if not read:
            return b""
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def test_start_up_errors_exit_2(tiny_model_dir, tmp_path, capsys):
    """Through the CLI's own entry point: exit code 2, the reason, no traceback."""
    from camloc.cli import main

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        assert main(["serve", "--model", str(tiny_model_dir), "--port", str(port)]) == 2
        assert "cannot listen" in capsys.readouterr().err
    finally:
        busy.close()
    assert main(["serve", "--model", str(tiny_model_dir), "--runs", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path / "no-model"), "--port", "0"]) == 2
    assert main(["serve", "--port", "70000"]) == 2
    assert main(["serve", "--max-batch", "0"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_non_loopback_host_warns(monkeypatch, tiny_model_dir):
    """The warning is printed before anything is bound (the test binds nothing but loopback)."""
    from camloc.web import server

    def refuse(host, port):
        raise ConfigError("stop here")

    monkeypatch.setattr(server, "bind", refuse)
    out = io.StringIO()
    with pytest.raises(ConfigError, match="stop here"):
        server.serve(host="0.0.0.0", port=0, model=str(tiny_model_dir), out=out)
    assert "not a loopback address" in out.getvalue()
    out = io.StringIO()
    with pytest.raises(ConfigError):
        server.serve(host="127.0.0.1", port=0, model=str(tiny_model_dir), out=out)
    assert out.getvalue() == ""
    assert server.is_loopback("::1") and server.is_loopback("localhost") and server.is_loopback("127.0.0.9")
    assert not server.is_loopback("0.0.0.0") and not server.is_loopback("192.168.1.2")


def test_server_survives_abuse_and_batches_a_burst(start_server, tiny_model_dir, tmp_path):
    runs = tmp_path / "runs"
    (runs / "r").mkdir(parents=True)
    (runs / "r" / "report.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("top-secret-content")
    srv = start_server("--model", str(tiny_model_dir), "--runs", str(runs), "--max-upload-mb", "1",
                       "--batch-wait-ms", "20")
    url = srv.url
    assert srv.lines[0].startswith("camloc serve: http://127.0.0.1:")
    with httpx.Client(base_url=url, timeout=60) as c:
        # a bad image, then a good one
        r = c.post("/api/explain", files={"image": ("x.jpg", b"\xff\xd8\xff\xe0garbage")})
        assert r.status_code == 400 and r.json()["error"].startswith("image:")
        assert c.post("/api/explain", files={"image": ("a.jpg", _jpeg(1))}).status_code == 200
    # a client that announces 900 kB and hangs up after 20 kB
    head = (b"POST /api/explain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 900000\r\n"
            b"Content-Type: multipart/form-data; boundary=xx\r\n\r\n--xx\r\nContent-Disposition: "
            b"form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n")
    for _ in range(3):
        _raw(url, head + b"\xff\xd8\xff" + b"\0" * 20000, read=False)
    # announced too large: refused before the body is read
    big = _raw(url, b"POST /api/explain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000\r\n"
                    b"Content-Type: multipart/form-data; boundary=xx\r\nConnection: close\r\n\r\n")
    assert b" 413 " in big.split(b"\r\n", 1)[0] and b"exceeds the limit" in big
    # traversal as raw bytes, so no client normalises the path first
    for path in (b"/runs/files/../secret.txt", b"/runs/files/%2e%2e/secret.txt",
                 b"/runs/files/..%2f..%2fetc%2fpasswd", b"/runs/files/%2E%2E/%2E%2E/etc/passwd",
                 b"/runs/files//etc/passwd", b"/api/runs/report?run=..%2f"):
        resp = _raw(url, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status = resp.split(b"\r\n", 1)[0]
        assert any(code in status for code in (b" 400 ", b" 403 ", b" 404 ")), (path, status)
        assert b"top-secret" not in resp and b"root:" not in resp
    # a burst: 48 concurrent requests, every one answered
    images = [_jpeg(s) for s in range(6)]

    def one(i: int) -> tuple[int, dict]:
        with httpx.Client(base_url=url, timeout=120) as c:
            r = c.post("/api/explain", files={"image": (f"{i}.jpg", images[i % 6])},
                       data={"top_k": "2", "maps": "none", "method": "gradcam" if i % 4 == 0 else "cam"})
            return r.status_code, r.json()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(48)))
    assert [s for s, _ in results] == [200] * 48
    assert all(len(body["classes"]) == 2 for _, body in results)
    assert {body["method"] for _, body in results} == {"cam", "gradcam"}
    health = httpx.get(url + "/api/health", timeout=30).json()
    assert health["status"] == "ok"
    assert health["batching"]["largest_batch"] > 1  # concurrent requests shared passes
    assert health["batching"]["items"] >= 49
    assert srv.alive()
    log = srv.stop()
    assert "Traceback" not in log, log[-3000:]


def test_unreachable_by_other_host_names(start_server, tiny_model_dir):
    srv = start_server("--model", str(tiny_model_dir))
    resp = _raw(srv.url, b"GET /api/health HTTP/1.1\r\nHost: rebind.attacker.example\r\nConnection: close\r\n\r\n")
    assert b" 400 " in resp.split(b"\r\n", 1)[0] and b"is not served" in resp
    for host in (b"localhost", b"127.0.0.1:1234", b"[::1]:80"):
        resp = _raw(srv.url, b"GET /api/health HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
        assert b" 200 " in resp.split(b"\r\n", 1)[0], host

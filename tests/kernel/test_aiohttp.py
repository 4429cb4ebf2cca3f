"""Existing asyncio code runs unchanged: a real aiohttp application served through our stack, fetched with curl
by the kernel's TCP from inside the namespace."""

import asyncio
import hashlib

import pytest
from aiohttp import web

from tests.kernel.test_kernel_peer import US, family, netns, open_stack, run  # noqa: F401 (fixtures)

BODY = bytes(range(256)) * 4096  # 1 MiB


async def hello(request: web.Request) -> web.Response:
    return web.Response(
        text=f"hello {request.match_info['name']} from {request.transport.get_extra_info('sockname')[0]}"
    )


async def big(request: web.Request) -> web.Response:
    return web.Response(body=BODY)


async def digest(request: web.Request) -> web.Response:
    return web.Response(text=hashlib.sha256(await request.read()).hexdigest())


@pytest.mark.root
def test_curl_fetches_an_aiohttp_application_served_by_our_stack(netns, family, tmp_path):  # noqa: F811
    app = web.Application()
    app.add_routes([web.get("/hello/{name}", hello), web.get("/big", big), web.post("/digest", digest)])

    async def curl(*args: str) -> bytes:
        proc = netns.popen(["curl", "-sS", "--max-time", "30", *args], stdout=-1, stderr=-1)
        out, err = await asyncio.get_running_loop().run_in_executor(None, proc.communicate)
        assert proc.returncode == 0, err.decode()
        return out

    async def main():
        runner = web.AppRunner(app)
        await runner.setup()
        host = US[family] if family == 4 else f"[{US[family]}]"
        async with await open_stack(netns, family) as stack:
            server = await stack.create_server(runner.server, US[family], 8080)
            greeting = await curl(f"http://{host}:8080/hello/kernel")
            body = await curl(f"http://{host}:8080/big")
            upload = bytes(reversed(BODY))
            (tmp_path / "upload").write_bytes(upload)
            posted = await curl("--data-binary", f"@{tmp_path / 'upload'}", f"http://{host}:8080/digest")
            server.close()
        await runner.cleanup()
        return greeting, body, posted, upload

    greeting, body, posted, upload = run(main())
    assert greeting == f"hello kernel from {US[family]}".encode()
    assert body == BODY
    assert posted.decode() == hashlib.sha256(upload).hexdigest()

"""AUTH-8: a connection is ended when its token expires (timer per connection)."""

from __future__ import annotations

import asyncio
import time

from gwkit import GatewayProcess, Publisher, arun, connected, mint, new_message, unique


def test_connection_ends_at_token_expiry(gateway: GatewayProcess) -> None:
    async def body() -> None:
        tenant = unique("exp")
        short = await connected(gateway.url, mint(tenant, exp_in=2))
        exp = int(time.time()) + 2  # mint() rounds iat down, so exp <= this
        lasting = await connected(gateway.url, mint(tenant))
        await asyncio.wait_for(short.disconnected.wait(), timeout=6)
        assert time.time() <= exp + 1.5
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            await pub.publish(new_message(tenant, "c", "after-expiry"))
        assert (await lasting.next("new_message"))[1]["messageId"] == "after-expiry"
        assert short.received == []
        await lasting.close()

    arun(body())


def test_disconnect_before_expiry_cancels_timer(gateway: GatewayProcess) -> None:
    """A client that leaves before exp is not touched by its old timer (no error, gateway healthy)."""

    async def body() -> None:
        tenant = unique("exp2")
        c = await connected(gateway.url, mint(tenant, exp_in=1))
        await c.close()
        await asyncio.sleep(0)  # nothing to wait for: the check is that the gateway stays healthy below
        again = await connected(gateway.url, mint(tenant, exp_in=60))
        await asyncio.sleep(1.5)  # past the first token's exp: the cancelled timer must not fire on anyone
        assert again.sio.connected
        await again.close()

    arun(body())


def test_client_events_named_connect_or_disconnect_change_nothing(gateway: GatewayProcess) -> None:
    """python-socketio routes a client EVENT named "disconnect" to the disconnect handler; it must
    not cancel the expiry timer (the token would then never expire), nor may one named "connect"
    run the handshake again (ROB-1's reserved names)."""

    async def body() -> None:
        tenant = unique("exp3")
        c = await connected(gateway.url, mint(tenant, exp_in=2))
        await c.sio.eio.send('2["disconnect"]')  # Socket.IO EVENT packets, sent below the client's API
        await c.sio.eio.send('2["connect",{},{"token":"x"}]')
        await asyncio.wait_for(c.disconnected.wait(), timeout=6)  # still ended at exp

    arun(body())

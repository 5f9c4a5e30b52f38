"""Wire clients: everything that talks to the target (Socket.IO, AMQP, HTTP, a TCP fault proxy)."""

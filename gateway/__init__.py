"""Reference agent-portal gateway: RabbitMQ events -> Socket.IO tenant rooms, plus a REST read model.

Run it with ``python -m realtime_conformance.gateway``; see README.md for settings, promises and seams.
"""

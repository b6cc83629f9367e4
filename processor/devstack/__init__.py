"""The local stack without Docker: Tansu broker, ClickHouse 18.16, the Faust worker.

Modules: ``broker``, ``clickhouse``, ``worker`` (start/stop one component by pid file),
``stack`` (``up`` / ``status`` / ``down``), ``ports`` (port conflicts), ``proc`` (processes).
"""

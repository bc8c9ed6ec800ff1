"""The gateway: the platform's one front door, speaking the OpenAI API.

    python -m services.gateway        # what `lathe up` starts

API keys (hashed, in SQL), exact RPM/TPM/budget quotas (in process or on Redis),
routing to backend pools with canary splits, health checks and circuit breakers,
streaming passed through event by event, and Prometheus metrics on their own port.
"""

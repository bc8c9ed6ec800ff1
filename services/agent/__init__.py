"""The agent service: a tool-calling loop over the gateway (``python -m services.agent``)."""

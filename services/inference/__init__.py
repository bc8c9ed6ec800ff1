"""The inference service: serves the model a registry alias points at, through vLLM.

    python -m services.inference          # what `lathe up` starts

It resolves ``models:/<name>@<alias>`` in MLflow, downloads that version, runs vLLM's
OpenAI server on it and proxies the OpenAI API to it. When the alias moves it starts
the new version beside the old one, switches once the new one is healthy, lets the
old one finish its requests and stops it: clients see no failed request.
"""

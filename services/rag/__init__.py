"""The RAG service: ingest documents into Qdrant, retrieve hybrid, answer with citations.

    python -m services.rag            # settings from LATHE_RAG_* (see settings.py)

It sits behind the gateway (``/v1/rag/...``), which authenticates the caller and passes
the caller's key on; answers are generated through the gateway with that same key.
"""

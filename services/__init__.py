"""Lathe's long-running HTTP services, one package each. They import ``lathe`` and talk
to each other over HTTP only."""

"""Evaluation: perplexity on held-out text and a task score through the OpenAI API; the promotion gate."""

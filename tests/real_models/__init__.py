"""Pygent against real OpenAI-compatible servers (llama-cpp-python, llama-server, LiteLLM)."""

"""Adapters to models and model servers: ONNX sessions, OpenAI-compatible chat and embeddings, Gemini."""

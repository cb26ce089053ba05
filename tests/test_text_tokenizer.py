"""The light tokenizer of the synthesis stages gives transformers' ids and text, without importing either."""

import json
import shutil
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from ray_lcb.models import resolve_model
from ray_lcb.text_tokenizer import load_chat_token_counter, load_text_tokenizer

TEXT = ("Founders  at Y Combinator -- 2005's first batch -- wrote\n\n  code\tall night. \"Naïve\" ideas, "
        "façades & 北京: résumé #42 costs $3.50 (≈ €3)!\n" + "How to Do Great Work. " * 40)


@pytest.mark.parametrize("model", ["bundled:smollm2-135m-instruct", "bundled:all-minilm-l6-v2"])
def test_same_ids_and_text_as_transformers(model):
    light, reference = load_text_tokenizer(model), AutoTokenizer.from_pretrained(resolve_model(model))
    ids = reference(TEXT, add_special_tokens=False)["input_ids"]
    assert light.encode(TEXT) == ids and light.count(TEXT) == len(ids) > 100
    for piece in (ids, ids[:37], ids[13:90]):  # cuts at arbitrary token boundaries, as chunking does
        assert light.decode(piece) == reference.decode(piece)


def test_a_tokenizer_whose_decoding_transformers_post_processes_falls_back_to_transformers(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(resolve_model("bundled:all-minilm-l6-v2"), folder)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "clean_up_tokenization_spaces": True}))
    reference = AutoTokenizer.from_pretrained(folder)
    ids = reference("Hello , world ! It 's fine .", add_special_tokens=False)["input_ids"]
    # tokenizers alone would give "it ' s"; transformers cleans the spaces up.
    assert load_text_tokenizer(str(folder)).decode(ids) == reference.decode(ids) == "hello, world! it's fine."


def test_loading_imports_neither_torch_nor_transformers():
    # The point of the module: a stage actor that only counts tokens starts without them.
    code = ("import sys; from ray_lcb.text_tokenizer import load_text_tokenizer; "
            "assert load_text_tokenizer('bundled:smollm2-135m-instruct').count('hello world') == 2; "
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


CONVERSATIONS = [
    [{"role": "user", "content": TEXT}, {"role": "assistant", "content": "A short answer.\n\n- one\n- two"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}],
]


def test_chat_token_counts_equal_apply_chat_template():
    model = "bundled:smollm2-135m-instruct"
    count, reference = load_chat_token_counter(model), AutoTokenizer.from_pretrained(resolve_model(model))
    for messages in CONVERSATIONS:
        expected = reference.apply_chat_template(messages, tokenize=True)
        expected = len(expected["input_ids"] if hasattr(expected, "keys") else expected)
        content_tokens = sum(len(reference(m["content"], add_special_tokens=False)["input_ids"]) for m in messages)
        assert count(messages) == expected > content_tokens  # the template's own tokens are counted


def test_a_chat_template_in_another_form_falls_back_to_transformers(tmp_path):
    source, folder = resolve_model("bundled:smollm2-135m-instruct"), tmp_path / "model"
    folder.mkdir()
    for name in ("tokenizer.json", "config.json"):
        shutil.copy(source / name, folder / name)
    # Older checkpoints keep a list of named templates in tokenizer_config.json.
    settings = json.loads((source / "tokenizer_config.json").read_text())
    settings["chat_template"] = [{"name": "default", "template": (source / "chat_template.jinja").read_text()}]
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    reference = load_chat_token_counter("bundled:smollm2-135m-instruct")
    assert load_chat_token_counter(str(folder))(CONVERSATIONS[1]) == reference(CONVERSATIONS[1])


def test_the_chat_counter_does_not_import_torch():
    code = ("import sys; from ray_lcb.text_tokenizer import load_chat_token_counter; "
            "count = load_chat_token_counter('bundled:smollm2-135m-instruct'); "
            "assert count([{'role': 'user', 'content': 'hello world'}]) > 2; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"

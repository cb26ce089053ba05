"""Embedders: MiniLM mean pooling against published values, E5-style last-token pooling on a tiny random decoder."""

import json
import shutil

import numpy as np
import pytest
import torch

from ray_lcb.models import resolve_model
from ray_lcb.retrieval import EmbedderConfig, LastTokenEmbedder, MeanPoolingEmbedder, build_embedder
from ray_lcb.retrieval.config import E5_DEFAULT_TASK

from pg_corpus import paul_graham_documents

# ---------------------------------------------------------------------------------------------------------------
# mean pooling (real all-MiniLM-L6-v2)


def test_minilm_matches_sentence_transformers_reference(minilm):
    # The similarity matrix printed in the sentence-transformers README for all-MiniLM-L6-v2.
    vecs = minilm.embed_documents(["The weather is lovely today.", "It's so sunny outside!",
                                   "He drove to the stadium."])
    expected = np.array([[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]])
    assert isinstance(minilm, MeanPoolingEmbedder)
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(vecs @ vecs.T, expected, atol=1e-3)


def test_minilm_window_comes_from_sentence_bert_config(minilm):
    assert minilm.max_length == 256  # sentence_bert_config.json's max_seq_length, not BERT's 512 positions


def test_vector_does_not_depend_on_batch_padding(minilm, pg_documents):
    short = "Startups are a way to compress a whole working life into a few years."
    alone = minilm.embed_documents([short])
    batched = minilm.embed_documents([pg_documents[0]["text"], short, pg_documents[1]["text"]])
    np.testing.assert_allclose(batched[1], alone[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_long_document_modes(minilm):
    essay = " ".join(d["text"] for d in paul_graham_documents(1000, 80)[:6])  # ~500 words, 3 windows
    truncate = build_embedder(EmbedderConfig(long_documents="truncate"))
    passages, owner, weights = minilm.split_passages([essay, "a short one"])
    # Every passage fits the window once [CLS]/[SEP] are added, and the essay needed several.
    lengths = [len(minilm.tokenizer(p)["input_ids"]) for p in passages]
    assert max(lengths) <= minilm.max_length and (owner == 0).sum() > 1 and passages[-1] == "a short one"
    # mean_of_passages = token-weighted mean of the passage vectors, renormalised.
    passage_vecs = truncate.embed_documents(passages[:-1])
    expected = (passage_vecs * weights[:-1, None]).sum(0)
    expected /= np.linalg.norm(expected)
    got = minilm.embed_documents([essay])[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # A document within one window is embedded identically by both modes.
    np.testing.assert_allclose(minilm.embed_documents(["a short one"]), truncate.embed_documents(["a short one"]),
                               atol=1e-6)
    # Truncation only sees the start: its vector equals the first passage's.
    np.testing.assert_allclose(truncate.embed_documents([essay])[0], passage_vecs[0], atol=1e-5)


def test_pooling_config_other_than_mean_is_rejected(tmp_path):
    source = resolve_model("bundled:all-minilm-l6-v2")
    folder = tmp_path / "cls-model"
    shutil.copytree(source, folder)
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    with pytest.raises(ValueError, match="pooling_mode_cls_token"):
        build_embedder(EmbedderConfig(model=str(folder)))


def test_config_validation():
    with pytest.raises(ValueError, match="kind"):
        EmbedderConfig(kind="cls")
    with pytest.raises(ValueError, match="long_documents"):
        EmbedderConfig(long_documents="chunk")
    with pytest.raises(ValueError, match="max_length"):
        EmbedderConfig(max_length=2)
    with pytest.warns(UserWarning, match="query_instruction has no effect"):
        EmbedderConfig(query_instruction="find it")
    with pytest.raises(ValueError, match="max_length=1024 exceeds the 512 positions"):
        build_embedder(EmbedderConfig(max_length=1024))


# ---------------------------------------------------------------------------------------------------------------
# last-token pooling (tiny random Mistral standing in for E5-mistral-7b)


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    """A 2-layer random MistralModel with a word-level tokenizer (BOS added, no EOS), saved as an HF folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import MistralConfig, MistralModel, PreTrainedTokenizerFast

    words = sorted({w for d in paul_graham_documents(60, 80) for w in d["text"].split()} |
                   set(f"Instruct: {E5_DEFAULT_TASK}\nQuery: find tide".split()))
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256)
    folder = tmp_path_factory.mktemp("tiny-e5")
    MistralModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def _last_token_config(folder, **kwargs) -> EmbedderConfig:
    return EmbedderConfig(model=str(folder), kind="last_token", **kwargs)


def test_last_token_query_prefix_and_eos(tiny_decoder):
    embedder = build_embedder(_last_token_config(tiny_decoder))
    assert isinstance(embedder, LastTokenEmbedder) and embedder.max_length == 256
    assert embedder.format_query("find tide") == f"Instruct: {E5_DEFAULT_TASK}\nQuery: find tide"
    custom = build_embedder(_last_token_config(tiny_decoder, query_instruction="Retrieve essays"))
    assert custom.format_query("q") == "Instruct: Retrieve essays\nQuery: q"
    batch = embedder._tokenize(["startups are", "a b c d e f"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    eos, bos = embedder.tokenizer.eos_token_id, embedder.tokenizer.bos_token_id
    lengths = mask.sum(1)
    assert (ids[:, 0] == bos).all()
    assert ids[0, lengths[0] - 1] == eos and ids[1, lengths[1] - 1] == eos  # EOS appended after the text
    assert mask[0, lengths[0]:].eq(0).all()  # right padding


def test_last_token_vector_is_state_of_appended_eos(tiny_decoder):
    from transformers import AutoModel

    embedder = build_embedder(_last_token_config(tiny_decoder))
    texts = ["startups are hard", "the best way to get startup ideas is not to try to think of them"]
    got = embedder.embed_documents(texts)
    model = AutoModel.from_pretrained(tiny_decoder, dtype=torch.float32).eval()
    for text, vec in zip(texts, got):
        ids = embedder.tokenizer(text)["input_ids"] + [embedder.tokenizer.eos_token_id]
        with torch.no_grad():
            state = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1].numpy()
        np.testing.assert_allclose(vec, state / np.linalg.norm(state), atol=1e-5)
    # Queries are documents with the instruction prefix.
    np.testing.assert_allclose(embedder.embed_queries(["find tide"]),
                               embedder.embed_documents([embedder.format_query("find tide")]), atol=1e-6)


def test_last_token_pooling_handles_left_padding(tiny_decoder):
    embedder = build_embedder(_last_token_config(tiny_decoder))
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert torch.equal(embedder._pool(hidden, right), hidden[[0, 1], [1, 3]])
    assert torch.equal(embedder._pool(hidden, left), hidden[[0, 1], [3, 3]])


def test_last_token_long_documents_use_windows(tiny_decoder):
    windowed = build_embedder(_last_token_config(tiny_decoder, max_length=16))
    text = " ".join(d["text"] for d in paul_graham_documents(60, 80)[:2])
    passages, owner, weights = windowed.split_passages([text])
    # A window holds max_length minus BOS and the appended EOS.
    assert len(passages) > 1 and weights.max() == 14
    assert all(len(windowed._tokenize([p])["input_ids"][0]) <= 16 for p in passages)
    expected = (windowed._embed(passages) * weights[:, None]).sum(0)
    np.testing.assert_allclose(windowed.embed_documents([text])[0], expected / np.linalg.norm(expected), atol=1e-5)
    # Without normalisation the document vector is the plain token-weighted mean of raw passage vectors.
    raw = build_embedder(_last_token_config(tiny_decoder, max_length=16, normalize=False))
    expected = (raw._embed(passages) * weights[:, None]).sum(0) / weights.sum()
    np.testing.assert_allclose(raw.embed_documents([text])[0], expected, rtol=1e-5, atol=1e-5)


def test_last_token_needs_eos(tmp_path, tiny_decoder):
    folder = tmp_path / "no-eos"
    shutil.copytree(tiny_decoder, folder)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = folder / name
        if path.exists():
            data = json.loads(path.read_text())
            data.pop("eos_token", None)
            path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="EOS"):
        build_embedder(_last_token_config(folder))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_last_token_on_gpu_in_bf16_matches_cpu(tiny_decoder):
    texts = ["startups are hard", "the best way to get startup ideas is not to try to think of them"]
    cpu = build_embedder(_last_token_config(tiny_decoder, device="cpu")).embed_documents(texts)
    gpu_embedder = build_embedder(_last_token_config(tiny_decoder, device="auto", dtype="bfloat16"))
    assert gpu_embedder.device.type == "cuda"
    gpu = gpu_embedder.embed_documents(texts)
    assert gpu.dtype == np.float32
    np.testing.assert_allclose((gpu * cpu).sum(1), 1.0, atol=2e-2)  # bf16: cosine, not bits

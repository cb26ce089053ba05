"""RULER's QA tasks: qa_1 (SQuAD v2 dev) and qa_2 (HotpotQA dev, distractor setting).

Follows ``scripts/data/synthetic/qa.py`` of NVIDIA/RULER. Sample ``i`` asks
question ``i`` of the dataset (answerable SQuAD questions only); its gold
paragraph(s) are mixed with distractor paragraphs (for SQuAD, the same
article's other paragraphs first), shuffled and labelled "Document k:". The
haystack size fitted by ``ruler.py`` is the number of documents.

The datasets are read from local files named by ``squad_path`` and
``hotpotqa_path``; nothing is downloaded.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = ("Answer the question based on the given documents. Only give me the answer and do not output any "
            "other words.\n\nThe following are given documents.\n\n{context}\n\n"
            "Answer the question based on the given documents. Only give me the answer and do not output any "
            "other words.\n\nQuestion: {query}")
ANSWER_PREFIX = " Answer:"
DOCUMENT = "Document {i}:\n{document}"


@dataclass(frozen=True)
class QaDataset:
    """Questions (query, answers, gold doc ids, same-article doc ids) over a shared document list."""
    questions: tuple[dict, ...]
    documents: tuple[str, ...]


@functools.lru_cache(maxsize=4)
def load_squad(path: str) -> QaDataset:
    """SQuAD v2 JSON (``dev-v2.0.json``): ``{"data": [{"paragraphs": [{"context", "qas"}]}]}``."""
    data = _read_json(path, "squad_path")
    try:
        articles = data["data"]
        documents = sorted({p["context"] for article in articles for p in article["paragraphs"]})
        doc_id = {doc: i for i, doc in enumerate(documents)}
        questions = []
        for article in articles:
            article_docs = [doc_id[p["context"]] for p in article["paragraphs"]]
            for paragraph in article["paragraphs"]:
                gold = doc_id[paragraph["context"]]
                for qa in paragraph["qas"]:
                    if qa.get("is_impossible", False) or not qa["answers"]:
                        continue
                    questions.append({"query": qa["question"], "answers": [a["text"] for a in qa["answers"]],
                                      "gold": [gold], "more": [d for d in article_docs if d != gold]})
    except (KeyError, TypeError) as err:
        raise ValueError(f"squad_path '{path}' is not SQuAD v2 JSON (missing {err}); "
                         "expected dev-v2.0.json from https://rajpurkar.github.io/SQuAD-explorer/") from err
    return _checked(QaDataset(tuple(questions), tuple(documents)), path, "squad_path")


@functools.lru_cache(maxsize=4)
def load_hotpotqa(path: str) -> QaDataset:
    """HotpotQA JSON (``hotpot_dev_distractor_v1.json``): a list of ``{"question", "answer", "context"}``."""
    data = _read_json(path, "hotpotqa_path")
    try:
        def doc(title: str, sentences: list[str]) -> str:
            return f"{title}\n{''.join(sentences)}"

        documents = sorted({doc(t, s) for item in data for t, s in item["context"]})
        doc_id = {d: i for i, d in enumerate(documents)}
        questions = [{"query": item["question"], "answers": [item["answer"]],
                      "gold": [doc_id[doc(t, s)] for t, s in item["context"]], "more": []} for item in data]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"hotpotqa_path '{path}' is not HotpotQA JSON ({err!r}); expected "
                         "hotpot_dev_distractor_v1.json from https://hotpotqa.github.io/") from err
    return _checked(QaDataset(tuple(questions), tuple(documents)), path, "hotpotqa_path")


def _read_json(path: str, field: str):
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{field} '{path}' does not exist; point {field} at the dataset's JSON file")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{field} '{path}' is not valid JSON: {err}") from err


def _checked(dataset: QaDataset, path: str, field: str) -> QaDataset:
    if not dataset.questions:
        raise ValueError(f"{field} '{path}' holds no answerable question")
    return dataset


def size_range(dataset: QaDataset, index: int) -> tuple[int, int | None]:
    question = dataset.questions[index % len(dataset.questions)]
    return len(question["gold"]), len(dataset.documents)


def build_qa(dataset: QaDataset, size: int, rng: random.Random, *, index: int) -> dict:
    """Question ``index`` with ``size`` documents (gold first, then distractors), shuffled."""
    question = dataset.questions[index % len(dataset.questions)]
    gold, more = list(question["gold"]), list(question["more"])
    if size >= len(dataset.documents):
        chosen = list(range(len(dataset.documents)))
    elif size - len(gold) > len(more):
        taken = set(gold) | set(more)
        others = [i for i in range(len(dataset.documents)) if i not in taken]
        chosen = gold + more + rng.sample(others, size - len(gold) - len(more))
    else:
        chosen = gold + rng.sample(more, size - len(gold))
    rng.shuffle(chosen)
    context = "\n\n".join(DOCUMENT.format(i=k + 1, document=dataset.documents[d]) for k, d in enumerate(chosen))
    return {"input": TEMPLATE.format(context=context, query=question["query"]), "answer_prefix": ANSWER_PREFIX,
            "answers": list(question["answers"]), "depth": None}

"""The synthesis job: corpus -> index -> streaming agent workflow -> Parquet samples.

    ray-lcb synthesize --config local --num-samples 8 --out runs/data

``build_synthesis_pipeline`` chains the stages as Ray Data operators (each an
actor pool that holds a Serve handle to the one shared LLM deployment, or the
retriever); ``run_synthesis`` feeds it seed rows round by round, commits the
finished rows exactly once (``writer.py``), replaces dropped samples with
reserve seeds within the round (``reserve.py``) and with fresh seeds in the next
round when the reserves run out, until the requested counts are reached, and
writes ``report.json`` and a length histogram. Killed and rerun with the same
arguments, it skips every committed sample id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import ray
from filelock import FileLock
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ray_lcb.corpus import CorpusConfig, PreparedCorpus, corpus_fingerprint, prepare_corpus, read_corpus
from ray_lcb.models import cache_dir
from ray_lcb.retrieval import IndexConfig, build_index
from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.serving.launch import start_llm_service
from ray_lcb.synthesis.config import SynthesisConfig
from ray_lcb.synthesis.instruction_stage import InstructionStage
from ray_lcb.synthesis.records import LONG_INPUT, LONG_OUTPUT
from ray_lcb.synthesis.report import write_report
from ray_lcb.synthesis.reserve import RESERVE_UNUSED, SeedGate
from ray_lcb.synthesis.response_stage import ResponseStage
from ray_lcb.synthesis.retrieval_stage import RetrievalStage
from ray_lcb.synthesis.sample_stage import SampleStage
from ray_lcb.synthesis.seeds import (CorpusView, id_number, long_output_candidates, plan_long_input_seed,
                                     plan_long_output_seed)
from ray_lcb.synthesis.summarize_stage import QueryFocusedSummaryStage
from ray_lcb.synthesis.writer import ShardWriter
from ray_lcb.text_tokenizer import load_text_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class SynthesisInputs:
    """Everything the job needs besides its own config (runtime objects, not values)."""

    corpus: CorpusConfig
    llm: LLMServingConfig
    index: IndexConfig
    seed: int = 0
    notes: list[str] = field(default_factory=list)


def prepare_cached_corpus(corpus: CorpusConfig) -> PreparedCorpus:
    return prepare_corpus(corpus, cache_dir() / "corpora" / corpus_fingerprint(corpus))


def ensure_index(prepared: PreparedCorpus, corpus: CorpusConfig, index: IndexConfig, index_dir: str | None) -> Path:
    """The configured index folder, or one built for this corpus and cached by fingerprint."""
    if index_dir:
        return Path(index_dir)
    key = f"{corpus_fingerprint(corpus)}-{hashlib.sha1(index.model_dump_json().encode()).hexdigest()[:12]}"
    path = cache_dir() / "indexes" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # concurrent jobs on one machine build it once
        if not (path / "manifest.json").exists():
            logger.info("building the retrieval index for this corpus in %s", path)
            build_index(read_corpus(prepared), index, path, overwrite=True)
    return path


_LIGHT_STAGE_MEMORY = 512 * 1024**2  # bytes, per actor of a stage that holds only a tokenizer


def build_synthesis_pipeline(seeds: list[dict], config: SynthesisConfig, llm: LLMServingConfig, index_dir: Path,
                             student_model: str, seed: int, seed_gate=None) -> ray.data.Dataset:
    """Seed rows -> instruction -> retrieval -> query-focused summaries -> response -> sample.

    ``seed_gate``: a :class:`SeedGate` that holds reserve seeds back at the instruction stage."""
    llm_args = dict(llm_config=llm.model_dump(), synthesis_config=config.model_dump(), seed_gate=seed_gate)
    # max_concurrent_calls_per_actor: without it an actor runs one batch at a time even when its
    # UDF is async, and the replica sees only stage_batch_size requests per stage.
    pool = ray.data.ActorPoolStrategy(min_size=1, max_size=config.num_stage_actors,
                                      max_tasks_in_flight_per_actor=config.batches_per_actor,
                                      max_concurrent_calls_per_actor=config.batches_per_actor)
    # LLM stages wait on the deployment, they do not compute: a small CPU share each. Their
    # memory (a tokenizer and the Ray worker: ~380 MiB measured) is declared so Ray places them
    # by it, and Ray Data stops warning every 30 s that they use more than they asked for.
    llm_stage = dict(batch_format="pyarrow", batch_size=config.stage_batch_size, compute=pool, num_cpus=0.1,
                     memory=_LIGHT_STAGE_MEMORY)
    dataset = ray.data.from_items(seeds, override_num_blocks=max(1, len(seeds)))
    # One row per batch where reserves wait: a waiting reserve must not hold a seed of its batch back.
    instruction_stage = dict(llm_stage, batch_size=1) if seed_gate is not None else llm_stage
    dataset = dataset.map_batches(InstructionStage, fn_constructor_kwargs=llm_args, **instruction_stage)
    dataset = dataset.map_batches(
        RetrievalStage, fn_constructor_kwargs=dict(index_dir=str(index_dir), synthesis_config=config.model_dump(),
                                                   student_model=student_model),
        batch_format="pyarrow", batch_size=config.stage_batch_size, compute=pool, num_cpus=0.5)
    dataset = dataset.map_batches(QueryFocusedSummaryStage, fn_constructor_kwargs=llm_args, **llm_stage)
    dataset = dataset.map_batches(ResponseStage, fn_constructor_kwargs=llm_args, **llm_stage)
    return dataset.map_batches(
        SampleStage, fn_constructor_kwargs=dict(synthesis_config=config.model_dump(), generator_model=llm.model,
                                                student_model=student_model, job_seed=seed),
        batch_format="pyarrow", batch_size=config.stage_batch_size, compute=pool, num_cpus=0.1,
        memory=_LIGHT_STAGE_MEMORY)


def numbers_to_run(target: int, kept: set[str], processed: set[str], oversample: float = 0.0,
                   reserve: float = 0.0) -> tuple[list[int], list[int]]:
    """Sample numbers to process next, as (started at once, reserves): the first
    ``ceil(needed * (1 + oversample))`` numbers not processed yet, then ``ceil(needed * reserve)`` more,
    where ``needed = target - kept``.

    Ids come from one deterministic sequence; dropped ids are replaced by the
    next unused ones, and a resumed job picks up the same ranges.
    """
    needed = target - len(kept)
    if needed <= 0:
        return [], []
    start, spare = math.ceil(needed * (1 + oversample)), math.ceil(needed * reserve)
    done = {id_number(i) for i in processed}
    numbers = [n for n in range(len(done) + start + spare) if n not in done]
    return numbers[:start], numbers[start:]


def run_synthesis(config: SynthesisConfig, inputs: SynthesisInputs, out_dir: str | Path, *,
                  progress: Callable[[str], None] = print) -> dict:
    """Run (or resume) the synthesis job; return the report written to ``out_dir/report.json``."""
    started = time.time()
    out_dir = Path(out_dir)
    student_model = config.student_model or inputs.llm.model
    prepared = prepare_cached_corpus(inputs.corpus)
    progress(f"corpus: {prepared.report.num_kept} documents ({dict(prepared.report.skipped)} skipped)")
    index_dir = ensure_index(prepared, inputs.corpus, inputs.index, config.index_dir)
    progress(f"index: {index_dir}")
    start_llm_service(inputs.llm)
    corpus = CorpusView.load(prepared.files)
    candidates = long_output_candidates(corpus, config, load_text_tokenizer(student_model).count)
    notes = list(inputs.notes)
    if config.num_long_output_samples and not candidates:
        notes.append(f"long_output: no corpus document has {config.long_output_tokens_min}-"
                     f"{config.long_output_tokens_max} student tokens; no long-output samples made")
    targets = {LONG_INPUT: config.num_samples, LONG_OUTPUT: config.num_long_output_samples if candidates else 0}

    writer = ShardWriter(out_dir, config.samples_per_shard)
    run_stats = {"rows": 0, "samples": 0, "llm_completion_tokens": 0}
    try:
        for round_index in range(config.max_rounds):
            kept, dropped = writer.committed_ids()
            seeds, reserves = _round_seeds(config, corpus, candidates, inputs.seed, targets, kept, dropped)
            if not seeds:
                break
            progress(f"round {round_index + 1}: {len(seeds)} seeds" +
                     (f", {len(reserves)} more in reserve" if reserves else ""))
            kept_count = {t: sum(i.startswith(_PREFIX[t]) for i in kept) for t in targets}
            needed = {t: targets[t] - kept_count[t] for t in targets}
            gate = _seed_gate(config, seeds, reserves, needed) if reserves else None
            try:
                _run_round(build_synthesis_pipeline(seeds + reserves, config, inputs.llm, index_dir,
                                                    student_model, inputs.seed, seed_gate=gate),
                           gate, targets, kept_count, writer, run_stats, progress)
            finally:
                if gate is not None:
                    ray.kill(gate)
            writer.commit()
    finally:
        writer.close()
    report = write_report(out_dir, config, writer, prepared, run_stats, time.time() - started, notes,
                          generator_model=inputs.llm.model, student_model=student_model, index_dir=index_dir)
    progress(f"done: {report['samples']['total']} samples in {out_dir / 'data'}; report {out_dir / 'report.json'}")
    return report


_PREFIX = {LONG_INPUT: "li-", LONG_OUTPUT: "lo-"}


def _run_round(dataset: ray.data.Dataset, gate, targets: dict, kept_count: dict, writer: ShardWriter,
               run_stats: dict, progress: Callable[[str], None]) -> None:
    """Write the round's finished rows until every target is met (the rest of the round is not needed);
    ``kept_count``: samples per data type so far, updated."""
    # prefetch_batches=0: with prefetching, the iterator holds a finished row back until the next one
    # finishes, so the driver saw the last needed sample one row late (and a reserve that only that row's
    # report would release waited for ever).
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0):
        for row in batch.to_pylist():
            if row["drop_reason"] == RESERVE_UNUSED:
                continue  # never ran: not written, so its id stays free for a later run
            if gate is not None:  # drops the stages did not report release reserves too
                (gate.note_drop if row["drop_reason"] else gate.note_kept).remote(row["sample_id"])
            data_type = row["data_type"]
            if not row["drop_reason"] and kept_count[data_type] >= targets[data_type]:
                row["drop_reason"], row["drop_stage"] = "surplus", "sample"  # oversampled seed not needed
            kept_count[data_type] += 0 if row["drop_reason"] else 1
            writer.add(row)
            _count(run_stats, row, progress)
        if all(kept_count[t] >= targets[t] for t in targets):
            return


def _seed_gate(config: SynthesisConfig, seeds: list[dict], reserves: list[dict], needed: dict[str, int]):
    """The round's gate: each data type's ids in planned order, its seeds admitted at once."""
    order: dict[str, list[str]] = {}
    for row in seeds + reserves:
        order.setdefault(row["data_type"], []).append(row["sample_id"])
    started = {t: sum(r["data_type"] == t for r in seeds) for t in order}
    # On the driver's node: a gate on a worker node would die with it (the node-loss fault test).
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return SeedGate.options(scheduling_strategy=here).remote(order, {t: needed[t] for t in order}, started,
                                                             config.oversample)


def _count(run_stats: dict, row: dict, progress: Callable[[str], None]) -> None:
    run_stats["rows"] += 1
    run_stats["samples"] += 0 if row["drop_reason"] else 1
    run_stats["llm_completion_tokens"] += row["llm_completion_tokens"] or 0
    status = f"dropped ({row['drop_stage']}: {row['drop_reason']})" if row["drop_reason"] else \
        f"ok, {row['input_tokens']} input + {row['output_tokens']} output tokens"
    progress(f"  {row['sample_id']}: {status}")


def _round_seeds(config, corpus, candidates, job_seed, targets, kept, dropped) -> tuple[list[dict], list[dict]]:
    """The round's seed rows, (started at once, reserves); every data type's started seeds come first, so
    Ray Data hands them to the instruction stage before any reserve waits there."""
    planners = {LONG_INPUT: lambda n: plan_long_input_seed(corpus, config, job_seed, n),
                LONG_OUTPUT: lambda n: plan_long_output_seed(candidates, config, job_seed, n)}
    started, reserves = [], []
    for data_type, target in targets.items():
        prefix = _PREFIX[data_type]
        kept_t = {i for i in kept if i.startswith(prefix)}
        processed_t = kept_t | {i for i in dropped if i.startswith(prefix)}
        now, later = numbers_to_run(target, kept_t, processed_t, config.oversample, config.reserve)
        started.extend(planners[data_type](n) for n in now)
        reserves.extend(planners[data_type](n) for n in later)
    return started, reserves


def load_samples(out_dir: str | Path):
    """The committed samples as a ``datasets.Dataset``."""
    import datasets

    files = sorted(str(p) for p in (Path(out_dir) / "data").glob("samples-*.parquet"))
    return datasets.load_dataset("parquet", data_files=files, split="train")


def read_report(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / "report.json").read_text())

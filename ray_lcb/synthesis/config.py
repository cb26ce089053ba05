"""Config of the synthesis job (``ray-lcb synthesize``)."""

from typing import Literal

from pydantic import Field, model_validator

from ray_lcb.configbase import ComponentConfig

INSTRUCTION_TYPES = {
    "cross_source_summary": "asks for a summary that combines what several different sources say about one topic",
    "comparison": "asks to compare and contrast ideas, arguments or facts that appear in different sources",
    "multi_hop_question": "is a question whose answer needs facts from two or more sources chained together",
    "extract_and_aggregate": "asks to extract every instance of something (advice, examples, claims) across "
                             "sources and organise them into a list",
    "timeline": "asks to order events, developments or stages mentioned across sources into a timeline",
}


class SynthesisConfig(ComponentConfig):
    num_samples: int = Field(8, ge=0, description="Long-input samples to produce (more seeds are drawn to replace drops).")
    num_long_output_samples: int = Field(
        2, ge=0, description="Long-output (instruction back-translation) samples to produce.")
    student_model: str | None = Field(
        None, description="Model whose tokenizer measures sample lengths (the model to be trained); None: llm.model.")
    target_tokens_min: int = Field(4096, ge=256, description="Shortest target input length of a long-input sample, in student tokens.")
    target_tokens_max: int = Field(16384, ge=256, description="Longest target input length of a long-input sample, in student tokens.")
    long_output_tokens_min: int = Field(2048, ge=64, description="Shortest document used as a long-output target (student tokens).")
    long_output_tokens_max: int = Field(32768, ge=64, description="Longest document used as a long-output target (student tokens).")
    instruction_types: list[str] = Field(
        default_factory=lambda: list(INSTRUCTION_TYPES), description=f"Instruction types drawn uniformly; known: {sorted(INSTRUCTION_TYPES)}.")
    seed_chunk_chars: int = Field(600, ge=50, description="Length of the random corpus chunk put in every instruction prompt.")
    retrieval_candidates: int = Field(64, ge=1, description="Documents retrieved per instruction before filling to the target length.")
    chunk_tokens: int = Field(4096, ge=128, description="Largest chunk of retrieved text one summarisation call reads (generator tokens).")
    summary_max_tokens: int = Field(200, ge=16, description="Token budget of one query-focused summary.")
    summaries_budget_tokens: int = Field(
        3072, ge=32, description="The summaries given to the response writer must fit this many generator tokens; "
        "above it they are grouped and summarised again (recursively).")
    max_summary_levels: int = Field(4, ge=1, description="Deepest recursion of summaries before a sample is dropped.")
    instruction_max_tokens: int = Field(96, ge=1, description="Token budget of a generated instruction.")
    response_max_tokens: int = Field(512, ge=16, description="Token budget of a generated response.")
    truncated_responses: Literal["drop", "trim"] = Field(
        "drop", description="A response cut at response_max_tokens is dropped, or trimmed to its last complete "
        "sentence ('trim' suits small generators that rarely stop by themselves).")
    min_response_chars: int = Field(80, ge=1, description="Shorter responses are invalid (retried, then dropped).")
    max_retries: int = Field(2, ge=0, description="Retries of an invalid LLM output before the sample is dropped.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature of instruction generation (responses use temperature/2).")
    instruction_position: Literal["before", "after"] = Field(
        "after", description="Where the instruction goes relative to the documents in the training input.")
    oversample: float = Field(
        0.0, ge=0, description="Extra rows kept in flight, as a fraction of the samples still needed: they hedge "
        "against late drops (the last sample of a round gets a second row), but take a share of the LLM. Surplus "
        "samples are recorded as dropped.")
    reserve: float = Field(
        1.0, ge=0, description="Reserve seeds per round, as a fraction of the samples still needed: each drop "
        "releases one at once, so drops are replaced within the round (a reserve never released costs nothing).")
    max_rounds: int = Field(3, ge=1, description="Passes over fresh seeds to replace dropped samples before giving up.")
    samples_per_shard: int = Field(4, ge=1, description="Samples per committed output Parquet shard (the unit of resume).")
    stage_batch_size: int = Field(
        1, ge=1, description="Rows per Ray Data batch between stages. A batch moves on at the pace of its slowest "
        "row (one that retries its response holds its batch-mates back), so 1 streams best; larger batches cut "
        "per-batch overhead when rows are many and short.")
    batches_per_actor: int = Field(
        8, ge=1, description="Batches an LLM stage actor works on at once (stage_batch_size x this = its concurrent "
        "requests; the replica batches them).")
    num_stage_actors: int = Field(1, ge=1, description="Actors per LLM stage (they only wait on the deployment; 1 suffices on CPU).")
    index_dir: str | None = Field(
        None, description="Prebuilt index folder; None builds one for the corpus and caches it by fingerprint.")

    @model_validator(mode="after")
    def _check(self):
        if self.target_tokens_max < self.target_tokens_min:
            raise ValueError(f"target_tokens_max ({self.target_tokens_max}) < target_tokens_min ({self.target_tokens_min})")
        if self.long_output_tokens_max < self.long_output_tokens_min:
            raise ValueError("long_output_tokens_max < long_output_tokens_min")
        unknown = set(self.instruction_types) - set(INSTRUCTION_TYPES)
        if unknown or not self.instruction_types:
            raise ValueError(f"instruction_types: unknown {sorted(unknown)}; choose from {sorted(INSTRUCTION_TYPES)}")
        return self

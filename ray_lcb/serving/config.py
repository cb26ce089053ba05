"""Config of the one shared LLM deployment (see ``serving/README.md``)."""

from typing import Literal

from pydantic import Field, model_validator

from ray_lcb.configbase import ComponentConfig


class LLMServingConfig(ComponentConfig):
    engine: Literal["transformers", "vllm"] = Field(
        "transformers", description="Replica engine: 'vllm' (GPU, through ray.serve.llm) or 'transformers' (CPU, batched).")
    model: str = Field("bundled:smollm2-135m-instruct", description="Model reference (see ray_lcb.models).")
    app_name: str = Field("ray_lcb_llm", description="Serve application name every client looks up.")
    deployment_name: str = Field("ray_lcb_llm", description="Serve deployment name every client looks up.")
    min_replicas: int = Field(1, ge=1, description="Autoscaling lower bound of replicas.")
    max_replicas: int = Field(1, ge=1, description="Autoscaling upper bound of replicas.")
    num_cpus_per_replica: float = Field(1.0, gt=0, description="CPUs reserved by each replica.")
    num_gpus_per_replica: float = Field(0.0, ge=0, description="GPUs per replica (vLLM: tensor_parallel_size GPUs).")
    max_ongoing_requests: int = Field(256, ge=1, description="Requests a replica accepts before Serve queues or rejects.")
    max_queued_requests: int = Field(
        -1, ge=-1, description="Requests queued per caller before Serve rejects with BackPressureError (-1: unbounded).")
    max_batch_size: int = Field(
        8, ge=1, description="Transformers engine: most requests decoded together (continuous batching: "
                             "requests join and leave the running batch at every step).")
    max_model_len: int | None = Field(
        None, ge=64, description="Prompt + output token limit per request (None: the model's max_position_embeddings).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype. auto: bfloat16 on a GPU or a CPU with native bf16 (AVX512-BF16, AMX), "
                            "float32 on other CPUs (emulated bf16 is slower); vLLM: the model's own dtype.")
    num_threads: int | None = Field(
        None, ge=1, description="Transformers engine: torch intra-op threads (None: the replica's CPUs, at least 1).")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM: GPUs per replica.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=0.95, description="vLLM: fraction of GPU memory for weights and KV cache.")
    host: str = Field("127.0.0.1", description="HTTP bind address of the OpenAI endpoint (localhost unless you need otherwise).")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the OpenAI endpoint.")

    @model_validator(mode="after")
    def _check_replicas(self):
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})")
        if self.engine == "vllm" and self.num_gpus_per_replica == 0:
            raise ValueError("engine 'vllm' needs num_gpus_per_replica >= 1; use engine 'transformers' on CPU")
        return self

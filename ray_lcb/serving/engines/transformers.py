"""CPU engine: a transformers causal LM that decodes a batch of requests at once.

The Serve replica (``serving/deployment.py``) collects concurrent requests
with ``@serve.batch`` and hands them here. Requests are left-padded into one
``generate`` call per group of equal sampling settings; each row stops on its
own (EOS, its own ``max_tokens`` or one of its stop strings), so one long
answer does not make the short ones in the batch pay for extra text. Prompts
of very different lengths go into separate ``generate`` calls
(:func:`length_buckets`): left padding a 200-token prompt to 7,000 tokens
costs more than decoding it on its own (measured: one 7.5k-token prompt
batched with three short ones took 173 s, the same four apart about 35 s).
"""

from __future__ import annotations

import torch

from ray_lcb.serving.protocol import GenerationRequest, GenerationResult


class _RowStopper:
    """Per-row stopping: own token budget and stop strings (transformers
    StoppingCriteria protocol: return a bool per row)."""

    def __init__(self, tokenizer, prompt_len: int, requests: list[GenerationRequest]):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.max_tokens = torch.tensor([r.params.max_tokens for r in requests])
        self.stops = [r.params.stop for r in requests]
        self.longest_stop = max((len(s) for stops in self.stops for s in stops), default=0)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_len
        done = generated >= self.max_tokens.to(input_ids.device)
        if self.longest_stop:
            # Decode only a short tail: enough tokens to contain the longest stop string.
            tail = input_ids[:, -min(generated, self.longest_stop + 4):]
            for row, stops in enumerate(self.stops):
                if stops and not done[row]:
                    text = self.tokenizer.decode(tail[row], skip_special_tokens=True)
                    done[row] = any(s in text for s in stops)
        return done


def length_buckets(lengths: list[int], *, max_ratio: float = 1.5, slack_tokens: int = 256) -> list[list[int]]:
    """Indices grouped so that no prompt is padded far beyond its own length.

    Sorted by length, a new bucket starts when a prompt is longer than
    ``max_ratio`` × the bucket's shortest plus ``slack_tokens`` (the slack keeps
    short prompts, whose padding is cheap, together).
    """
    buckets: list[list[int]] = []
    shortest = 0
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if not buckets or lengths[index] > shortest * max_ratio + slack_tokens:
            buckets.append([])
            shortest = lengths[index]
        buckets[-1].append(index)
    return buckets


class TransformersEngine:
    """Batched generation with a transformers model (CPU, or one GPU without vLLM)."""

    def __init__(self, model_path: str, *, dtype: str = "float32", max_model_len: int | None = None,
                 num_threads: int | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if num_threads:
            torch.set_num_threads(num_threads)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=getattr(torch, dtype), trust_remote_code=False, use_safetensors=True)
        self.model.eval()
        if torch.cuda.is_available():
            self.model.to("cuda")
        self.max_model_len = max_model_len or self.model.config.max_position_embeddings
        self.eos_ids = self._eos_ids()

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        return sorted(set(ids if isinstance(ids, list) else [ids]))

    def render(self, request: GenerationRequest) -> str:
        if request.messages is None:
            return request.prompt
        return self.tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult | Exception]:
        """Generate for every request; a bad request yields its ValueError in place."""
        results: list[GenerationResult | Exception | None] = [None] * len(requests)
        encoded, groups = {}, {}
        for index, request in enumerate(requests):
            ids = self.tokenizer(self.render(request), add_special_tokens=False)["input_ids"]
            if len(ids) + request.params.max_tokens > self.max_model_len:
                results[index] = ValueError(
                    f"prompt of {len(ids)} tokens + max_tokens {request.params.max_tokens} exceeds "
                    f"max_model_len {self.max_model_len}")
                continue
            encoded[index] = ids
            p = request.params
            key = (p.greedy, p.temperature, p.top_p, p.seed)
            groups.setdefault(key, []).append(index)
        for group in groups.values():
            for bucket in length_buckets([len(encoded[i]) for i in group]):
                indices = [group[i] for i in bucket]
                for index, result in zip(indices, self._generate_group([requests[i] for i in indices],
                                                                       [encoded[i] for i in indices])):
                    results[index] = result
        return results

    @torch.inference_mode()
    def _generate_group(self, requests: list[GenerationRequest], prompts: list[list[int]]) -> list[GenerationResult]:
        from transformers import StoppingCriteriaList

        batch = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt").to(self.model.device)
        prompt_len = batch["input_ids"].shape[1]
        params = requests[0].params
        if params.seed is not None:
            torch.manual_seed(params.seed)
        sampling = dict(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0) \
            if not params.greedy else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        output = self.model.generate(
            **batch, max_new_tokens=max(r.params.max_tokens for r in requests), eos_token_id=self.eos_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([_RowStopper(self.tokenizer, prompt_len, requests)]), **sampling)
        return [self._finish(row[prompt_len:], request, len(prompt))
                for row, request, prompt in zip(output, requests, prompts)]

    def _finish(self, new_ids: torch.Tensor, request: GenerationRequest, prompt_tokens: int) -> GenerationResult:
        ids = new_ids.tolist()[: request.params.max_tokens]
        hit_eos = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        if hit_eos is not None:
            ids = ids[:hit_eos]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((text.find(s) for s in request.params.stop if s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
        finish = "stop" if hit_eos is not None or cut >= 0 else "length"
        return GenerationResult(text, finish, prompt_tokens, len(ids))

"""A run in GRPO mode: sample a group of answers per prompt, score them, and make the batches the loss trains on.

Each step takes its prompts from the epoch's batches (as every mode does, so epochs and resume work alike),
samples G answers for each with the model as it is (in eval mode, from the step's seeded random state: a
resumed run samples what a straight one did), scores them with the run's rewards, and builds one micro-batch
per batch of prompts: every answer as a row after its prompt, only the answer's tokens trained, each row with
its advantage and, when beta is not 0, each answer token's log-probability under the frozen base (the adapters
switched off: the same base view DPO uses). The figures of the answers go out as RewardReport and
GroupCompletions events.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..config import TrainConfig
from ..data.batching import Batch, eval_batches, padded_width, position_bucket
from ..data.encode import EncodedSplit
from ..data.intake import RawSplit
from ..data.prompt_rows import PromptFormat
from ..errors import UserError
from ..events import Event, GroupCompletions, RewardReport, SampleAnswers
from ..inference.adapters import base_view
from .grpo import GrpoLoss, base_token_logps, group_advantages
from .rewards import CHECK_ROWS, RewardOptions, RewardSet, choose_rewards

EVAL_SEED_OFFSET = 7919  # held-out answers are sampled from their own seed: the same draws at every validation


@dataclass
class PromptTexts:
    """What rewards read of a split's rows: each prompt's text, reference answer, and FILE:LINE."""

    prompts: list[str]
    answers: list[str | None]
    sources: list[str]

    @classmethod
    def of(cls, raw: RawSplit) -> PromptTexts:
        fmt = PromptFormat()
        prompts, answers = [], []
        for row in raw.rows:
            prompts.append(fmt.sample(row).prompt)
            answers.append(fmt.answer(row))
        return cls(prompts, answers, [f"{raw.file}:{line}" for line in raw.lines])


def run_rewards(cfg: TrainConfig, rows: dict[str, RawSplit]) -> RewardSet:
    """The run's rewards, tried on the first training rows: UserError (FILE:LINE) before any weights load."""
    options = RewardOptions(cfg.reward_pattern, cfg.reward_min_chars, cfg.reward_max_chars)
    rewards = RewardSet(choose_rewards(cfg.reward_functions, cfg.reward_weights, cfg.reward_functions_file, options))
    if cfg.reward_min_chars > cfg.reward_max_chars:
        raise UserError("setting 'reward_min_chars' is above 'reward_max_chars'; the 'length' reward could never pay")
    train = PromptTexts.of(rows["train"])
    rewards.check(train.prompts[:CHECK_ROWS], train.answers[:CHECK_ROWS], train.sources[:CHECK_ROWS])
    for name, raw in rows.items():  # every split's rows need what the rewards compare with
        if name != "train":
            texts = PromptTexts.of(raw)
            rewards.check(texts.prompts[:CHECK_ROWS], texts.answers[:CHECK_ROWS], texts.sources[:CHECK_ROWS])
    return rewards


def _share_prompt(cache: list[Any], copies: int) -> bool:
    """Make a cache that holds one prompt hold it `copies` times (each row then decodes on its own); False
    when a layer's cache is not a plain KV cache, whose copies this does not know how to make."""
    from mlx_lm.models.cache import KVCache

    if not all(type(c) is KVCache for c in cache):
        return False
    for c in cache:
        c.keys = mx.repeat(c.keys[..., : c.offset, :], copies, axis=0)
        c.values = mx.repeat(c.values[..., : c.offset, :], copies, axis=0)
    return True


def sample_group(
    model: nn.Module, prompt: np.ndarray, copies: int, max_tokens: int, temperature: float, top_p: float, eos: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """`copies` answers to one prompt, sampled together: the prompt is computed once and its cache shared where
    the model's cache allows. Returns the (copies, max_tokens) tokens and each answer's length (up to and with
    its first end-of-text token). Draws from MLX's global random state."""
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.sample_utils import apply_top_p

    cache = make_prompt_cache(model)
    ids = mx.array(prompt.astype(np.int32))
    logits = model(ids[None], cache=cache)[:, -1, :]
    if _share_prompt(cache, copies):
        logits = mx.repeat(logits, copies, axis=0)
    else:
        cache = make_prompt_cache(model)
        logits = model(mx.repeat(ids[None], copies, axis=0), cache=cache)[:, -1, :]
    stops = mx.array(eos or [-1], dtype=mx.int32)
    done = mx.zeros((copies,), dtype=mx.bool_)
    out: list[mx.array] = []
    for t in range(max_tokens):
        logprobs = logits.astype(mx.float32)
        logprobs = logprobs - mx.logsumexp(logprobs, axis=-1, keepdims=True)
        if 0 < top_p < 1:
            logprobs = apply_top_p(logprobs, top_p)
        token = mx.random.categorical(logprobs * (1.0 / temperature)).astype(mx.int32)
        token = mx.where(done, stops[0], token)  # an ended answer only repeats its end (masked out later)
        out.append(token)
        done = done | (token[:, None] == stops[None]).any(axis=1)
        if t + 1 == max_tokens:
            break
        logits = model(token[:, None], cache=cache)[:, -1, :]
        mx.async_eval(logits, done)
        if done.all().item():
            break
    tokens = np.array(mx.stack(out, axis=1))
    ended = np.isin(tokens, np.array(eos or [-1]))
    first = np.where(ended.any(axis=1), ended.argmax(axis=1) + 1, tokens.shape[1])
    return tokens, first.astype(np.int64)


@dataclass
class GrpoBatch(Batch):
    """A micro-batch of sampled answers: each row's advantage besides the usual arrays."""

    advantages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def arrays(self) -> tuple[mx.array, ...]:
        arrays = [self.inputs, self.positions, self.targets, self.weights, self.advantages]
        return tuple(mx.array(a) for a in arrays + ([self.reference] if self.reference is not None else []))


def answers_batch(prompts: list[np.ndarray], answers: list[np.ndarray], advantages: np.ndarray) -> GrpoBatch:
    """Rows of prompt then answer; the answers' tokens are the trained positions."""
    rows = [np.concatenate([p, a]).astype(np.int32) for p, a in zip(prompts, answers, strict=True)]
    width = padded_width(max(len(r) for r in rows))
    tokens = np.zeros((len(rows), width), dtype=np.int32)
    trained = np.zeros((len(rows), width), dtype=bool)
    for i, (row, p) in enumerate(zip(rows, prompts, strict=True)):
        tokens[i, : len(row)] = row
        trained[i, len(p) : len(row)] = True
    flat = np.flatnonzero(trained[:, 1:].reshape(-1))
    k = position_bucket(len(flat), width - 1, len(rows))
    positions, targets, weights = np.zeros(k, np.int32), np.zeros(k, np.int32), np.zeros(k, np.float32)
    positions[: len(flat)] = flat
    targets[: len(flat)] = tokens[:, 1:].reshape(-1)[flat]
    weights[: len(flat)] = 1.0
    return GrpoBatch(tokens[:, :-1], positions, targets, weights, advantages=advantages.astype(np.float32))


def base_logps(model: nn.Module, batch: GrpoBatch, loss: GrpoLoss) -> np.ndarray:
    """The base's log-probability of each trained position of the batch: the adapters switched off."""
    was_training = model.training
    model.eval()
    try:
        with base_view(model):
            inputs, positions, targets = batch.arrays()[:3]
            return np.array(base_token_logps(model, inputs, positions, targets, loss.head))
    finally:
        model.train(was_training)


def full_length_batches(model: nn.Module, cfg: TrainConfig, loss: GrpoLoss, prompts: list[np.ndarray]) -> list[Batch]:
    """A step's batches at their largest, for the preflight: every answer sampled to the full length (no
    end-of-text stops it), advantages of both signs, the base's log-probabilities when beta asks for them."""
    rows_in, answers = [], []
    was_training = model.training
    model.eval()
    try:
        for p in prompts:
            tokens, _ = sample_group(model, p, cfg.group_size, cfg.max_completion_length, cfg.temperature, 1.0, [])
            rows_in += [p] * cfg.group_size
            answers += list(tokens)
    finally:
        model.train(was_training)
    signs = np.where(np.arange(len(answers)) % 2 == 0, 1.0, -1.0).astype(np.float32)
    rows, out = cfg.micro_batch_size or cfg.batch_size, list[Batch]()
    for start in range(0, len(answers), rows):
        part = slice(start, start + rows)
        batch = answers_batch(rows_in[part], answers[part], signs[part])
        if cfg.beta:
            batch.reference = base_logps(model, batch, loss)
        out.append(batch)
    return out


@dataclass
class Scored:
    """The sampled answers of some groups, and what the rewards made of them."""

    groups: int = 0
    totals: list[float] = field(default_factory=list)
    functions: dict[str, list[float]] = field(default_factory=dict)
    spreads: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    tokens: float = 0.0
    kl_sum: float = 0.0

    def add(self, totals: list[float], each: dict[str, list[float]], lengths: np.ndarray) -> None:
        self.groups += 1
        self.totals += totals
        for name, values in each.items():
            self.functions.setdefault(name, []).extend(values)
        self.spreads.append(float(np.std(totals)))
        self.lengths += [int(n) for n in lengths]

    def report(self, step: int, split: str) -> RewardReport:
        kl = self.kl_sum / self.tokens if self.tokens else None
        return RewardReport(
            step,
            float(np.mean(self.totals)) if self.totals else math.nan,
            float(np.mean(self.spreads)) if self.spreads else math.nan,
            {name: float(np.mean(v)) for name, v in self.functions.items()},
            kl,
            float(np.mean(self.lengths)) if self.lengths else 0.0,
            float(np.mean([s == 0 for s in self.spreads])) if self.spreads else 0.0,
            self.groups,
            split,
        )


class GrpoRollout:
    """Samples, scores and batches the answers of each step; keeps the figures until the next report."""

    def __init__(self, cfg: TrainConfig, tokenizer: Any, rewards: RewardSet, loss: GrpoLoss, rows: dict[str, RawSplit]):
        self.cfg, self.tokenizer, self.rewards, self.loss = cfg, tokenizer, rewards, loss
        self.texts = {name: PromptTexts.of(raw) for name, raw in rows.items()}
        self.eos = sorted(int(t) for t in (getattr(tokenizer, "eos_token_ids", None) or [tokenizer.eos_token_id]))
        self.window = Scored()
        self.warnings: list[str] = []  # rewards that failed since the last look, said by the loop
        self.last_group: GroupCompletions | None = None
        self.seconds_sampling = 0.0
        self.sampled_tokens = 0

    # ------------------------------------------------------------ training steps

    def micro_batches(self, model: nn.Module, split: EncodedSplit, groups: list[np.ndarray], step: int) -> list[Batch]:
        """The step's micro-batches: every answer to each batch of prompts, `micro_batch_size` rows (by default
        the batch size) to a backward pass; the step sums over them exactly as over one batch."""
        return [part for idx in groups for part in self._batches(model, split, "train", idx, step, self.window)]

    def add_result(self, stats: list[float]) -> None:
        """The step's loss sums ([answer tokens, KL summed over them]) for the report's KL."""
        if len(stats) >= 2:
            self.window.tokens += stats[0]
            self.window.kl_sum += stats[1]

    def reports(self, step: int) -> list[Event]:
        """The figures since the last report and the last group's answers; starts the next window."""
        report = self.window.report(step, "train")
        if self.window.tokens == 0 or not self.cfg.beta:
            report.kl = None
        out: list[Event] = [report]
        if self.last_group is not None:
            out.append(self.last_group)
        self.window, self.last_group = Scored(), None
        return out

    def _batches(
        self, model: nn.Module, split: EncodedSplit, name: str, idx: np.ndarray, step: int, into: Scored
    ) -> list[GrpoBatch]:
        cfg, texts = self.cfg, self.texts[name]
        g = cfg.group_size
        prompts, answers, advantages = [], [], []
        was_training = model.training
        model.eval()  # no dropout while sampling
        try:
            for i in idx:
                t0 = time.perf_counter()
                prompt = split.tokens[int(i)]
                tokens, lengths = sample_group(
                    model, prompt, g, cfg.max_completion_length, cfg.temperature, cfg.top_p, self.eos
                )
                self.seconds_sampling += time.perf_counter() - t0
                self.sampled_tokens += int(lengths.sum())
                own = [tokens[j, : lengths[j]] for j in range(g)]
                said = [self.tokenizer.decode([int(t) for t in a if int(t) not in self.eos]) for a in own]
                totals, each, warnings = self.rewards.score([texts.prompts[i]] * g, said, [texts.answers[i]] * g)
                self.warnings += [f"{w} ({texts.sources[i]})" for w in warnings]
                scale = cfg.grpo_loss_type != "dr_grpo"
                adv = group_advantages(np.array([totals], dtype=np.float64), scale)[0]
                into.add(totals, each, lengths)
                prompts += [prompt] * g
                answers += own
                advantages.append(adv)
                if name == "train":
                    self.last_group = self._completions(step, i, texts, said, totals, each, adv, lengths)
        finally:
            model.train(was_training)
        if name != "train":
            return []
        adv_all, rows = np.concatenate(advantages), cfg.micro_batch_size or cfg.batch_size
        batches = []
        for start in range(0, len(answers), rows):
            part = slice(start, start + rows)
            batch = answers_batch(prompts[part], answers[part], adv_all[part])
            if cfg.beta:
                batch.reference = self._base_logps(model, batch)
            batches.append(batch)
        return batches

    def _base_logps(self, model: nn.Module, batch: GrpoBatch) -> np.ndarray:
        return base_logps(model, batch, self.loss)

    def _completions(
        self,
        step: int,
        i: int,
        texts: PromptTexts,
        said: list[str],
        totals: list[float],
        each: dict[str, list[float]],
        adv: np.ndarray,
        lengths: np.ndarray,
    ) -> GroupCompletions:
        rows = [
            {
                "text": said[j],
                "reward": totals[j],
                "rewards": {name: values[j] for name, values in each.items()},
                "advantage": float(adv[j]),
                "tokens": int(lengths[j]),
            }
            for j in range(len(said))
        ]
        return GroupCompletions(step, texts.prompts[i], texts.answers[i] or "", rows, texts.sources[i])

    def score_samples(self, samples: SampleAnswers) -> None:
        """Each sample answer's reward (the weighted total), kept beside it: what the rewards make of the
        model's greedy answer. A reward that fails counts 0 here, without a warning (the step's say it)."""
        for a in samples.answers:
            totals, _, _ = self.rewards.score([a["prompt"]], [a["answer"]], [a.get("reference") or None])
            a["reward"] = totals[0]

    # ------------------------------------------------------------ held-out prompts

    def evaluate(self, model: nn.Module, split: EncodedSplit, name: str, max_batches: int, step: int) -> RewardReport:
        """The mean reward of G answers to each held-out prompt (sampled from a fixed seed, so validations
        differ only by what the model learnt)."""
        order = eval_batches(split.lengths, self.cfg.batch_size)
        if max_batches > 0:
            order = order[:max_batches]
        mx.random.seed(self.cfg.seed + EVAL_SEED_OFFSET)
        scored = Scored()
        saved_group = self.last_group
        for idx in order:
            self._batches(model, split, name, idx, step, scored)
        self.last_group = saved_group
        return scored.report(step, name)

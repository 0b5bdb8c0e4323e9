"""The VAL probing task: one :class:`lm_eval.api.task.ConfigurableTask` for the three families.

The tasks ``val_document``, ``val_code`` and ``val_database`` are one class, :class:`ValTask`, named by
``class: !function val_probing.lm_eval_adapter.ValTask`` in the shared YAML
(``tasks_yaml/_default_template_yaml``, lm-eval's name for a shared base). It

* reads its probe settings from the task metadata (:mod:`val_probing.adapter.options`; lm-eval
  0.4.x also merges the ``--model_args`` into it, which is how the tokenizer and the model's length
  limit are found),
* builds or loads the probes at task construction (:mod:`val_probing.adapter.docs`), keeps each
  distinct context once and orders the docs so that ``--limit N`` spreads over every depth
  (:mod:`val_probing.adapter.order`),
* renders the prompt (neutral by default, or the FILM template with ``template: film``),
* refuses to generate when a prompt, as the backend will receive it (chat template included), plus
  ``max_gen_toks`` does not fit the model's length (:mod:`val_probing.adapter.guard`), because
  lm-eval itself would cut the prompt from the left with only a warning,
* scores every answer with :func:`val_probing.metrics.reference_score` and summarizes the run with
  :mod:`val_probing.buckets` (:mod:`val_probing.adapter.aggregation`), so its numbers are those of
  ``val-probing score``.

Metrics: ``ref_score`` (mean per-sample reference score, a fraction in [0, 1] aggregated with
lm-eval's own ``mean``, so it comes with lm-eval's standard error), and, x100 as in the paper,
``avg`` (average of bucket means), ``gap`` (max - min bucket mean) and ``bucket_00`` ..
``bucket_NN``, one per position bucket. A run over several context lengths also reports
``avg_<L>`` and ``gap_<L>`` per length ``L`` (the pooled ``avg``/``gap`` average every context of
every length).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import datasets
from lm_eval.api.task import ConfigurableTask

from val_probing.adapter import exit_hook
from val_probing.adapter.aggregation import metric_list, process_results, unfinished_metric_list
from val_probing.adapter.docs import ProbeSet, load_probe_set, render_prompt
from val_probing.adapter.guard import (
    PromptTooLong,
    chat_messages,
    check_prompts_fit,
    hf_tokenizer,
    model_limit,
    served_limit,
)
from val_probing.adapter.options import TaskSetupError, ValOptions, as_bool
from val_probing.adapter.served import Server
from val_probing.build import PROBE_VERSION
from val_probing.environment import package_versions
from val_probing.fingerprints import digest
from val_probing.records import FAMILIES, Family

log = logging.getLogger(__name__)

# The lm-eval task names, as the YAML files name them.
TASK_FAMILIES: dict[str, Family] = {f"val_{family}": family for family in FAMILIES}


class ValTask(ConfigurableTask):
    """One VAL probing task; the family comes from the YAML (``metadata: {family: ...}`` via task name)."""

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        exit_hook.install()  # under the lm_eval command, a VAL error ends as one line, exit 2
        cfg = dict(config or {})
        cfg.pop("class", None)
        meta = dict(cfg.get("metadata") or {})
        family = TASK_FAMILIES.get(str(cfg.get("task", "")))
        if family is None:
            raise TaskSetupError(f"task {cfg.get('task')!r}: expected {', '.join(TASK_FAMILIES)}")
        self.family: Family = family
        options = ValOptions.from_metadata(self.family, meta)
        self.server = Server.of(meta)
        self.truncation = str(meta.get("truncation_side") or "left")
        self.limit = served_limit(meta, model_limit(meta)) if options.check_length else None
        if self.limit is not None and options.source == "built":
            too_long = [n for n in options.context_lengths if n >= self.limit.tokens]
            if too_long:
                raise PromptTooLong(
                    f"{cfg.get('task')}: context_length {too_long} is not below the model's limit "
                    f"{self.limit.tokens} ({self.limit.source})"
                )
        # The probes are built before lm-eval sees the metric list: the bucket count may adapt to them.
        self.probes: ProbeSet = load_probe_set(options)
        self.options = replace(options, n_buckets=self.probes.n_buckets)
        lengths = self.options.per_length
        self.think_end = _think_end(meta, self.options.tokenizer)
        cfg["metric_list"] = metric_list(self.options.n_buckets, lengths)
        if self.think_end is not None:
            cfg["metric_list"] += unfinished_metric_list(self.options.n_buckets)
        cfg["process_results"] = functools.partial(process_results, lengths=lengths, think_end=self.think_end)
        cfg["doc_to_text"] = self.prompt
        super().__init__(config=cfg, **kwargs)

    # -- docs
    def download(self, dataset_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        docs = [doc | {"n_buckets": self.options.n_buckets} for doc in self.probes.docs]
        self.dataset = datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})
        self.config.metadata = {
            **(self.config.metadata or {}),
            **self.options.record(),
            "family": self.family,
            "probe_hash": self.probes.probe_hash,
            "probe_version": PROBE_VERSION,
            "n_docs": len(docs),
            "constant_floor": self.probes.floor.to_dict() if self.probes.floor else None,
            "versions": package_versions(),
        }

    @property
    def request_fingerprint(self) -> str:
        """What the rendered requests depend on beyond lm-eval's own cache key: the probes and the
        template and whether the context is in the prompt (lm-eval keys ``--cache_requests`` on the task
        name, shots, chat template and tokenizer only, not on ``--metadata``). A closed-book prompt is
        its open-book prompt's question alone, so the read-back check could not tell the two apart."""
        book = "closed" if self.options.closed_book else "open"
        return digest([self.probes.probe_hash, PROBE_VERSION, self.options.template, book])

    def set_config(self, key: str, value: Any, update: bool = False) -> None:
        if key == "num_fewshot" and value:
            raise TaskSetupError(
                f"{self.config.task}: --num_fewshot {value}: VAL probing is zero-shot (a shot would be "
                "another long context); drop --num_fewshot"
            )
        super().set_config(key, value, update=update)

    def prompt(self, doc: Mapping[str, Any]) -> str:
        return render_prompt(
            self.options.template, self.probes.contexts[doc["context_id"]], doc["instruction"]
        )

    # -- the guard
    def build_all_requests(
        self,
        *,
        apply_chat_template: bool = False,
        cache_requests: bool = False,
        tokenizer_name: str = "",
        **kwargs: Any,
    ) -> None:
        if apply_chat_template and self.options.template == "film":
            raise TaskSetupError(
                f"{self.config.task}: template=film already is Mistral's [INST] format; drop "
                "--apply_chat_template (or use the default template with it)"
            )
        # lm-eval's request-cache key has no slot for the metadata; its tokenizer_name goes only
        # into that key, so the probe fingerprint rides on it: another probe build, another entry.
        super().build_all_requests(
            apply_chat_template=apply_chat_template,
            cache_requests=cache_requests,
            tokenizer_name=f"{tokenizer_name}-val{self.request_fingerprint}",
            **kwargs,
        )
        if cache_requests:
            self._check_cached_requests()
        max_gen = int((self.config.generation_kwargs or {}).get("max_gen_toks", 256))
        if self.think_end is not None and max_gen <= 128:
            log.warning(
                "%s: a reasoning model (think_end_token %r) with max_gen_toks=%d, the paper's budget for a "
                "direct answer: most traces will not finish, and an answer left in the trace scores 0 "
                "(counted under 'unfinished'). Raise it: --gen_kwargs max_gen_toks=4096",
                self.config.task,
                self.think_end,
                max_gen,
            )
        if not self.options.check_length:
            log.warning("%s: check_length=false, prompts may be cut by lm-eval", self.config.task)
            return
        if self.limit is None:
            log.warning(
                "%s: no model length limit known (no pretrained/max_length in model_args): prompts are "
                "not checked against the model's context window",
                self.config.task,
            )
            return
        counter_name = self.options.tokenizer
        if counter_name is None:
            log.warning("%s: no tokenizer known, prompt lengths are not checked", self.config.task)
            return
        prompts = [inst.arguments[0] for inst in self._instances]
        contexts = [inst.doc["context_id"] for inst in self._instances]
        tokenizer = hf_tokenizer(counter_name)
        server = self.server if self.server is not None and chat_messages(prompts[0]) is not None else None
        longest = check_prompts_fit(
            self.config.task,
            prompts,
            tokenizer,
            self.limit,
            max_gen,
            contexts,
            server=server,
            truncation=self.truncation,
        )
        log.info(
            "%s: longest prompt %d tokens + %d new <= %d (%s)",
            self.config.task,
            longest,
            max_gen,
            self.limit.tokens,
            self.limit.source,
        )

    def _check_cached_requests(self) -> None:
        """Requests read back from lm-eval's cache must be those of these probes (verified, not trusted)."""
        docs = self.probes.docs
        for inst in self._instances:
            doc_id = inst.doc_id if isinstance(inst.doc_id, int) else -1
            ours = docs[doc_id] if 0 <= doc_id < len(docs) else None
            same = ours is not None and inst.doc.get("key") == ours["key"]
            if ours is None or not same or str(self.doc_to_text(ours)) not in _prompt_text(inst):
                raise TaskSetupError(
                    f"{self.config.task}: the request cache (--cache_requests) holds prompts of other "
                    f"probes (doc {doc_id}); rerun with --cache_requests refresh, or delete lm-eval's "
                    "request cache (LM_HARNESS_CACHE_PATH, default lm_eval/caching/.cache)"
                )


def _think_end(meta: Mapping[str, Any], tokenizer: str | None) -> str | None:
    """The reasoning model's end-of-trace mark from the model_args (``think_end_token``: a string, or a
    token id that the tokenizer decodes); None for a model that does not think."""
    value = meta.get("think_end_token")
    if value in (None, ""):
        if as_bool("enable_thinking", meta.get("enable_thinking", False)):
            log.warning("enable_thinking without think_end_token: traces cannot be told from answers")
        return None
    text = str(value)
    if text.isdigit():
        if tokenizer is None:
            raise TaskSetupError(f"think_end_token={text} is a token id: name the tokenizer that decodes it")
        text = str(hf_tokenizer(tokenizer).decode([int(text)]))
    return text


def _prompt_text(inst: Any) -> str:
    arg = inst.arguments[0]
    messages = chat_messages(arg)
    if messages is not None:
        return "\n".join(str(m.get("content", "")) for m in messages)
    return str(arg)

"""Head-level retrieval conditions, for models with softmax attention.

- Head sparsification (`heads:<selection>:<phase>:k<k>`): keep k query heads per attention layer, k = 0..heads;
  `entropy` / `l2` choose them per query token from that token's own attention (`KeepTopHeads`, Study B);
  `static` ranks heads once by their mean attention entropy at the question's last token on calibration
  prompts (drawn from another seed than the grid) and keeps the k most peaked; `random` is the control, several
  trials per k (`heads:random:<phase>:k<k>:t<trial>`, every head subset where they are few: `subsets`).
- Needle exposure: the needle sentence hidden from every attention head (`mask_needle:<phase>`), and Study B's
  needle focus (`focus:<scale>`: the needle's logits set to the query's largest logit x scale) while the answer
  is generated.
- Retrieval heads (Wu et al., arXiv 2404.15574): while the model produces the answer (teacher forced), a head
  scores a hit at a step where the model's prediction is the answer token and the head's argmax attention lands
  on the needle position holding that token; its score is the fraction of answer tokens hit, averaged over the
  grid. The top heads (those above the threshold, at least one) are then ablated, against as many random heads
  (every subset when there are at most `random_head_sets` of them, else that many seeded draws).
"""

from __future__ import annotations

import itertools
import math
import random

import torch

from mechhybrid.attention import EditLogits, FocusKeys, KeepTopHeads, MaskKeys
from mechhybrid.errors import MechHybridError
from mechhybrid.interventions import AblateHeads, KeepHeads

from .conditions import Condition
from .prompts import NeedlePrompt, zoo_grid
from .subsets import SELECTION, head_subsets, random_conditions

__all__ = ["head_conditions", "head_extra", "retrieval_scores", "attention_layers", "HeadState"]


def attention_layers(hm) -> list:
    """The model's softmax-attention components that have heads."""
    return [c for c in hm.components if c.kind == "attention" and c.n_heads]


def _needle_mask(prompts: list[NeedlePrompt], which: str = "needle_positions") -> torch.Tensor:
    width = max(len(p.ids) for p in prompts)
    mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for row, p in enumerate(prompts):
        mask[row, list(getattr(p, which))] = True
    return mask


class HeadState:
    """What the head conditions learn during a run, computed on first use: the static entropy ranking (from
    calibration prompts) and the retrieval scores (from the grid). Kept out of the plan so that counting the
    conditions runs no model."""

    def __init__(self, hm, cfg, prompts: list[NeedlePrompt] | None = None):
        self.hm, self.cfg, self.prompts = hm, cfg, prompts
        self._ranking: dict[int, list[int]] | None = None
        self._scores: dict[tuple[int, int], float] | None = None

    def ranking(self) -> dict[int, list[int]]:
        """layer -> its heads, most peaked (lowest mean entropy) first."""
        if self._ranking is None:
            # The zoo draws calibration prompts from another seed; a text haystack has one grid, whose first
            # prompts serve (the ranking then saw some of the prompts it is scored on: the Result notes it).
            calib = self.prompts[:4] if self.cfg.haystack else zoo_grid(self.cfg.lengths[:2], (0.5,), 2,
                                                                         self.cfg.seed + 1)
            entropy = _mean_entropy(self.hm, calib)
            self._ranking = {layer: sorted(range(len(h)), key=lambda i: (h[i], i)) for layer, h in entropy.items()}
        return self._ranking

    def scores(self) -> dict[tuple[int, int], float]:
        if self._scores is None:
            self._scores = retrieval_scores(self.hm, self.prompts)
        return self._scores

    def top_heads(self) -> list[tuple[int, int]]:
        scores = self.scores()
        ranked = sorted(scores, key=lambda lh: (-scores[lh], lh))
        above = [lh for lh in ranked if scores[lh] > self.cfg.retrieval_threshold]
        return above or ranked[:1]

    def random_sets(self) -> list[list[tuple[int, int]]]:
        heads, n = sorted(self.scores()), len(self.top_heads())
        wanted = self.cfg.random_head_sets
        if math.comb(len(heads), n) <= wanted:
            return [list(s) for s in itertools.combinations(heads, n)]
        rng = random.Random(f"retrieval-heads/{self.cfg.seed}")
        return [sorted(rng.sample(heads, n)) for _ in range(wanted)]


def _by_length(prompts: list[NeedlePrompt]) -> dict[int, list[NeedlePrompt]]:
    out: dict[int, list[NeedlePrompt]] = {}
    for p in prompts:
        out.setdefault(len(p.ids), []).append(p)
    return out


def _mean_entropy(hm, prompts: list[NeedlePrompt]) -> dict[int, list[float]]:
    """layer -> per-head mean entropy (bits) of the attention at each prompt's last token."""
    sums: dict[int, torch.Tensor] = {}
    for group in _by_length(prompts).values():
        ids = torch.tensor([p.ids for p in group])
        with torch.no_grad():
            patterns = hm.attention_patterns(ids, positions=(-1,))
        for layer, pat in patterns.items():
            p = pat.probs[:, :, -1].double()  # [batch, head, key]
            ent = -(p * torch.log2(p.clamp_min(1e-30))).sum(-1).sum(0)
            sums[layer] = sums.get(layer, 0) + ent
    return {layer: (total / len(prompts)).tolist() for layer, total in sums.items()}


def retrieval_scores(hm, prompts: list[NeedlePrompt]) -> dict[tuple[int, int], float]:
    """(layer, head) -> retrieval score over `prompts`, with the answer teacher forced."""
    hits: dict[tuple[int, int], float] = {}
    for group in _by_length(prompts).values():
        n, m = len(group[0].ids), len(group[0].answer_ids)
        ids = torch.tensor([p.ids + p.answer_ids for p in group])
        queries = tuple(range(n - 1, n - 1 + m))  # the positions that predict each answer token
        with torch.no_grad():
            run = hm.run(ids, [_capture(queries)])
        predicted = run.logits[:, list(queries)].argmax(-1)  # [batch, step]
        for layer, pat in run.attention.items():
            top_key = pat.probs.argmax(-1)  # [batch, head, step]
            for row, p in enumerate(group):
                for step, token in enumerate(p.answer_ids):
                    if int(predicted[row, step]) != token:
                        continue  # not copying at this step
                    sources = {v for v in p.value_positions if p.ids[v] == token}
                    for head in range(top_key.shape[1]):
                        if int(top_key[row, head, step]) in sources:
                            hits[(layer, head)] = hits.get((layer, head), 0.0) + 1.0 / m
        for layer, pat in run.attention.items():
            for head in range(pat.probs.shape[1]):
                hits.setdefault((layer, head), 0.0)
    return {lh: v / len(prompts) for lh, v in sorted(hits.items())}


def _capture(queries):
    from mechhybrid.attention import CaptureAttention

    return CaptureAttention(positions=queries, scores=False)


def _keep_static(state: HeadState, layers, k: int):
    def build(prompts):
        ranking = state.ranking()
        return [KeepHeads(c, heads=list(ranking[c.layer][:k])) for c in layers]
    return build


def _ablate(state: HeadState, layers, which):
    by_layer = {c.layer: c for c in layers}

    def build(prompts):
        heads = state.top_heads() if which == "top" else state.random_sets()[which]
        chosen: dict[int, list[int]] = {}
        for layer, head in heads:
            chosen.setdefault(layer, []).append(head)
        return [AblateHeads(by_layer[layer], heads=hs) for layer, hs in sorted(chosen.items())]
    return build


def head_conditions(hm, cfg, state: HeadState | None = None) -> list[Condition]:
    """The head-level conditions of `hm` (none without attention heads)."""
    layers = attention_layers(hm)
    if not layers:
        if cfg.head_ks:
            raise MechHybridError(f"retrieval: head_ks asks for head sparsification, and model {hm.name} has no "
                                  "attention heads")
        return []
    state = state or HeadState(hm, cfg)
    conds = []
    n_heads = max(c.n_heads for c in layers)
    too_many = [k for k in cfg.head_ks if k > n_heads]
    if too_many:
        raise MechHybridError(f"retrieval: head_ks {too_many} exceed the {n_heads} heads of model {hm.name}'s "
                              "widest attention layer")
    if cfg.head_curve:
        for selection in cfg.head_selections:
            for phase in cfg.head_phases:
                if selection == SELECTION:
                    conds += random_conditions(layers, cfg.head_ks or range(n_heads + 1), phase, n_heads,
                                               cfg.random_head_subsets_max, cfg.seed)
                    continue
                for k in cfg.head_ks or range(n_heads + 1):
                    build = (_keep_static(state, layers, k) if selection == "static" else
                             (lambda ps, k=k, s=selection: [KeepTopHeads(k, score=s)]))
                    conds.append(Condition(f"heads:{selection}:{phase}:k{k}", "keep_heads", phase=phase,
                                           coords={"selection": selection, "phase": phase, "k": k,
                                                   "heads_fraction": k / n_heads}, per_prompt=build))
    for phase in cfg.phases:
        conds.append(Condition(f"mask_needle:{phase}", "mask", phase=phase, coords={"phase": phase},
                               per_prompt=lambda ps: [MaskKeys(keys=_needle_mask(ps))]))
    for scale in cfg.exposure_scales:
        conds.append(Condition(f"focus:{scale:g}", "focus", phase="generation",
                               coords={"phase": "generation", "scale": scale},
                               per_prompt=lambda ps, s=scale: [FocusKeys(keys=_needle_mask(ps), scale=s)]))
    conds += _set_logit_conditions(hm, cfg, layers)
    if cfg.retrieval_heads:
        conds.append(Condition("ablate_heads:top", "zero", phase="all", coords={"removal": "top"},
                               per_prompt=_ablate(state, layers, "top")))
        for trial in range(cfg.random_head_sets):
            conds.append(Condition(f"ablate_heads:random:{trial}", "zero", phase="all",
                                   coords={"removal": "random", "trial": trial},
                                   per_prompt=_ablate(state, layers, trial),
                                   applies=lambda t=trial: t < len(state.random_sets())))
    return conds


def _set_logit_conditions(hm, cfg, layers) -> list[Condition]:
    heads_of = {c.layer: c.n_heads for c in layers}
    conds = []
    for layer, head, logit in cfg.set_logits:
        layer, head = int(layer), int(head)
        if layer not in heads_of or head >= heads_of[layer]:
            raise MechHybridError(f"retrieval set_logits: model {hm.name} has no attention head {head} at layer "
                                  f"{layer} (attention layers and heads: {heads_of})")
        conds.append(Condition(
            f"set_logits:L{layer}.H{head}={logit:g}", "focus", phase="generation",
            coords={"layer": layer, "head": head, "phase": "generation", "logit": float(logit)},
            per_prompt=lambda ps, l=layer, h=head, v=float(logit): [
                EditLogits(keys=_needle_mask(ps, "value_positions"), op="set", value=v, layers=[l], heads=[h])]))
    return conds


def head_extra(state: HeadState | None, cfg) -> dict:
    """What the Result keeps beyond rows: the ranking and retrieval heads the conditions used."""
    if state is None or not attention_layers(state.hm):
        return {}
    out = {"retrieval_threshold": cfg.retrieval_threshold}
    if cfg.head_curve and "static" in cfg.head_selections:
        out["static_ranking"] = {str(layer): heads for layer, heads in sorted(state.ranking().items())}
    if cfg.head_curve and SELECTION in cfg.head_selections:
        layers = attention_layers(state.hm)
        ks = cfg.head_ks or range(max(c.n_heads for c in layers) + 1)
        out["random_head_subsets"] = {
            str(k): [{str(layer): list(heads) for layer, heads in trial.items()}
                     for trial in head_subsets(layers, k, cfg.random_head_subsets_max, cfg.seed)] for k in ks}
    if cfg.retrieval_heads:
        out["retrieval_heads"] = [[layer, head] for layer, head in state.top_heads()]
        out["random_head_sets"] = [[list(lh) for lh in s] for s in state.random_sets()]
    return out


def score_rows_of(state: HeadState, cfg, seed: int):
    """Rows of the per-head retrieval scores (`retrieval_heads`, metric `retrieval_score`, coords layer, head)."""
    from ..schema import Row

    if not cfg.retrieval_heads or not attention_layers(state.hm):
        return []
    n = len(state.prompts)
    return [Row("retrieval_heads", "none", "retrieval_score", value, n=n, seed=seed,
                coords={"layer": layer, "head": head}) for (layer, head), value in state.scores().items()]

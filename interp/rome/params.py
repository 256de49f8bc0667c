"""The parameters of ``interp run rome`` (one line each; ``interp run rome --help`` lists them)."""

from __future__ import annotations

from typing import Any, Optional

from interp.corpus import ALLOWS, corpus_problem
from interp.params import Param, Params


def _prefix_lengths(v: Any) -> Optional[str]:
    ok = isinstance(v, list) and v and all(
        isinstance(x, list) and len(x) == 2 and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in x)
        for x in v)
    return None if ok else "a JSON list of [tokens, count] pairs of positive integers"


def _check(p: dict[str, Any]) -> Optional[str]:
    if "rome" not in p["variants"]:
        return "--set variants: must include rome (the collapse cases are defined by it)"
    n_prefixes = sum(c for _, c in p["prefix_lengths"])
    if p["v_contexts"] > n_prefixes:
        return f"--set v_contexts={p['v_contexts']}: too large; allowed: at most {n_prefixes} (the prefixes prefix_lengths makes)"
    return None


PARAMS = Params("rome", [
    Param("layer", "int", None, min=0, null="20% of the depth", unit="layer", help="the MLP layer edited",
          model_max=lambda m, p: m.n_layers - 1),
    Param("requests_file", "path", None, null="the packaged requests", help="a CounterFact-style requests JSON"),
    Param("n_requests", "int", 0, quick=6, min=0, unit="requests", help="packaged requests edited (0: all)"),
    Param("country_requests", "int", 24, quick=2, min=0, unit="requests",
          help="country -> capital counterfactuals from the countryinfo facts added to the requests"),
    Param("variants", "str_list", ["rome", "consistent", "consistent_prefix"],
          choices=["rome", "consistent", "consistent_prefix", "consistent_delta"],
          help="key variants evaluated: rome (mixed), consistent (released C-ROME), consistent_prefix, consistent_delta"),
    Param("prefix_seed", "int", 0, min=0, help="seed of the sampled prefixes, the country requests and model-sampled covariance text"),
    Param("prefix_top_k", "int", 5, min=1, unit="tokens", help="prefixes are sampled from the top-k next tokens (ROME: 5)"),
    Param("prefix_lengths", "json", [[5, 10], [10, 10]], check=_prefix_lengths,
          help="generated prefixes as [tokens, count] pairs"),
    Param("kbar_include_bare", "bool", True, help="the averaged key also includes the prompt without a prefix"),
    Param("v_contexts", "int", 20, quick=4, min=1, unit="prefixes", help="prefixed contexts v* is optimised on"),
    Param("v_steps", "int", 20, min=1, max=10000, unit="steps", help="optimisation steps for v*"),
    Param("v_lr", "float", 0.5, min=0, min_open=True, help="learning rate for v*"),
    Param("kl_factor", "float", 0.0625, min=0, help="weight of the essence KL term"),
    Param("v_weight_decay", "float", 0.5, min=0, help="weight decay on v* - v"),
    Param("clamp_norm_factor", "float", 4.0, min=0, min_open=True, help="largest |v* - v| as a multiple of |v|"),
    Param("fix_clamp_reference", "choice", "prefixed", choices=["bare", "prefixed"],
          help="v* of the consistent variants where the bare v0 is anomalous (norm under half the prefixed outputs' "
               "mean): re-optimised with clamp and weight decay scaled by that mean (prefixed), or ROME's v* shared "
               "(bare, the released C-ROME code); ROME itself always uses the bare v0"),
    Param("early_stop_loss", "float", 0.05, min=0, help="stop optimising v* below this loss"),
    Param("v_prefix_cache", "bool", True, help="v*: run the tokens before the subject once (same loss, fewer FLOPs)"),
    Param("cov", "choice", "second_moment", choices=["second_moment", "identity"],
          help="C from cov_corpus (ROME) or C = I (the released C-ROME configuration)"),
    Param("cov_corpus", "str", "wikipedia", check=lambda v: corpus_problem(v, ("wikipedia", "generic", "model"), hub=True),
          allows="wikipedia, generic, model, hf:NAME[:CONFIG] or a text file/folder",
          help="covariance text: wikipedia, generic, model, a text file/folder, or hf:NAME[:CONFIG]"),
    Param("cov_tokens", "int", 100_000, quick=16_384, min=2, unit="tokens", help="tokens in the key second moment"),
    Param("cov_max_tokens", "int", 128, min=2, max=4096, unit="tokens", help="tokens kept per covariance text"),
    Param("cov_ridge", "float", 0.0, min=0, help="ridge added to C before inverting"),
    Param("cov_cache", "bool", True, help="read and write the on-disk covariance cache"),
    Param("text_corpus", "str", "wikipedia", check=corpus_problem, allows=ALLOWS,
          help="natural text for the perplexity probe and the first-token texts (held-out split): wikipedia, generic or a text file/folder"),
    Param("ppl_generic", "int", 12, quick=6, min=1, unit="texts", help="generic texts for the perplexity ratio"),
    Param("ppl_max_tokens", "int", 48, quick=32, min=2, max=4096, unit="tokens", help="tokens per generic text"),
    Param("ppl_generations", "int", 12, quick=6, min=1, unit="texts", help="the model's own generations for perplexity"),
    Param("ppl_gen_tokens", "int", 24, quick=16, min=1, max=4096, unit="tokens", help="tokens per generation"),
    Param("collapse_ratio", "float", 2.0, min=1, min_open=True, unit="ratio", help="perplexity ratio above which an edit collapsed"),
    Param("first_token_texts", "int", 16, quick=8, min=2, unit="texts", help="texts for the first-token key analysis"),
    Param("first_token_layer_step", "int", 1, quick=3, min=1, unit="layers", help="every k-th layer in the first-token table"),
    Param("eval_seed", "int", 0, min=0, help="seed of the evaluation prompts"),
], check_all=_check)

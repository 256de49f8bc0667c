"""Lv et al. 2024, anti-overconfidence: final-layer heads' first-position attention, answer attribution
and correlation with real token frequency (Spearman over tokens that occur), and the final MLP with its
intercepts.

    python analyses/recall_anti_overconfidence.py --model smollm2-135m --out figures [--quick] [--frequency-source wordfreq]
"""

import torch

from interp.recall import pipeline

if __name__ == "__main__":
    model, run, p, args = pipeline.script_setup(__doc__, "recall_anti_overconfidence", with_corpus=True)
    with torch.no_grad():
        data = pipeline.step_capture(model, run, p)
        top, _ = pipeline.step_argument_heads(model, run, p, data)
        decs, _ = pipeline.step_mlp_decomposition(model, run, p, data, top)
        freq = pipeline.step_token_frequency(model, run, p)
        run.summary(**pipeline.step_anti_overconfidence(model, run, p, data, freq, decs))
    print(run.finish())

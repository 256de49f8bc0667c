"""Lv et al. 2024, mitigation: final-layer suppressor heads, the final MLP's frequency component, or both,
chosen on train facts; accuracy and answer probability on test facts and independent country facts
(zero- and few-shot) and the perplexity cost on held-out Wikipedia text.

    python analyses/recall_mitigation.py --model smollm2-135m --out figures [--quick] [--frequency-source wordfreq]
"""

import torch

from interp.recall import pipeline

if __name__ == "__main__":
    model, run, p, args = pipeline.script_setup(__doc__, "recall_mitigation", with_corpus=True)
    with torch.no_grad():
        data = pipeline.step_capture(model, run, p)
        freq = pipeline.step_token_frequency(model, run, p)
        run.summary(**pipeline.step_mitigation(model, run, p, data, freq))
    print(run.finish())

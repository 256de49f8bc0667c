"""Lv et al. 2024, mitigation: ablate final-layer suppressor heads chosen on train facts; test-fact
accuracy and answer probability before/after (zero- and few-shot) and the generic-text perplexity cost.

    python analyses/recall_mitigation.py --model smollm2-135m --out figures [--quick]
"""

import torch

from interp.corpus import generic_texts
from interp.recall import ablate_heads, pipeline
from interp.recall.ablation import head_name
from interp.recall.anti_overconfidence import next_token_stats
from interp.recall.figures import mitigation_figure
from interp.recall.mitigation import mitigation_table, select_suppressor_heads

if __name__ == "__main__":
    model, run, p, args = pipeline.script_setup(__doc__, "recall_mitigation")
    with torch.no_grad():
        zero, few, _, _, _, _ = pipeline.prepare(model, run, p)
        train = [a.subset(a.prompts.rows(split="train")) for a in (zero, few)]
        test = {"zero-shot": zero.subset(zero.prompts.rows(split="test")),
                f"{p['shots']}-shot": few.subset(few.prompts.rows(split="test"))}
        heads, trace = select_suppressor_heads(model, train, p["max_suppressor_heads"], metric=p["selection_metric"])
        table = mitigation_table(model, test, heads)
        texts = generic_texts()[: p["generic_texts"]] if p["generic_texts"] else generic_texts()
        ppl0 = ppl1 = next_token_stats(model, texts)[1]
        if heads:
            with ablate_heads(model, heads):
                ppl1 = next_token_stats(model, texts)[1]
    run.table("suppressor_selection", trace)
    run.table("mitigation", table)
    run.figure("mitigation", mitigation_figure(table, [head_name(h) for h in heads], (ppl0, ppl1), model.spec))
    print(run.finish())

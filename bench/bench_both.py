"""The mitigation's "both" candidates: a head setting and the same setting with the frequency
projection, measured by two hooked passes (``measure_mitigation`` twice, as the choice did) against
one pass whose projected logits are read from the head setting's own (``evaluate_recall_projected``:
the pass records the last position's stream and final MLP output, ``Projection`` does the rest),
as a ratio measured in one run.

The prompts are the packaged facts' zero- and 3-shot forms with the final layer captured, as the
choice reads them; the head setting is the final layer's first head x0.5 and the factor the one the
choice keeps on Gemma (x2, ``gamma = -1``). Answer probabilities and correctness are compared too.

    OMP_NUM_THREADS=2 python bench/bench_both.py [--model gemma-3-270m] [--facts 24] [--templates 3]
"""

import torch

from interp.recall.mitigation import Mitigation, evaluate_recall, evaluate_recall_projected


def own_pass(model, acts, mit):
    with model.hooks(mit.hooks(model)):
        return evaluate_recall(model, acts, from_layer=mit.start_layer(model), last_only=mit.last_position_only(model))


if __name__ == "__main__":
    from commands import timed, train_style_sets  # this folder is on sys.path when run as a script

    args, model, sets, d = train_style_sets(__doc__.split("\n\n")[0], lambda ap: ap.add_argument(
        "--gamma", type=float, default=-1.0, help="the frequency projection's factor"))
    last = model.n_layers - 1
    with torch.no_grad():
        heads = Mitigation("heads", [(last, 0)], "scale", 0.5)
        both = Mitigation("both", heads.heads, "scale", 0.5, None, d, args.gamma)
        for a in sets:  # the kept contexts of each prompt set are built once, before either side is timed
            own_pass(model, a, heads)
        t_two, two = timed(lambda: [[own_pass(model, a, heads), own_pass(model, a, both)] for a in sets])
        t_one, one = timed(lambda: [evaluate_recall_projected(model, a, heads, [(d, args.gamma)]) for a in sets])
    diff = max(float((p - q).abs().max()) for e, o in zip(two, one) for (p, _), (q, _) in zip(e, o))
    same = all(torch.equal(a, b) for e, o in zip(two, one) for (_, a), (_, b) in zip(e, o))
    n = sum(len(a.prompts) for a in sets)
    print(f"{model.spec}: head setting and 'both' on {n} prompts (zero- and 3-shot): a pass each {t_two:.2f} s, "
          f"one pass {t_one:.2f} s ({t_two / t_one:.2f}x); max prob diff {diff:.1e}, correctness equal {same}")

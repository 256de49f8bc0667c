"""The frequency projection's train read-out: one product with ``W_U`` per factor
(``projected_readout``, one call per factor) against one product for all factors
(``projected_readouts``: each factor's logits follow from the unprojected ones, ``Projection``),
as a ratio measured in one run, on the factors the mitigation choice tries (``GAMMAS``).

The prompts are the packaged facts' zero- and 3-shot forms with the final layer captured, as the
choice reads them; answer probabilities and correctness are compared too.

    OMP_NUM_THREADS=2 python bench/bench_projection.py [--model gemma-3-270m] [--facts 24] [--templates 3]
"""

import torch

from interp.recall.mitigation import GAMMAS, projected_readout, projected_readouts


if __name__ == "__main__":
    from commands import timed, train_style_sets  # this folder is on sys.path when run as a script

    args, model, sets, d = train_style_sets(__doc__.split("\n\n")[0])
    with torch.no_grad():
        t_each, each = timed(lambda: [[projected_readout(model, a, d, g) for g in GAMMAS] for a in sets])
        t_one, one = timed(lambda: [projected_readouts(model, a, d, GAMMAS) for a in sets])
    diff = max(float((p - q).abs().max()) for e, o in zip(each, one) for (p, _), (q, _) in zip(e, o))
    same = all(torch.equal(a, b) for e, o in zip(each, one) for (_, a), (_, b) in zip(e, o))
    n = sum(len(a.prompts) for a in sets)
    print(f"{model.spec}: {len(GAMMAS)} frequency factors on {n} prompts (zero- and 3-shot): one product per factor "
          f"{t_each:.2f} s, one for all {t_one:.2f} s ({t_each / t_one:.2f}x); max prob diff {diff:.1e}, "
          f"correctness equal {same}")

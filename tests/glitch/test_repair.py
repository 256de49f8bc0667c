import numpy as np
import pytest
import torch

from interp import InterpError, capture, greedy_generate
from interp.glitch.oracle import repeat_template
from interp.glitch.repair import KeyNeurons, RepairPlan, key_neurons, neuron_activations, repair_hooks


def test_key_neurons_and_strengths():
    rng = np.random.default_rng(0)
    normal = rng.uniform(0, 0.5, size=(200, 6)).astype(np.float32)
    normal[:, 0] = 3.0
    normal[:2, 1] = 2.0
    glitch = np.zeros((10, 6), np.float32)
    glitch[:, 0] = 0.5
    glitch[:5, 2] = 4.0
    plan = key_neurons({3: normal}, {3: glitch}, threshold=1.0, always_share=0.99)
    k = plan.neurons[0]
    assert k.always.tolist() == [0]
    assert k.never.tolist() == [0, 2, 3, 4, 5][1:]
    assert k.beta[0] == pytest.approx(2.5)
    assert k.alpha[k.never.tolist().index(2)] == pytest.approx(4.0)
    assert k.alpha[k.never.tolist().index(3)] == 1.0
    rule = plan.rule_based(alpha=4.0, beta=1.5)
    assert (rule.neurons[0].alpha == 4.0).all() and (rule.neurons[0].beta == 1.5).all()
    with pytest.raises(InterpError):
        key_neurons({3: normal}, {4: glitch})


def _plan(model, layer):
    return RepairPlan([KeyNeurons(layer, np.array([0, 1]), np.array([2, 3]), np.array([1.5, 1.5], np.float32),
                                  np.array([4.0, 4.0], np.float32))], "mlp_post", threshold=1.0)


def test_repair_changes_only_the_last_position(tiny):
    name = tiny.hook("mlp_post", 1)
    prompts = ["abc", "abcdefg"]
    plan = _plan(tiny, 1)
    base = capture(tiny, prompts, hooks=[name], positions="all")
    seen = {}

    def spy(x, hook):
        seen.setdefault("x", []).append(x.detach().clone())
        return x

    with tiny.hooks(repair_hooks(tiny, plan) + [(name, spy)]):
        capture(tiny, prompts, hooks=[name], positions="all", batch_size=2)
    x = seen["x"][0]
    lens = [len(p) for p in base.acts[name]]
    order = sorted(range(2), key=lambda i: -lens[i])
    for r, i in enumerate(order):
        ref, got = base.acts[name][i], x[r, : lens[i]]
        assert torch.allclose(ref[:-1], got[:-1], atol=1e-5)
        a, b = ref[-1], got[-1]
        assert torch.allclose(a[4:], b[4:], atol=1e-5)
        for j in (0, 1):
            assert b[j] == (a[j].abs() + 1.5 if a[j] <= 1 else a[j])
        for j in (2, 3):
            assert torch.isclose(b[j], a[j] / 4 if a[j] > 1 else a[j])


def test_repair_in_generation_and_prefix_skip(tiny_models):
    m = tiny_models["llama"]
    name = m.hook("mlp_post", 2)
    strong = RepairPlan([KeyNeurons(2, np.arange(m.d_mlp), np.array([], int), np.full(m.d_mlp, 50.0, np.float32),
                                    np.array([], np.float32))], "mlp_post", threshold=1e9)
    prefix = m.encode("hello there")
    rows = [m.encode("ab", prepend_bos=False), m.encode("cd", prepend_bos=False)]
    plain = greedy_generate(m, rows, 4, prefix=prefix, stop_at_eos=False)
    with m.hooks(repair_hooks(m, strong)):
        shared = greedy_generate(m, rows, 4, prefix=prefix, stop_at_eos=False)
        unshared = greedy_generate(m, [prefix + r for r in rows], 4, stop_at_eos=False)
    assert shared == unshared
    assert shared != plain


def test_neuron_activations_shape(tiny_models):
    m = tiny_models["gpt2"]
    acts = neuron_activations(m, [65, 66, 67], [0, 2], template=repeat_template(m, shots=()))
    assert set(acts) == {0, 2} and acts[2].shape == (3, m.d_mlp)

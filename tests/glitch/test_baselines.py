import numpy as np
import pandas as pd
import pytest

from interp import InterpError
from interp.glitch.baselines import TOKEN_STATISTICS, calls_for_recall, statistics_detector, token_statistics
from interp.glitch.pipeline import recall_cost_curve


def test_token_statistics_read_text_and_weights(tiny):
    ids = [tiny.encode("a", prepend_bos=False)[0], tiny.encode(" Ab", prepend_bos=False)[0], 5]
    st = token_statistics(tiny, ids)
    assert list(st.columns) == list(TOKEN_STATISTICS) and len(st) == 3
    for row, t in zip(st.itertuples(), ids):
        text = tiny.tokenizer.decode([t])
        assert row.chars == len(text) and row.leading_space == float(text[:1].isspace())
        assert row.embed_norm == pytest.approx(float(tiny.W_E[t].float().norm()), rel=1e-5)
        assert row.unembed_norm == pytest.approx(float(tiny.W_U[:, t].float().norm()), rel=1e-5)
        assert row.id_rank == pytest.approx(t / (tiny.d_vocab - 1))
    with pytest.raises(InterpError):
        token_statistics(tiny, [tiny.d_vocab])


@pytest.mark.real_model
def test_token_statistics_read_the_tokenization(smollm):
    words = {" the": None, " caregivers": None, "iegel": None}
    ids = [smollm.encode(w, prepend_bos=False) for w in words]
    assert all(len(i) == 1 for i in ids)
    st = token_statistics(smollm, [i[0] for i in ids]).set_index(pd.Index(list(words)))
    assert st.loc[" the", "pieces_spaced"] == 1 and st.loc[" the", "round_trip"] == 1
    # the word alone, without its leading space, needs more pieces than after a space
    assert st.loc[" caregivers", "pieces"] > st.loc[" caregivers", "pieces_spaced"] == 1
    assert st.loc[" the", "zipf"] > 7 > st.loc[" caregivers", "zipf"] > st.loc["iegel", "zipf"] == 0
    assert st.loc["iegel", "consonant_run"] == 1 and st.loc[" caregivers", "vowel_share"] == pytest.approx(4 / 10)


def test_statistics_detector_learns_a_rule_and_verifies(tiny_models):
    m = tiny_models["gpt2"]
    cand = list(range(0, min(m.d_vocab, 300)))
    # a glitch rule the statistics can see: late (rare) ids, as BPE merge order goes
    truth = {t: "glitch" if t >= 220 else "normal" for t in cand}
    samp = np.arange(len(cand)) % 2 == 0
    y = np.array([truth[t] == "glitch" for t in np.array(cand)[samp]])
    asked = []

    def label(ids):
        asked.extend(ids)
        return [truth[t] for t in ids]

    out = statistics_detector(m, cand, samp, y, label, seed=0)
    assert sorted(asked) == sorted(np.array(cand)[out["predicted"]].tolist())
    assert not (out["predicted"] & samp).any() and np.isnan(out["score"][samp]).all()
    assert all(truth[t] == "glitch" for t in out["found"])
    n_true = sum(c == "glitch" for c in truth.values())
    pred = np.array(cand)[out["predicted"]]
    # the SVM's picks are mostly glitch tokens (a blind pick would be 27% glitch), and most glitch tokens are found
    assert np.mean([truth[t] == "glitch" for t in pred]) > 0.8
    assert len(out["found"]) / n_true > 0.75
    assert set(out["seconds"]) == {"features", "training", "prediction", "verification"}
    with pytest.raises(InterpError):
        statistics_detector(m, cand, samp[:-1], y, label)


def test_calls_for_recall_and_curve():
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0, 1, 0], bool)
    samp = np.zeros(10, bool)
    samp[0] = True  # one glitch already found by the sample
    score = np.array([np.nan, 5, 4, 3, 2, 1, 0, -1, -2, -3])
    # order of verification: 1(n) 2(g) 3 4 5(g) 6 7 8(g) 9; need ceil(0.75 * 4) = 3 found, 2 beyond the sample
    assert calls_for_recall(samp, score, y, 0.75) == 1 + 5
    assert calls_for_recall(samp, score, y, 0.25) == 1
    assert calls_for_recall(samp, score, y, 1.0) == 1 + 8
    cur = recall_cost_curve(samp, score, y, fixed_s=2.0, per_token_s=1.0, exhaustive_s=10.0)
    assert cur.n_verified.iloc[0] == 0 and cur.n_verified.iloc[-1] == 9
    assert cur.recall.iloc[0] == 0.25 and cur.recall.iloc[-1] == 1.0
    assert (cur.seconds == 2.0 + 1 + cur.n_verified).all() and (cur.cost_ratio == cur.seconds / 10).all()
    assert cur.set_index("n_verified").recall[5] == 0.75

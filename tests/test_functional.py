"""The Functional API: multi-input/output models, merge layers, shared layers, nesting, freezing,
saving and the errors on bad input. References are numpy formulas written here."""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers

RNG = np.random.default_rng(0)


def _relu(z):
    return np.maximum(z, 0.0)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _dense(layer, x, act=None):
    k, b = layer.get_weights()
    z = x @ k + b
    return act(z) if act is not None else z


def _sparse_ce(p, y):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -np.log(p[np.arange(len(y)), y.astype(int)])


def _two_head_model():
    """Two inputs -> concatenate -> Dense relu trunk -> 'cls' (softmax 3) and 'reg' (linear 1)."""
    a = fn.Input(shape=(4,), name="in_a")
    b = fn.Input(shape=(3,), name="in_b")
    h = layers.Dense(8, activation="relu", name="trunk")(layers.Concatenate(name="cat")([a, b]))
    cls = layers.Dense(3, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    return fn.Model(inputs=[a, b], outputs=[cls, reg])


def _two_head_forward(model, xa, xb):
    h = _dense(model.get_layer("trunk"), np.concatenate([xa, xb], axis=1), _relu)
    return _dense(model.get_layer("cls"), h, _softmax), _dense(model.get_layer("reg"), h)


def _two_head_data(n=40):
    rng = np.random.default_rng(1)
    xa = rng.normal(size=(n, 4)).astype(np.float32)
    xb = rng.normal(size=(n, 3)).astype(np.float32)
    yc = rng.integers(0, 3, size=n)
    yr = rng.normal(size=(n, 1)).astype(np.float32)
    return xa, xb, yc, yr


# -- 1. multi-input, multi-output --------------------------------------------------------------
def test_multi_input_multi_output_predict_matches_numpy():
    model = _two_head_model()
    xa, xb, _, _ = _two_head_data()
    want_c, want_r = _two_head_forward(model, xa, xb)
    out = model.predict([xa, xb], verbose=0)
    assert isinstance(out, list) and len(out) == 2
    np.testing.assert_allclose(out[0], want_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1], want_r, rtol=1e-5, atol=1e-5)
    by_name = model.predict({"in_a": xa, "in_b": xb}, verbose=0)
    np.testing.assert_array_equal(by_name[0], out[0])
    assert model.output_names == ["cls", "reg"]


def test_dict_outputs_predict_returns_dict_and_fit_accepts_dicts():
    a = fn.Input(shape=(4,), name="in_a")
    b = fn.Input(shape=(3,), name="in_b")
    h = layers.concatenate([a, b])
    outs = {"cls": layers.Dense(3, activation="softmax", name="c")(h), "reg": layers.Dense(1, name="r")(h)}
    model = fn.Model(inputs={"in_a": a, "in_b": b}, outputs=outs)
    xa, xb, yc, yr = _two_head_data()
    model.compile("adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    hist = model.fit({"in_a": xa, "in_b": xb}, {"cls": yc, "reg": yr}, epochs=2, verbose=0)
    assert {"loss", "cls_loss", "reg_loss"} <= set(hist.history)
    pred = model.predict({"in_a": xa, "in_b": xb}, verbose=0)
    assert isinstance(pred, dict) and set(pred) == {"cls", "reg"}
    x = np.concatenate([xa, xb], axis=1)
    np.testing.assert_allclose(pred["reg"], _dense(model.get_layer("r"), x), rtol=1e-5, atol=1e-5)
    # List forms of x and y train the same model.
    model.fit([xa, xb], [yc, yr], epochs=1, verbose=0)


# -- 2. loss weighting, per-output metrics ------------------------------------------------------
def test_loss_weights_total_and_per_output_losses_and_metrics():
    model = _two_head_model()
    xa, xb, yc, yr = _two_head_data()
    model.compile(
        "adam",
        loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
        loss_weights={"cls": 0.3, "reg": 2.0},
        metrics={"cls": ["accuracy"], "reg": ["mae"]},
    )
    model.fit([xa, xb], [yc, yr], epochs=2, verbose=0)
    logs = model.evaluate([xa, xb], {"cls": yc, "reg": yr}, batch_size=len(xa), verbose=0, return_dict=True)
    p, r = _two_head_forward(model, xa, xb)
    l1 = _sparse_ce(p, yc).mean()
    l2 = ((r - yr) ** 2).mean()
    assert set(logs) == {"loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"}
    np.testing.assert_allclose(logs["cls_loss"], l1, rtol=1e-4)
    np.testing.assert_allclose(logs["reg_loss"], l2, rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], 0.3 * l1 + 2.0 * l2, rtol=1e-4)
    np.testing.assert_allclose(logs["cls_accuracy"], (p.argmax(1) == yc).mean(), atol=1e-6)
    np.testing.assert_allclose(logs["reg_mae"], np.abs(r - yr).mean(), rtol=1e-4)


def test_loss_weights_list_and_sample_weight_per_output():
    model = _two_head_model()
    xa, xb, yc, yr = _two_head_data()
    model.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5])
    sw = np.linspace(0.0, 2.0, len(xa)).astype(np.float32)
    logs = model.evaluate([xa, xb], [yc, yr], batch_size=len(xa), sample_weight={"cls": sw}, verbose=0,
                          return_dict=True)  # fmt: skip
    p, r = _two_head_forward(model, xa, xb)
    l1 = (sw * _sparse_ce(p, yc)).sum() / len(xa)
    l2 = ((r - yr) ** 2).mean()
    np.testing.assert_allclose(logs["cls_loss"], l1, rtol=1e-4)
    np.testing.assert_allclose(logs["reg_loss"], l2, rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], l1 + 0.5 * l2, rtol=1e-4)


def test_none_loss_for_one_output_and_validation_keys():
    model = _two_head_model()
    xa, xb, yc, yr = _two_head_data()
    model.compile("adam", loss={"cls": "sparse_categorical_crossentropy", "reg": None},
                  metrics={"cls": ["accuracy"]})  # fmt: skip
    hist = model.fit([xa, xb], {"cls": yc}, epochs=2, verbose=0, validation_data=([xa, xb], {"cls": yc}))
    keys = set(hist.history)
    assert not any(k.endswith(("cls_loss", "reg_loss")) for k in keys), keys
    assert {"loss", "cls_accuracy", "val_loss", "val_cls_accuracy"} <= keys
    logs = model.evaluate([xa, xb], {"cls": yc}, batch_size=len(xa), verbose=0, return_dict=True)
    p, _ = _two_head_forward(model, xa, xb)
    np.testing.assert_allclose(logs["loss"], _sparse_ce(p, yc).mean(), rtol=1e-4)
    assert set(logs) == {"loss", "cls_accuracy"}


def test_history_has_val_keys_for_two_losses():
    model = _two_head_model()
    xa, xb, yc, yr = _two_head_data()
    model.compile("adam", loss=["sparse_categorical_crossentropy", "mse"], metrics=[["accuracy"], ["mae"]])
    hist = model.fit([xa, xb], [yc, yr], epochs=2, verbose=0, validation_data=([xa, xb], [yc, yr]))
    for k in ("loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"):
        assert k in hist.history and f"val_{k}" in hist.history
        assert len(hist.history[f"val_{k}"]) == 2


# -- 3. shared layers ----------------------------------------------------------------------------
def _siamese(merge):
    a = fn.Input(shape=(5,), name="left")
    b = fn.Input(shape=(5,), name="right")
    shared = layers.Dense(4, activation="tanh", name="shared")
    m = merge(name="merge")([shared(a), shared(b)])
    out = layers.Dense(1, name="head")(m)
    return fn.Model([a, b], out), shared


@pytest.mark.parametrize("merge", [layers.Subtract, layers.Add])
def test_shared_layer_one_set_of_weights_and_gradients(merge):
    model, shared = _siamese(merge)
    assert model.count_params() == 5 * 4 + 4 + 4 + 1
    assert len(model.get_weights()) == 4
    rng = np.random.default_rng(2)
    xa, xb = rng.normal(size=(16, 5)), rng.normal(size=(16, 5))
    y = rng.normal(size=(16, 1))
    op = np.subtract if merge is layers.Subtract else np.add
    want = _dense(model.get_layer("head"), op(_dense(shared, xa, np.tanh), _dense(shared, xb, np.tanh)))
    np.testing.assert_allclose(model.predict([xa, xb], verbose=0), want, rtol=1e-5, atol=1e-5)
    model.compile(fn.optimizers.SGD(0.1), loss="mse")
    assert fn.testing.check_gradients(model, [xa, xb], y) < 1e-2
    before = shared.get_weights()[0]
    model.fit([xa, xb], y, epochs=2, verbose=0)
    assert not np.array_equal(before, shared.get_weights()[0])


def test_shared_layer_gradient_is_sum_of_both_uses():
    # One SGD step on the shared kernel equals lr * (grad via left + grad via right), in numpy.
    a = fn.Input(shape=(3,))
    b = fn.Input(shape=(3,))
    shared = layers.Dense(2, use_bias=False, name="sh")
    out = layers.Dense(1, use_bias=False, name="hd")(layers.add([shared(a), shared(b)]))
    model = fn.Model([a, b], out)
    model.compile(fn.optimizers.SGD(0.1), loss="mse")
    rng = np.random.default_rng(3)
    xa, xb, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    (k,), (v,) = shared.get_weights(), model.get_layer("hd").get_weights()
    pred = (xa @ k + xb @ k) @ v
    g = 2 * (pred - y) / len(y)  # d mean((pred-y)^2) / d pred
    grad_k = xa.T @ (g @ v.T) + xb.T @ (g @ v.T)
    model.train_on_batch([xa, xb], y)
    np.testing.assert_allclose(shared.get_weights()[0], k - 0.1 * grad_k, rtol=1e-4, atol=1e-6)


# -- 4. merge layers -----------------------------------------------------------------------------
MERGES = [
    (layers.Add, lambda a, b: a + b),
    (layers.Subtract, lambda a, b: a - b),
    (layers.Multiply, lambda a, b: a * b),
    (layers.Average, lambda a, b: (a + b) / 2),
    (layers.Maximum, np.maximum),
    (layers.Minimum, np.minimum),
]


@pytest.mark.parametrize("cls,ref", MERGES)
def test_merge_layers_forward(cls, ref):
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    out = cls()([a, b])
    np.testing.assert_allclose(out.numpy(), ref(a, b), rtol=1e-6, atol=1e-6)
    ia, ib = fn.Input(shape=(4,)), fn.Input(shape=(4,))
    model = fn.Model([ia, ib], cls()([ia, ib]))
    np.testing.assert_allclose(model.predict([a, b], verbose=0), ref(a, b), rtol=1e-6, atol=1e-6)


def test_functional_merge_forms_and_identity():
    rng = np.random.default_rng(5)
    a, b, c = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3))
    ia, ib, ic = (fn.Input(shape=(4,)) for _ in range(3))
    outs = [layers.add([ia, ib, ic]), layers.subtract([ia, ib]), layers.multiply([ia, ib, ic]),
            layers.average([ia, ib, ic]), layers.maximum([ia, ib, ic]), layers.minimum([ia, ib, ic]),
            layers.concatenate([ia, ib]), layers.dot([ia, ib], axes=1), layers.Identity()(ia)]  # fmt: skip
    model = fn.Model([ia, ib, ic], outs)
    got = model.predict([a, b, c], verbose=0)
    want = [a + b + c, a - b, a * b * c, (a + b + c) / 3, np.maximum(np.maximum(a, b), c),
            np.minimum(np.minimum(a, b), c), np.concatenate([a, b], 1), (a * b).sum(1, keepdims=True),
            a]  # fmt: skip
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_add_broadcasts_and_concatenate_axis_1_and_cosine_dot():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2, 3, 1)).astype(np.float32), rng.normal(size=(2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(layers.Add()([a, b]).numpy(), a + b, rtol=1e-6)
    ia, ib = fn.Input(shape=(3, 1)), fn.Input(shape=(3, 4))
    out = layers.Add()([ia, ib])
    assert out.shape == (None, 3, 4)
    np.testing.assert_allclose(fn.Model([ia, ib], out).predict([a, b], verbose=0), a + b, rtol=1e-6)

    c, d = rng.normal(size=(5, 2, 3)).astype(np.float32), rng.normal(size=(5, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(layers.Concatenate(axis=1)([c, d]).numpy(), np.concatenate([c, d], 1))
    ic, id_ = fn.Input(shape=(2, 3)), fn.Input(shape=(4, 3))
    cat = layers.Concatenate(axis=1)([ic, id_])
    assert cat.shape == (None, 6, 3)
    np.testing.assert_allclose(fn.Model([ic, id_], cat).predict([c, d], verbose=0), np.concatenate([c, d], 1))

    u, v = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(6, 5)).astype(np.float32)
    cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    got = layers.Dot(axes=1, normalize=True)([u, v]).numpy()
    np.testing.assert_allclose(got.reshape(-1), cos, rtol=1e-5, atol=1e-6)
    iu, iv = fn.Input(shape=(5,)), fn.Input(shape=(5,))
    m = fn.Model([iu, iv], layers.Dot(axes=1, normalize=True)([iu, iv]))
    np.testing.assert_allclose(m.predict([u, v], verbose=0).reshape(-1), cos, rtol=1e-5, atol=1e-6)


# -- 5. freezing / transfer learning ----------------------------------------------------------------
def _digits_small():
    x, y = fn.datasets.load_digits()
    return (x[:300] / 16.0).astype(np.float32), y[:300]


@pytest.mark.parametrize("how", ["layer", "inner_model"])
@pytest.mark.parametrize("opt", ["adam", "adamw"])
def test_frozen_trunk_unchanged_head_changes(how, opt):
    x, y = _digits_small()
    inp = fn.Input(shape=(64,))
    t1 = layers.Dense(16, activation="relu", name="t1")
    t2 = layers.Dense(16, activation="relu", name="t2")
    trunk = fn.Model(inp, t2(t1(inp)), name="trunk")
    pre = fn.Model(inp, layers.Dense(10, activation="softmax")(trunk.output))
    pre.compile("adam", loss="sparse_categorical_crossentropy")
    pre.fit(x, y, epochs=2, verbose=0)

    if how == "layer":
        t1.trainable = False
        t2.trainable = False
    else:
        trunk.trainable = False
    new_in = fn.Input(shape=(64,))
    head = layers.Dense(10, activation="softmax", name="new_head")
    model = fn.Model(new_in, head(trunk(new_in)))
    frozen = [w.copy() for w in trunk.get_weights()]
    head_before = head.get_weights()[0].copy()
    optimizer = fn.optimizers.AdamW(1e-2, weight_decay=0.1) if opt == "adamw" else fn.optimizers.Adam(1e-2)
    model.compile(optimizer, loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    for a, b in zip(frozen, trunk.get_weights()):
        assert np.array_equal(a, b)
    assert not np.array_equal(head_before, head.get_weights()[0])
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 4
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert f"Trainable params: {16 * 10 + 10:,}" in text
    assert f"Non-trainable params: {64 * 16 + 16 + 16 * 16 + 16:,}" in text


def test_frozen_batchnorm_inference_mode_and_weight_roles():
    x, y = _digits_small()
    inp = fn.Input(shape=(64,))
    h = layers.Dense(8, name="d1")(inp)
    bn = layers.BatchNormalization(name="bn")
    out = layers.Dense(10, activation="softmax", name="d2")(bn(h))
    model = fn.Model(inp, out)
    model.compile("adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    assert [v.path for v in bn.trainable_weights] == ["bn/gamma", "bn/beta"]
    assert [v.path for v in bn.non_trainable_weights] == ["bn/moving_mean", "bn/moving_variance"]
    assert len(model.trainable_weights) == 6 and len(model.non_trainable_weights) == 2

    bn.trainable = False
    model.compile("adam", loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in bn.get_weights()]
    d2_before = model.get_layer("d2").get_weights()[0].copy()
    model.fit(x, y, epochs=2, verbose=0)
    for a, b in zip(before, bn.get_weights()):
        assert np.array_equal(a, b)
    assert not np.array_equal(d2_before, model.get_layer("d2").get_weights()[0])
    np.testing.assert_allclose(model(x[:20], training=True).numpy(), model(x[:20], training=False).numpy(),
                               rtol=1e-6, atol=1e-7)  # fmt: skip
    # Inference mode: (h - moving_mean) / sqrt(moving_var + eps) * gamma + beta.
    gamma, beta, mean, var = bn.get_weights()
    hh = _dense(model.get_layer("d1"), x[:20])
    z = (hh - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(model.predict(x[:20], verbose=0), _dense(model.get_layer("d2"), z, _softmax),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    assert len(model.trainable_weights) == 4 and len(model.non_trainable_weights) == 4
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert f"Trainable params: {64 * 8 + 8 + 8 * 10 + 10:,}" in text
    assert "Non-trainable params: 32" in text
    assert "Connected to" in text


def test_trainable_weight_names_frozen_dense():
    inp = fn.Input(shape=(3,))
    d1, d2 = layers.Dense(2, name="fa"), layers.Dense(1, name="fb")
    model = fn.Model(inp, d2(d1(inp)))
    d1.trainable = False
    assert [v.path for v in model.non_trainable_weights] == ["fa/kernel", "fa/bias"]
    assert [v.path for v in model.trainable_weights] == ["fb/kernel", "fb/bias"]
    assert [v.path for v in model.weights] == ["fa/kernel", "fa/bias", "fb/kernel", "fb/bias"]
    np.testing.assert_array_equal(model.weights[0].numpy(), d1.get_weights()[0])


# -- 6. feature extraction ------------------------------------------------------------------------
def test_feature_extractor_shares_weights():
    x, y = _digits_small()
    inp = fn.Input(shape=(64,))
    h = layers.Dense(12, activation="relu", name="fe1")(inp)
    out = layers.Dense(10, activation="softmax", name="fe2")(h)
    m = fn.Model(inp, out)
    m.compile("adam", loss="sparse_categorical_crossentropy")
    extractor = fn.Model(inputs=m.inputs, outputs=[la.output for la in m.layers])
    m.fit(x, y, epochs=2, verbose=0)
    feats = extractor.predict(x[:10], verbose=0)
    assert len(feats) == 3
    np.testing.assert_array_equal(feats[0], x[:10])
    np.testing.assert_allclose(feats[1], _dense(m.get_layer("fe1"), x[:10], _relu), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats[-1], m.predict(x[:10], verbose=0), rtol=1e-6, atol=1e-7)
    m.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(extractor.predict(x[:10], verbose=0)[-1], m.predict(x[:10], verbose=0),
                               rtol=1e-6, atol=1e-7)  # fmt: skip


# -- 7. nested models -----------------------------------------------------------------------------
def test_functional_nested_in_functional():
    inner_in = fn.Input(shape=(4,), name="inner_in")
    inner = fn.Model(inner_in, layers.Dense(3, activation="relu", name="inner_dense")(inner_in), name="inner")
    outer_in = fn.Input(shape=(4,), name="outer_in")
    out = layers.Dense(2, name="outer_dense")(inner(outer_in))
    outer = fn.Model(outer_in, out, name="outer")
    assert [la.name for la in outer.layers] == ["outer_in", "inner", "outer_dense"]
    assert isinstance(outer.layers[0], layers.InputLayer)
    assert outer.get_layer("inner") is inner
    x = np.random.default_rng(7).normal(size=(5, 4)).astype(np.float32)
    want = _dense(outer.get_layer("outer_dense"), inner.predict(x, verbose=0))
    np.testing.assert_allclose(outer.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    assert outer.count_params() == 4 * 3 + 3 + 3 * 2 + 2


def test_sequential_nested_in_sequential():
    inner = fn.Sequential([fn.Input(shape=(4,)), layers.Dense(3, activation="relu", name="sa")], name="sin")
    outer = fn.Sequential([inner, layers.Dense(2, name="sb")])
    assert [la.name for la in outer.layers] == ["sin", "sb"]
    x = np.random.default_rng(8).normal(size=(5, 4)).astype(np.float32)
    want = _dense(outer.get_layer("sb"), _dense(inner.get_layer("sa"), x, _relu))
    np.testing.assert_allclose(outer.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    composed = outer.get_layer("sb")(inner.predict(x, verbose=0)).numpy()
    np.testing.assert_allclose(outer.predict(x, verbose=0), composed, rtol=1e-5, atol=1e-6)


def test_sequential_in_functional_shared_twice():
    seq = fn.Sequential([fn.Input(shape=(4,)), layers.Dense(3, activation="relu", name="sq1")], name="seq")
    i1, i2 = fn.Input(shape=(4,)), fn.Input(shape=(4,))
    model = fn.Model([i1, i2], layers.Dense(1, name="sq_head")(layers.add([seq(i1), seq(i2)], name="sq_add")))
    assert [la.name for la in model.layers][2:] == ["seq", "sq_add", "sq_head"]
    assert model.get_layer("seq") is seq
    assert model.count_params() == 4 * 3 + 3 + 3 + 1
    x = np.random.default_rng(11).normal(size=(6, 4)).astype(np.float32)
    model.compile("adam", loss="mse")
    model.fit([x, 2 * x], np.ones((6, 1)), epochs=2, verbose=0)
    s = seq.get_layer("sq1")
    want = _dense(model.get_layer("sq_head"), _dense(s, x, _relu) + _dense(s, 2 * x, _relu))
    np.testing.assert_allclose(model.predict([x, 2 * x], verbose=0), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(seq.predict(x, verbose=0), _dense(s, x, _relu), rtol=1e-5, atol=1e-6)


# -- 8. layers called on data ------------------------------------------------------------------------
def test_layer_called_on_data_and_build():
    d = layers.Dense(3)
    out = d(np.ones((2, 4)))
    k, b = d.get_weights()
    assert k.shape == (4, 3) and b.shape == (3,)
    np.testing.assert_allclose(out.numpy(), np.ones((2, 4)) @ k + b, rtol=1e-6)
    d2 = layers.Dense(5)
    d2.build((None, 4))
    assert [w.shape for w in d2.get_weights()] == [(4, 5), (5,)]
    assert [v.path for v in d2.weights] == [f"{d2.name}/kernel", f"{d2.name}/bias"]


def test_normalization_adapted_then_called():
    data = np.random.default_rng(9).normal(3.0, 2.0, size=(50, 4)).astype(np.float32)
    norm = layers.Normalization()
    norm.adapt(data)
    want = (data - data.mean(0)) / np.sqrt(data.var(0))
    np.testing.assert_allclose(norm(data).numpy(), want, rtol=1e-4, atol=1e-4)
    inp = fn.Input(shape=(4,))
    np.testing.assert_allclose(fn.Model(inp, norm(inp)).predict(data, verbose=0), want, rtol=1e-4, atol=1e-4)


# -- 9. multitask on the digits ----------------------------------------------------------------------
def test_multitask_digits_matches_single_task():
    x, labels = fn.datasets.load_digits()
    x = x.astype(np.float32)
    mass = (x.sum(1) / (64 * 16)).reshape(-1, 1).astype(np.float32)
    x = x / 16.0
    order = np.random.default_rng(0).permutation(len(x))
    tr, te = order[:1400], order[1400:]

    def build(heads):
        inp = fn.Input(shape=(64,))
        h = layers.Dense(64, activation="relu", name="trunk")(inp)
        outs = {}
        if "cls" in heads:
            outs["cls"] = layers.Dense(10, activation="softmax", name="cls")(h)
        if "reg" in heads:
            outs["reg"] = layers.Dense(1, name="reg")(h)
        return fn.Model(inp, outs)

    # The mse of the pixel mass (~1e-3) is ~100x smaller than the cross-entropy: loss_weights
    # balance the two heads' gradients in the shared trunk (at equal weights the regression head
    # underfits), and the same weights are used when a head trains alone.
    losses = {"cls": "sparse_categorical_crossentropy", "reg": "mse"}
    weights = {"cls": 1.0, "reg": 100.0}
    targets_tr = {"cls": labels[tr], "reg": mass[tr]}
    scores = {}
    for heads in (("cls", "reg"), ("cls",), ("reg",)):
        fn.utils.set_random_seed(7)
        model = build(heads)
        model.compile(fn.optimizers.Adam(3e-3), loss={h: losses[h] for h in heads},
                      loss_weights={h: weights[h] for h in heads})  # fmt: skip
        model.fit(x[tr], {h: targets_tr[h] for h in heads}, epochs=60, batch_size=32, verbose=0)
        pred = model.predict(x[te], verbose=0)
        if "cls" in heads:
            scores[heads, "acc"] = (pred["cls"].argmax(1) == labels[te]).mean()
        if "reg" in heads:
            scores[heads, "mse"] = ((pred["reg"] - mass[te]) ** 2).mean()
    joint = ("cls", "reg")
    assert scores[("cls",), "acc"] > 0.95
    assert scores[joint, "acc"] >= scores[("cls",), "acc"] - 0.03
    assert scores[joint, "mse"] < 0.2 * mass[te].var()
    assert scores[joint, "mse"] <= 2 * scores[("reg",), "mse"] + 5e-5


# -- 10. save / load --------------------------------------------------------------------------------
def _complex_model():
    inner_in = fn.Input(shape=(6,), name="inner_in")
    inner = fn.Model(inner_in, layers.Dense(5, activation="relu", name="inner_d")(inner_in), name="inner")
    a = fn.Input(shape=(4,), name="xa")
    b = fn.Input(shape=(4,), name="xb")
    shared = layers.Dense(3, activation="tanh", name="shared")
    h = layers.Concatenate(name="cat")([shared(a), shared(b)])
    h = inner(h)
    cls = layers.Dense(3, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(layers.Subtract(name="sub")([shared(a), shared(b)]))
    return fn.Model([a, b], [cls, reg], name="complex")


def test_save_load_round_trip_and_resume(tmp_path):
    model = _complex_model()
    xa, _, yc, yr = _two_head_data()
    xb = np.random.default_rng(10).normal(size=xa.shape).astype(np.float32)
    model.compile("adam", loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                  metrics=[["accuracy"], ["mae"]])  # fmt: skip
    model.fit([xa, xb], [yc, yr], epochs=2, verbose=0)
    path = tmp_path / "m.ferronet"
    model.save(path)
    loaded = fn.models.load_model(path)
    for p, q in zip(model.predict([xa, xb], verbose=0), loaded.predict([xa, xb], verbose=0)):
        np.testing.assert_array_equal(p, q)
    assert [la.name for la in loaded.layers] == [la.name for la in model.layers]
    assert loaded.count_params() == model.count_params()
    model.fit([xa, xb], [yc, yr], epochs=1, shuffle=False, verbose=0)
    loaded.fit([xa, xb], [yc, yr], epochs=1, shuffle=False, verbose=0)
    for p, q in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(p, q)
    assert model.evaluate([xa, xb], [yc, yr], verbose=0, return_dict=True) == loaded.evaluate(
        [xa, xb], [yc, yr], verbose=0, return_dict=True
    )


def test_frozen_state_survives_save_load(tmp_path):
    inner_in = fn.Input(shape=(4,))
    inner = fn.Model(inner_in, layers.Dense(3, activation="relu", name="fz_t")(inner_in), name="fz_inner")
    inp = fn.Input(shape=(4,))
    model = fn.Model(inp, layers.Dense(2, name="fz_head")(inner(inp)))
    inner.trainable = False
    model.compile("adam", loss="mse")
    model.save(tmp_path / "f.ferronet")
    loaded = fn.models.load_model(tmp_path / "f.ferronet")
    assert not loaded.get_layer("fz_inner").trainable
    assert len(loaded.trainable_weights) == 2 and len(loaded.non_trainable_weights) == 2
    before = loaded.get_weights()
    x = np.random.default_rng(12).normal(size=(8, 4))
    loaded.fit(x, np.ones((8, 2)), epochs=2, verbose=0)
    after = loaded.get_weights()
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert not np.array_equal(before[2], after[2])


def test_from_config_rebuilds_architecture():
    model = _complex_model()
    cfg = model.get_config()
    rebuilt = fn.Model.from_config(cfg)
    cfg2 = rebuilt.get_config()

    def shape(c):
        return [(e["class_name"], e["name"], e["inbound_nodes"]) for e in c["layers"]]

    assert shape(cfg) == shape(cfg2)
    assert cfg2["input_layers"] == cfg["input_layers"] and cfg2["output_layers"] == cfg["output_layers"]
    assert rebuilt.count_params() == model.count_params()
    x = [np.ones((2, 4), np.float32), np.zeros((2, 4), np.float32)]
    rebuilt.set_weights(model.get_weights())
    for p, q in zip(model.predict(x, verbose=0), rebuilt.predict(x, verbose=0)):
        np.testing.assert_array_equal(p, q)


# -- 11. bad input ---------------------------------------------------------------------------------
def _works(model, xs):
    out = model.predict(xs, verbose=0)
    assert np.all(np.isfinite(out[0] if isinstance(out, list) else out))


def test_output_not_connected_names_missing_input():
    a = fn.Input(shape=(3,), name="conn_a")
    b = fn.Input(shape=(3,), name="missing_b")
    out = layers.Add()([a, b])
    with pytest.raises(ValueError, match="missing_b"):
        fn.Model(a, out)
    _works(fn.Model([a, b], out), [np.ones((2, 3)), np.ones((2, 3))])


def test_add_incompatible_shapes_message():
    a, b = fn.Input(shape=(3,)), fn.Input(shape=(5,))
    with pytest.raises(ValueError, match=r"\(3,\).*\(5,\)"):
        layers.Add()([a, b])
    with pytest.raises(ValueError, match=r"\(3,\).*\(5,\)"):
        layers.Add()([np.ones((2, 3)), np.ones((2, 5))])
    with pytest.raises(ValueError, match=r"\(None, 2, 3\).*\(None, 4, 4\)"):
        layers.Concatenate(axis=1)([fn.Input(shape=(2, 3)), fn.Input(shape=(4, 4))])
    with pytest.raises(ValueError, match="3.*5"):
        layers.Dot(axes=1)([a, b])
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        layers.Subtract()([a, a, a])
    _works(fn.Model(a, layers.Add()([a, a])), np.ones((2, 3)))


def test_duplicate_layer_names_rejected():
    inp = fn.Input(shape=(3,))
    out = layers.Dense(2, name="twin")(layers.Dense(2, name="twin")(inp))
    with pytest.raises(ValueError, match="twin"):
        fn.Model(inp, out)


def test_fit_with_wrong_inputs_and_targets():
    model = _two_head_model()
    model.compile("adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    xa, xb, yc, yr = _two_head_data()
    with pytest.raises(ValueError, match="2 input"):
        model.fit([xa], [yc, yr], verbose=0)
    with pytest.raises(ValueError, match="2 input"):
        model.fit([xa, xb, xb], [yc, yr], verbose=0)
    with pytest.raises(ValueError, match="nope"):
        model.fit({"in_a": xa, "nope": xb}, [yc, yr], verbose=0)
    with pytest.raises(ValueError, match="wrong_out"):
        model.fit([xa, xb], {"cls": yc, "wrong_out": yr}, verbose=0)
    with pytest.raises(ValueError, match="in_b"):
        model.fit([xa, xa], [yc, yr], verbose=0)  # xa has 4 features, in_b expects 3
    model.fit([xa, xb], [yc, yr], epochs=1, verbose=0)
    _works(model, [xa, xb])


def test_loss_dict_with_unknown_output():
    model = _two_head_model()
    with pytest.raises(ValueError, match="unknown_head"):
        model.compile("adam", loss={"cls": "mse", "unknown_head": "mse"})
    with pytest.raises(ValueError, match="unknown_head"):
        model.compile("adam", loss="mse", loss_weights={"unknown_head": 1.0})
    with pytest.raises(ValueError, match="unknown_head"):
        model.compile("adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                      metrics={"unknown_head": ["mae"]})  # fmt: skip
    model.compile("adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    xa, xb, yc, yr = _two_head_data()
    model.fit([xa, xb], [yc, yr], epochs=1, verbose=0)


def test_built_dense_on_other_last_dimension():
    d = layers.Dense(2, name="fixed")
    d(np.ones((1, 4)))
    with pytest.raises(ValueError) as e:
        d(fn.Input(shape=(5,)))
    assert "fixed" in str(e.value) and "5" in str(e.value) and "4" in str(e.value)
    with pytest.raises(ValueError):
        d(np.ones((1, 6)))
    assert d(np.ones((1, 4))).shape == (1, 2)


def test_set_weights_wrong_shape_is_atomic():
    model, shared = _siamese(layers.Add)
    before = model.get_weights()
    with pytest.raises(ValueError, match="shape"):
        shared.set_weights([np.zeros((5, 4)), np.zeros(7)])
    bad = [w.copy() + 1 for w in before]
    bad[-1] = np.zeros(3)
    with pytest.raises(ValueError, match="shape"):
        model.set_weights(bad)
    with pytest.raises(ValueError):
        model.set_weights(before[:-1])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    _works(model, [np.ones((2, 5)), np.ones((2, 5))])


def test_merge_layer_needs_a_list_and_mixed_calls_rejected():
    with pytest.raises(ValueError, match="list"):
        layers.Add()(fn.Input(shape=(3,)))
    with pytest.raises(TypeError, match="symbolic"):
        layers.Add()([fn.Input(shape=(3,)), np.ones((2, 3))])

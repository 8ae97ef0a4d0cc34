"""Hardening, round 2: catchable exceptions only, one model shared by threads, fork safety,
re-entrant fit refused, atomic set_weights, bounded class weights, careful saves, hostile model
files rejected cheaply, and the small argument checks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers

rng = np.random.default_rng(0)


def run_isolated(code: str, address_space_gb: float | None = None, timeout: float = 60) -> str:
    """Runs ``code`` in a fresh interpreter (optionally under an address-space limit, so a huge
    allocation fails instead of swapping) and returns its stdout; fails on a signal, a hang or a
    non-zero exit."""
    prelude = "import resource\n"
    if address_space_gb is not None:
        limit = int(address_space_gb * 2**30)
        prelude += f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def small_model(units: int = 3, compiled: bool = True):
    m = fn.Sequential([layers.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(units)])
    if compiled:
        m.compile("adam", "mse")
    return m


def test_an_output_too_large_for_memory_raises_memory_error():
    out = run_isolated(
        """
        import numpy as np, ferronet as fn
        from ferronet import layers
        m = fn.Sequential([layers.Input((1,)), layers.Dense(100_000)])
        x = np.ones((20_000, 1), np.float32)
        try:
            m.predict(x, verbose=0)
        except MemoryError:
            print("MemoryError")
        print(m.predict(x[:2], verbose=0).shape)
        """,
        address_space_gb=3,
    )
    assert out.split() == ["MemoryError", "(2,", "100000)"]


# -- one model, several threads -------------------------------------------------------------
def run_threads(*targets, timeout: float = 60):
    """Runs each target in its own thread; re-raises the first exception any of them raised."""
    import threading

    errors = []

    def wrap(f):
        def go():
            try:
                f()
            except BaseException as e:  # noqa: BLE001 - reported to the test below
                errors.append(e)

        return go

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]


def regression_data(n=256):
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x @ rng.normal(size=(4, 3))).astype(np.float32)


def test_predict_from_many_threads_matches_single_threaded():
    m = small_model()
    x, _ = regression_data()
    want = m.predict(x, verbose=0)

    def predict():
        for _ in range(50):
            np.testing.assert_array_equal(m.predict(x, verbose=0), want)
            np.testing.assert_array_equal(m.predict(x[:5], batch_size=2, verbose=0), want[:5])

    run_threads(*[predict] * 4)


def test_evaluate_and_get_weights_from_many_threads():
    m = small_model()
    x, y = regression_data()
    want, weights = m.evaluate(x, y, verbose=0), m.get_weights()

    def evaluate():
        for _ in range(30):
            assert m.evaluate(x, y, verbose=0) == want
            assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), weights))

    run_threads(*[evaluate] * 3)


def test_predict_save_and_get_weights_while_another_thread_trains(tmp_path):
    import threading

    m = small_model()
    x, y = regression_data(2048)
    seen, done, used = [], threading.Event(), threading.Event()

    class WaitForUse(fn.callbacks.Callback):
        # Training goes on only once the other thread has run during this fit.
        def on_epoch_end(self, epoch, logs=None):
            used.wait(30)

    def train():
        try:
            m.fit(x, y, epochs=6, batch_size=8, verbose=0, callbacks=[WaitForUse()])
        finally:
            done.set()

    def use():
        k = 0
        while not done.is_set():
            out = m.predict(x[:16], verbose=0)
            assert out.shape == (16, 3) and np.isfinite(out).all()
            m.save(tmp_path / f"m{k % 2}.ferronet")
            seen.append(len(m.get_weights()))
            k += 1
            used.set()

    run_threads(train, use)
    assert seen and set(seen) == {4}
    # A file saved during training is a whole model, whose predictions match its weights.
    for k in range(min(2, len(seen))):
        back = fn.models.load_model(tmp_path / f"m{k}.ferronet")
        probe = fn.Sequential([layers.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(3)])
        probe.set_weights(back.get_weights())
        np.testing.assert_array_equal(back.predict(x[:8], verbose=0), probe.predict(x[:8], verbose=0))
    # Training from another thread gives the weights a single-threaded run gives.
    fn.utils.set_random_seed(7)
    a = small_model()
    a.fit(x, y, epochs=2, batch_size=32, verbose=0)
    fn.utils.set_random_seed(7)
    b = small_model()

    def train_b():
        b.fit(x, y, epochs=2, batch_size=32, verbose=0)

    def predict_b():
        for _ in range(100):
            b.predict(x[:4], verbose=0)

    run_threads(train_b, predict_b)
    assert all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))


def test_a_second_thread_may_not_fit_the_same_model():
    import threading

    m = small_model()
    x, y = regression_data()
    started, release = threading.Event(), threading.Event()

    class Hold(fn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            started.set()
            release.wait(30)

    def first():
        m.fit(x, y, epochs=1, verbose=0, callbacks=[Hold()])

    def second():
        started.wait(30)
        try:
            with pytest.raises(RuntimeError, match="another thread"):
                m.fit(x, y, epochs=1, verbose=0)
        finally:
            release.set()

    run_threads(first, second)
    m.fit(x, y, epochs=1, verbose=0)  # free again once the first fit ended


def test_a_callback_may_predict_on_the_model_it_trains():
    m = small_model()
    x, y = regression_data()
    outs = []

    class Probe(fn.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            outs.append(self.model.predict(x[:2], verbose=0))

        def on_epoch_end(self, epoch, logs=None):
            outs.append(self.model.evaluate(x, y, verbose=0))

    m.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[Probe()])
    assert len(outs) == 2 * 4 + 2


# -- fork ----------------------------------------------------------------------------------
def test_a_forked_child_predicts_and_trains():
    out = run_isolated(
        """
        import os, time, warnings
        import numpy as np, ferronet as fn
        from ferronet import layers
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with the engine's threads
        fn.set_num_threads(2)
        m = fn.Sequential([layers.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(3)])
        m.compile("adam", "mse")
        x = np.ones((64, 4), np.float32)
        want = m.predict(x, verbose=0)
        pid = os.fork()
        if pid == 0:
            ok = np.array_equal(m.predict(x, verbose=0), want)
            m.fit(x, np.zeros((64, 3), np.float32), epochs=1, verbose=0)
            ok = ok and fn.get_num_threads() == 2
            os._exit(0 if ok else 3)
        deadline = time.time() + 30
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("child exit", os.waitstatus_to_exitcode(status))
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            print("child hung")
        """
    )
    assert out.strip() == "child exit 0"


def test_multiprocessing_fork_pool_uses_a_model_built_in_the_parent():
    out = run_isolated(
        """
        import multiprocessing as mp, warnings
        import numpy as np, ferronet as fn
        from ferronet import layers
        warnings.simplefilter("ignore", DeprecationWarning)
        m = fn.Sequential([layers.Input((4,)), layers.Dense(3)])
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        want = m.predict(x, verbose=0)

        def work(k):
            return float(np.abs(m.predict(x * k, verbose=0) - want * k).max())

        with mp.get_context("fork").Pool(2) as pool:
            print(max(pool.map(work, [0, 1, 2, 3], chunksize=1)) < 1e-4)
        """
    )
    assert out.strip() == "True"


def test_fit_from_a_callback_of_fit_on_the_same_model_is_refused():
    m = small_model()
    x, y = regression_data()
    batches = []

    class Nested(fn.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)
            if batch == 1:
                self.model.fit(x, y, epochs=1, verbose=0)

    with pytest.raises(RuntimeError, match="callback of a running fit"):
        m.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[Nested()])
    assert batches == [0, 1]
    # The outer fit released the model: training works again, whole epochs.
    m.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert m._core.steps_done == 8


# -- set_weights ---------------------------------------------------------------------------
def nested_model():
    inner = fn.Sequential([layers.Input((4,)), layers.Dense(5, activation="tanh"), layers.Dense(4)])
    x = layers.Input((4,))
    return fn.Model(x, layers.Dense(2)(inner(x)))


def test_set_weights_changes_nothing_when_any_array_is_wrong():
    for m in (small_model(), nested_model()):
        before = m.get_weights()
        for k in range(len(before)):
            bad = [w + 1 for w in before]
            bad[k] = np.zeros((7, 7), np.float32)
            with pytest.raises(ValueError, match="shape"):
                m.set_weights(bad)
            bad[k] = np.array(["x"] * before[k].size).reshape(before[k].shape)
            with pytest.raises(TypeError):
                m.set_weights(bad)
            with pytest.raises(ValueError):
                m.set_weights(bad[:k])
            assert all(np.array_equal(a, b) for a, b in zip(before, m.get_weights()))
        m.set_weights([w + 1 for w in before])
        assert all(np.array_equal(a + 1, b) for a, b in zip(before, m.get_weights()))


def test_layer_set_weights_changes_nothing_on_a_wrong_shape():
    m = nested_model()
    before = m.get_weights()
    for la in (m.layers[1], m.layers[1].layers[1], m.layers[2]):
        current = la.get_weights()
        bad = [w + 1 for w in current]
        bad[-1] = np.zeros(99, np.float32)
        with pytest.raises(ValueError):
            la.set_weights(bad)
    assert all(np.array_equal(a, b) for a, b in zip(before, m.get_weights()))


def test_no_thread_sees_half_of_a_set_weights():
    m = small_model()
    x, _ = regression_data(8)
    a = m.get_weights()
    b = [w * -2 + 0.5 for w in a]
    want = []
    for ws in (a, b):
        m.set_weights(ws)
        want.append(m.predict(x, verbose=0))
    stop = []

    def swap():
        for k in range(2000):
            m.set_weights(a if k % 2 else b)
        stop.append(True)

    def predict():
        while not stop:
            out = m.predict(x, verbose=0)
            assert any(np.array_equal(out, w) for w in want)

    # Switch threads often, so a partial update would be seen.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        run_threads(swap, predict)
    finally:
        sys.setswitchinterval(interval)


# -- class_weight ----------------------------------------------------------------------------
def test_class_weight_memory_does_not_depend_on_class_indices():
    out = run_isolated(
        """
        import numpy as np, ferronet as fn
        from ferronet import layers
        m = fn.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
        m.compile("sgd", "sparse_categorical_crossentropy")
        x, y = np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
        m.fit(x, y, class_weight={10**9: 1.0, 1: 2.0}, verbose=0)
        try:
            m.fit(x, np.array([0, 1, 2, 0, 1, 10**9]), class_weight={0: 2.0}, verbose=0)
        except ValueError as e:
            print("ValueError", "labels" in str(e))
        """,
        address_space_gb=2,
    )
    assert out.split() == ["ValueError", "True"]


def test_class_weight_scales_each_class_and_checks_its_values():
    m = fn.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
    m.compile("sgd", "sparse_categorical_crossentropy")
    x, y = rng.normal(size=(6, 4)).astype(np.float32), np.array([0, 1, 2, 2, 1, 0])
    base = m.evaluate(x, y, verbose=0)
    per_sample = -np.log(m.predict(x, verbose=0)[np.arange(6), y])
    w = np.array([1.0, 3.0, 0.5])[y]
    weighted = m.train_on_batch(x, y, class_weight={1: 3.0, 2: 0.5, 7: 9.0})
    np.testing.assert_allclose(base, per_sample.mean(), rtol=1e-5)
    np.testing.assert_allclose(weighted, (w * per_sample).mean(), rtol=1e-5)
    for bad in ({-1: 1.0}, {"a": 1.0}, {0: float("nan")}, {0: -1.0}, {0: "x"}):
        with pytest.raises(ValueError, match="class_weight"):
            m.fit(x, y, class_weight=bad, verbose=0)


# -- saving ----------------------------------------------------------------------------------
def temporaries(directory):
    return [p.name for p in directory.iterdir() if ".ferronet-tmp." in p.name]


def test_saves_honour_the_umask_and_keep_an_existing_mode(tmp_path):
    m = small_model()
    old = os.umask(0o027)
    try:
        m.save(tmp_path / "new.ferronet")
        m.save_weights(tmp_path / "new.weights")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.ferronet").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "new.weights").st_mode) == 0o640
    os.chmod(tmp_path / "new.ferronet", 0o604)
    m.save(tmp_path / "new.ferronet")
    assert stat.S_IMODE(os.stat(tmp_path / "new.ferronet").st_mode) == 0o604


def test_a_save_through_a_symlink_replaces_its_target(tmp_path):
    m, x = small_model(), regression_data(4)[0]
    (tmp_path / "real").mkdir()
    link = tmp_path / "link.ferronet"
    link.symlink_to(tmp_path / "real" / "model.ferronet")  # dangling until the first save
    m.save(link)
    m.set_weights([w + 1 for w in m.get_weights()])
    m.save(link)
    assert link.is_symlink()
    back = fn.models.load_model(tmp_path / "real" / "model.ferronet")
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


def test_a_read_only_file_is_not_overwritten(tmp_path):
    m = small_model()
    path = tmp_path / "frozen.ferronet"
    m.save(path)
    before = path.read_bytes()
    os.chmod(path, 0o444)
    m.set_weights([w + 1 for w in m.get_weights()])
    with pytest.raises(PermissionError, match="read-only"):
        m.save(path)
    with pytest.raises(PermissionError):
        m.save_weights(path)
    assert path.read_bytes() == before and not temporaries(tmp_path)


def test_a_failed_write_leaves_no_temporary_file_and_the_old_file_intact(tmp_path):
    out = run_isolated(
        f"""
        import os, pathlib, signal, numpy as np, ferronet as fn
        from ferronet import layers
        path = pathlib.Path({str(tmp_path)!r}) / "m.ferronet"
        fn.Sequential([layers.Input((4,)), layers.Dense(2)]).save(path)
        before = path.read_bytes()
        big = fn.Sequential([layers.Input((4,)), layers.Dense(300_000)])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        try:
            big.save(path)
        except OSError as e:
            print("OSError")
        print(path.read_bytes() == before, [p.name for p in path.parent.iterdir()])
        """
    )
    assert out.splitlines() == ["OSError", "True ['m.ferronet']"]


def test_a_save_removes_temporary_files_of_killed_saves(tmp_path):
    stale = tmp_path / ".m.ferronet.ferronet-tmp.4294967295.0"
    stale.write_bytes(b"x" * 1000)
    small_model().save(tmp_path / "m.ferronet")
    assert not temporaries(tmp_path)


# -- hostile model files ---------------------------------------------------------------------
def saved_model_files(directory):
    """A compiled, trained Sequential and Functional model saved under ``directory``."""
    seq = small_model()
    seq.compile("adam", "mse", metrics=["mae"])
    x, y = regression_data(16)
    seq.fit(x, y, verbose=0)
    inp = layers.Input((4,))
    func = fn.Model(inp, layers.Dense(2)(layers.Dense(3, activation="relu")(inp)))
    func.compile("sgd", "mse")
    paths = [directory / "seq.ferronet", directory / "func.ferronet"]
    seq.save(paths[0])
    func.save(paths[1])
    return paths


def rewrite(src, dst, **entries):
    """A copy of model file ``src`` at ``dst`` with metadata ``entries`` replaced (JSON-encoded
    unless given as text)."""
    tensors, meta = fn._core.read_tensor_file(str(src))
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in entries.items()})
    fn._core.write_tensor_file(str(dst), list(tensors.items()), meta)
    return dst


def test_malformed_configs_raise_value_error_naming_file_and_entry(tmp_path):
    seq, func = saved_model_files(tmp_path)
    bad = tmp_path / "bad.ferronet"
    _, meta = fn._core.read_tensor_file(str(seq))
    model_config, compile_config = json.loads(meta["model_config"]), json.loads(meta["compile_config"])
    _, fmeta = fn._core.read_tensor_file(str(func))
    func_config = json.loads(fmeta["model_config"])

    def layer_class(config, k, name):
        config = json.loads(json.dumps(config))
        config["layers"][k]["class_name"] = name
        return config

    cases = []
    for name in ("Input", "get", "__builtins__", "Layer", "InputLayer", "Functional", "Optimizer"):
        cases.append((seq, "model_config", {"model_config": layer_class(model_config, 0, name)}))
        cases.append((func, "model_config", {"model_config": layer_class(func_config, 1, name)}))
        for field in ("optimizer", "loss"):
            cc = {**compile_config, field: {"class_name": name, "config": {}}}
            cases.append((seq, "compile_config", {"compile_config": cc}))
        if name != "Functional":  # a valid class: the config is then what does not fit
            cases.append((seq, "model_class", {"model_class": name}))
    cases += [
        (seq, "compile_config", {"compile_config": {}}),
        (seq, "compile_config", {"compile_config": []}),
        (seq, "model_config", {"model_config": []}),
        (seq, "model_config", {"model_config": "[" * 100_000 + "]" * 100_000}),
        (seq, "compile_config", {"compile_config": '{"a":' * 5_000 + "1" + "}" * 5_000}),
        (seq, "weight_order", {"weight_order": {"a": 1}}),
        (seq, "optimizer_slots", {"optimizer_slots": ["m", "nope"]}),
        (seq, "optimizer_iterations", {"optimizer_iterations": "-1x"}),
        (seq, "rng_state", {"rng_state": "[1]"}),
    ]
    for src, field, entries in cases:
        rewrite(src, bad, **entries)
        with pytest.raises(ValueError) as info:
            fn.models.load_model(bad)
        assert "bad.ferronet" in str(info.value), (field, info.value)
        if "weights do not match" not in str(info.value):
            assert field in str(info.value) or "model class" in str(info.value), (field, info.value)


def test_a_mutation_fuzz_of_model_files_raises_only_value_error(tmp_path):
    saved_model_files(tmp_path)
    out = run_isolated(
        f"""
        import collections, copy, json, pathlib, random
        import ferronet as fn
        random.seed(12)
        directory = pathlib.Path({str(tmp_path)!r})
        values = [None, "", "Input", "get", "__builtins__", "Layer", -1, 0, 2.5, float("nan"), [],
                  {{}}, True, [1, 2], {{"class_name": "Dense"}}, ["x", 0, 0],
                  {{"class_name": "Layer", "config": {{}}}}, 10**12, 2**62, 2 * 10**7]
        def nodes(obj, path=()):
            yield path
            items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
            for k, v in items:
                yield from nodes(v, path + (k,))
        outcomes = collections.Counter()
        for name in ("seq", "func"):
            tensors, meta = fn._core.read_tensor_file(str(directory / f"{{name}}.ferronet"))
            for _ in range(150):
                entries = ["model_config"] * 3 + ["compile_config", "weight_order", "optimizer_slots"]
                key = random.choice(entries)
                mutated = dict(meta)
                if key not in mutated:
                    continue
                obj = json.loads(mutated[key])
                path = random.choice(list(nodes(obj)))
                if not path:
                    obj = copy.deepcopy(random.choice(values))
                else:
                    parent = obj
                    for p in path[:-1]:
                        parent = parent[p]
                    if random.random() < 0.3:
                        del parent[path[-1]]
                    else:
                        parent[path[-1]] = copy.deepcopy(random.choice(values))
                mutated[key] = json.dumps(obj)
                fn._core.write_tensor_file(str(directory / "mutant.ferronet"), list(tensors.items()), mutated)
                try:
                    fn.models.load_model(directory / "mutant.ferronet")
                    outcomes["loaded"] += 1
                except ValueError as e:
                    outcomes["ValueError" if "mutant.ferronet" in str(e) else "unnamed"] += 1
                except Exception as e:
                    outcomes[type(e).__name__] += 1
        print(sorted(outcomes))
        """,
        address_space_gb=3,
    )
    assert out.strip() in ("['ValueError', 'loaded']", "['ValueError']")


# -- small argument checks -------------------------------------------------------------------
def test_a_huge_thread_count_is_refused_at_once():
    out = run_isolated(
        """
        import os, time, warnings
        os.environ["FERRONET_NUM_THREADS"] = str(10**12)
        start = time.time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import ferronet as fn
        print([str(w.message).split(";")[0] for w in caught if w.category is RuntimeWarning] == [
            'FERRONET_NUM_THREADS="1000000000000" is not a whole number from 1 to 1024'
        ])
        print(fn.get_num_threads() == os.cpu_count(), time.time() - start < 10)
        try:
            fn.set_num_threads(10**6)
        except ValueError as e:
            print("ValueError", "1024" in str(e))
        """,
        timeout=30,
    )
    assert out.split() == ["True", "True", "True", "ValueError", "True"]


def test_set_num_threads_out_of_any_range_is_a_value_error():
    before = fn.get_num_threads()
    for n in (10**30, -1, 0, 2000):
        with pytest.raises(ValueError, match="from 1 to 1024"):
            fn.set_num_threads(n)
    for n in (True, "2", 2.0):
        with pytest.raises(TypeError):
            fn.set_num_threads(n)
    assert fn.get_num_threads() == before


def test_reshape_refuses_non_integer_sizes():
    for bad in ((2.5, 2), (2, 0), (-1, -1), (), (True, 2)):
        with pytest.raises(ValueError, match="target_shape"):
            layers.Reshape(bad)
    with pytest.raises(TypeError, match="target_shape"):
        layers.Reshape(4)
    assert layers.Reshape((np.int64(2), -1)).target_shape == (2, -1)


def test_an_infinite_learning_rate_names_learning_rate():
    for make in (
        lambda: fn.optimizers.Adam(learning_rate=float("inf")),
        lambda: fn.optimizers.SGD(learning_rate=float("nan")),
        lambda: fn.optimizers.schedules.ExponentialDecay(float("inf"), 10, 0.9),
    ):
        with pytest.raises(ValueError, match="learning_rate.*finite"):
            make()
    with pytest.raises(ValueError, match="clipnorm"):
        fn.optimizers.Adam(clipnorm=float("inf"))


def test_an_out_of_range_label_is_reported_exactly():
    m = fn.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
    m.compile("sgd", "sparse_categorical_crossentropy")
    x = np.ones((3, 4), np.float32)
    for y, shown in (([0, 16777217, 1], "16777217"), (np.array([0, 2.5, 1]), "2.5"), ([0, -1, 1], "-1")):
        with pytest.raises(ValueError, match=f"found {shown}$"):
            m.fit(x, y, verbose=0)


def test_bytes_and_pathlike_paths_save_and_load(tmp_path):
    m, x = small_model(), regression_data(4)[0]
    m.save(os.fsencode(tmp_path / "m.ferronet"))
    m.save_weights(os.fsencode(tmp_path / "w.weights"))
    for path in (os.fsencode(tmp_path / "m.ferronet"), tmp_path / "m.ferronet"):
        back = fn.models.load_model(path)
        np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
    back.load_weights(os.fsencode(tmp_path / "w.weights"))


# -- sizes: checked arithmetic and allocations that may fail ---------------------------------
def test_impossible_sizes_raise_instead_of_aborting():
    out = run_isolated(
        """
        import numpy as np, ferronet as fn
        from ferronet import layers
        def attempt(make):
            try:
                make()
                print("built")
            except (MemoryError, ValueError) as e:
                print(type(e).__name__)
        attempt(lambda: fn.Sequential([layers.Input((4,)), layers.Dense(10**12)]))
        attempt(lambda: fn.Sequential([layers.Input((4,)), layers.Dense(2**62, use_bias=False)]))
        attempt(lambda: fn.Sequential([layers.Input((3, 0xAAAAAAAAAAAAAAAB)), layers.Flatten()]))
        m = fn.Sequential([layers.Input((4,))])
        attempt(lambda: m.add(layers.Dense(10**12)))
        m.add(layers.Dense(2))
        print(m.count_params(), len(m.layers))
        """,
        address_space_gb=2,
    )
    assert out.split() == ["MemoryError", "ValueError", "ValueError", "MemoryError", "10", "1"]


def test_activations_too_large_for_memory_raise_memory_error_and_the_model_stays_usable():
    out = run_isolated(
        """
        import numpy as np, ferronet as fn
        from ferronet import layers
        m = fn.Sequential([layers.Input((1,)), layers.Dense(50_000), layers.Dense(1)])
        m.compile("sgd", "mse")
        x, y = np.ones((20_000, 1), np.float32), np.zeros((20_000, 1), np.float32)
        for call in (lambda: m.predict(x, batch_size=len(x), verbose=0),
                     lambda: m.evaluate(x, y, batch_size=len(x), verbose=0),
                     lambda: m.fit(x, y, batch_size=None, verbose=0)):
            try:
                call()
                print("ran")
            except MemoryError as e:
                print("MemoryError", "batch_size" in str(e))
        loss = m.fit(x[:64], y[:64], verbose=0).history["loss"][0]
        print(m.predict(x[:64], verbose=0).shape, np.isfinite(loss))
        """,
        address_space_gb=3,
    )
    assert out.splitlines() == ["MemoryError True"] * 3 + ["(64, 1) True"]


def test_a_file_cannot_ask_for_more_weights_than_it_holds(tmp_path):
    seq, _ = saved_model_files(tmp_path)
    _, meta = fn._core.read_tensor_file(str(seq))
    config = json.loads(meta["model_config"])
    for units in (10**12, 2 * 10**7):
        config["layers"][0]["config"]["units"] = units
        rewrite(seq, tmp_path / f"huge{units}.ferronet", model_config=config)
    out = run_isolated(
        f"""
        import pathlib, time, ferronet as fn
        for units in (10**12, 2 * 10**7):
            start = time.time()
            try:
                fn.models.load_model(pathlib.Path({str(tmp_path)!r}) / f"huge{{units}}.ferronet")
            except ValueError as e:
                print("ValueError", f"huge{{units}}.ferronet" in str(e), "more weights than" in str(e),
                      time.time() - start < 5)
        """,
        address_space_gb=1.5,
    )
    assert out.splitlines() == ["ValueError True True True"] * 2


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak from /proc")
def test_reading_a_model_file_peaks_near_its_size(tmp_path):
    path = tmp_path / "big.ferronet"
    fn.Sequential([layers.Input((2500,)), layers.Dense(5000, use_bias=False, name="wide")]).save(path)
    out = run_isolated(
        f"""
        import os
        from ferronet import _core
        def peak():  # this process's own high-water mark (ru_maxrss carries the parent's)
            status = open("/proc/self/status").read()
            return int(status.split("VmHWM:")[1].split()[0]) * 1024
        before = peak()
        tensors, _ = _core.read_tensor_file({str(path)!r})
        print((peak() - before) / os.path.getsize({str(path)!r}) < 1.4, tensors["wide/kernel"].shape)
        """
    )
    assert out.strip() == "True (2500, 5000)"


def test_optimizer_state_too_large_for_memory_raises_memory_error():
    out = run_isolated(
        """
        import numpy as np, ferronet as fn
        from ferronet import layers
        m = fn.Sequential([layers.Input((4,)), layers.Dense(3)])
        try:
            m.compile(fn.optimizers.LBFGS(history_size=10**12), "mse")
        except MemoryError as e:
            print("MemoryError", "L-BFGS" in str(e))
        m.compile("adam", "mse")
        history = m.fit(np.ones((8, 4), np.float32), np.zeros((8, 3), np.float32), verbose=0)
        print(np.isfinite(history.history["loss"][0]))
        """,
        address_space_gb=2,
    )
    assert out.split() == ["MemoryError", "True", "True"]


def test_a_layer_in_two_models_is_shared_not_copied():
    dense = layers.Dense(3)
    a = fn.Sequential([layers.Input((4,)), dense])
    b = fn.Sequential([layers.Input((4,)), dense])
    a.compile("sgd", "mse")
    x, y = regression_data(16)
    a.fit(x, y, epochs=2, verbose=0)
    np.testing.assert_array_equal(b.predict(x, verbose=0), a.predict(x, verbose=0))
    b.set_weights([w * 0 for w in b.get_weights()])
    assert not a.predict(x, verbose=0).any()

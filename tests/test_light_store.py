"""The light runtime's loader (``light.store.LightStore``): a plain load is the caller's own, a
cached loader hands its owner the same weights, models and sessions again, and the thread count of
the ONNX Runtime sessions is the loader's own.  No torch needed."""

from __future__ import annotations

import numpy as np

from imgcodec.codec.imageio import read_image
from imgcodec.light import codec as light
from imgcodec.light.store import LightStore, light_store
from imgcodec.models import store

from conftest import natural_image

MODEL, Q = "factorized-relu", 5  # a model of the ablation, shipped at qualities 3, 5 and 7
CONTINUOUS = "hyperprior-gdn"  # one checkpoint for every quality


def threads_of(model, graph: str = "g_a") -> int:
    return model.session(graph).get_session_options().intra_op_num_threads


def test_plain_loads_are_the_callers_own_and_a_cached_loader_shares():
    s = store.default_store()
    plain = LightStore(s)
    a, qa = plain.load(MODEL, Q)
    b, qb = plain.load(MODEL, Q)
    assert qa == qb == Q
    assert a is not b and a.weights is not b.weights and a.weights.tensors is not b.weights.tensors
    assert a.weights.sha256 == b.weights.sha256
    assert a.session("g_a") is not b.session("g_a")  # each model makes its own sessions
    assert a.session("g_a") is a.session("g_a")  # and keeps them
    assert plain.weights(MODEL, Q)[0] is not plain.weights(MODEL, Q)[0]

    mine, theirs = plain.cached(), LightStore(s).cached()
    c, _ = mine.load(MODEL, Q)
    assert mine.load(MODEL, Q)[0] is c and mine.weights(MODEL, Q)[0] is c.weights
    assert mine.load(MODEL, Q)[0].session("g_s") is c.session("g_s")
    assert c is not a and theirs.load(MODEL, Q)[0] is not c  # another owner: its own
    assert mine.cached() == mine and mine.cached().load(MODEL, Q)[0] is c
    # a continuous-rate model: one checkpoint, one model for every quality of the cached loader
    assert mine.load(CONTINUOUS, 2.5)[0] is mine.load(CONTINUOUS, 4)[0]
    assert plain.load(CONTINUOUS, 2.5)[0] is not plain.load(CONTINUOUS, 4)[0]


def test_a_cached_store_holds_the_light_models_of_its_owner():
    """The loader of a ``CachedStore`` (what the CLI, an evaluation and a rate search hold) keeps
    its light models in that store; ``light_store`` of a plain store or of nothing builds anew."""
    home = store.default_store().cached()
    m, _ = light.load(home, MODEL, Q)
    assert light.load(home, MODEL, Q)[0] is m and light_store(home).load(MODEL, Q)[0] is m
    assert light.load(store.default_store().cached(), MODEL, Q)[0] is not m
    assert light.load(None, MODEL, Q)[0] is not light.load(None, MODEL, Q)[0]
    lights = LightStore(home)
    assert light_store(lights) is lights


def test_cached_and_plain_loads_code_the_same_bytes():
    rgb = natural_image(40, 56)
    data = light.encode(rgb, quality=Q, model=MODEL)
    held = LightStore(store.default_store()).cached()
    assert light.encode(rgb, quality=Q, model=MODEL, store=held) == data
    assert light.encode(rgb, quality=Q, model=MODEL, store=held) == data
    assert np.array_equal(np.asarray(light.decode(data)), np.asarray(light.decode(data, store=held)))
    fit = light.encode_to_target(read_image(rgb), MODEL, size=len(data), store=held)
    assert fit.data == light.encode_to_target(read_image(rgb), MODEL, size=len(data)).data


def test_the_thread_count_is_the_loaders_own(monkeypatch):
    """Two loaders with other thread counts in one process: each model's sessions keep its
    loader's count, whichever was made last; the same bytes either way."""
    monkeypatch.delenv("IMGCODEC_THREADS", raising=False)
    s = store.default_store()
    one, _ = LightStore(s, threads=1).load(MODEL, Q)
    two, _ = LightStore(s, threads=2).load(MODEL, Q)
    assert threads_of(one) == 1 and threads_of(two) == 2
    assert threads_of(one, "g_s") == 1  # a session made after the other loader's
    default, _ = LightStore(s).load(MODEL, Q)
    assert default.threads is None and threads_of(default) == 0  # ONNX Runtime's default
    home = s.cached()  # one cached store, two thread counts: a model for each
    assert LightStore(home, threads=1).load(MODEL, Q)[0] is not LightStore(home, threads=2).load(MODEL, Q)[0]
    rgb = natural_image(40, 56)
    assert light.encode(rgb, quality=Q, model=MODEL, store=LightStore(s, threads=1)) == \
        light.encode(rgb, quality=Q, model=MODEL, store=LightStore(s, threads=2))


def test_imgcodec_threads_is_read_when_a_loader_is_made(monkeypatch):
    monkeypatch.setenv("IMGCODEC_THREADS", "3")
    lights = LightStore(store.default_store())
    monkeypatch.setenv("IMGCODEC_THREADS", "1")
    assert lights.threads == 3 and threads_of(lights.load(MODEL, Q)[0]) == 3
    assert LightStore(store.default_store()).threads == 1
    monkeypatch.setenv("IMGCODEC_THREADS", "")
    assert LightStore(store.default_store()).threads is None

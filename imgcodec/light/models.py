"""The four architectures without torch: the float transforms through ONNX Runtime, the exact
parts in numpy (``fixed``), the rANS coder of ``format``.  Each class mirrors the coding half of
its torch model (``compress_coded``, ``decompress_latents``) operation for operation, so that the
payload a file holds means the same to both runtimes (docs/bitstream.md)."""

from __future__ import annotations

import os
from types import MappingProxyType

import numpy as np

from ..errors import BitstreamError, ModelError
from ..format import rans, rans_encode
from ..format.rans_stream import MAX_LATENT
from . import fixed
from .checkpoint import LightWeights

ONE = 2.0**fixed.HS_ACT_BITS
_BLAS_SYMBOLS = ("openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_", "openblas_set_num_threads",
                 "scipy_openblas_set_num_threads")


def blas_threads(n: int) -> bool:
    """Limit the OpenBLAS that numpy loaded to ``n`` threads (where it is OpenBLAS, on Linux);
    whether it could.  OpenBLAS reads ``OPENBLAS_NUM_THREADS`` only when numpy is imported."""
    import ctypes

    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split()[-1] for line in f if len(line.split()) >= 6}
    except OSError:
        return False
    libs = {p for p in paths if "openblas" in os.path.basename(p).lower() and ".so" in os.path.basename(p)}
    done = False
    for lib in sorted(libs):
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in _BLAS_SYMBOLS:
            fn = getattr(handle, name, None)
            if fn is not None:
                fn(ctypes.c_int(int(n)))
                done = True
                break
    return done


def open_session(graph: bytes, threads: int | None = None):
    """A new ``onnxruntime.InferenceSession`` of a verified graph's bytes, with ``threads`` intra-op
    threads (``None``: ONNX Runtime's default).  A thread count also limits the OpenBLAS that numpy
    uses for the fixed-point products (``blas_threads``), which is one per process: the last
    session made with a count sets it."""
    import onnxruntime as ort  # deferred: only running a transform needs it

    opts = ort.SessionOptions()
    if threads:
        blas_threads(threads)
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads sleep instead of spinning: the numpy products that follow a run need the cores.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(graph, sess_options=opts, providers=["CPUExecutionProvider"])


def check_codable(t: np.ndarray) -> None:
    if t.size and (not np.isfinite(t).all() or float(np.abs(t).max()) >= MAX_LATENT):
        raise ModelError("the model produced latents out of range (NaN or huge): broken weights?")


def _tables(tensors: dict, prefix: str):
    return (tensors[f"{prefix}._quantized_cdf"], tensors[f"{prefix}._cdf_length"], tensors[f"{prefix}._offset"])


def _rans_tables(tensors: dict, prefix: str):
    """``rans.cdf_tables`` of the arrays (the decoder's checked form)."""
    cdf, lengths, offsets = _tables(tensors, prefix)
    out = []
    for row, n, off in zip(cdf.tolist(), lengths.reshape(-1).tolist(), offsets.reshape(-1).tolist()):
        row = row[:n]
        if n < 3 or row[0] != 0 or row[-1] != 1 << 16 or any(b <= a for a, b in zip(row, row[1:])):
            raise BitstreamError("the model's entropy tables are invalid")
        out.append((row, n - 2, off))
    return out


def hyper_shape(shape):
    return -(-shape[0] // 4), -(-shape[1] // 4)


def anchor_mask(shape) -> np.ndarray:
    i = np.arange(shape[0])[:, None]
    j = np.arange(shape[1])[None, :]
    return (i + j) % 2 == 0


def _softplus(x: np.ndarray) -> np.ndarray:
    """torch's ``F.softplus`` (β = 1, threshold 20) in float32."""
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))).astype(np.float32)


class LightModel:
    """The factorized prior: ``ŷ`` under the ``EntropyBottleneck``'s per-channel tables."""

    stride = 16
    latent_parts = 1
    graphs_needed = ("g_a", "g_s")

    def __init__(self, weights: LightWeights, threads: int | None = None):
        self.weights = weights
        self.threads = threads  # ONNX Runtime's intra-op threads of this model's sessions
        self._sessions: dict = {}  # graph name -> its session, made on first use
        self.config = weights.config
        self.t = weights.tensors
        missing = [g for g in self.graphs_needed if g not in weights.graphs]
        if missing:
            raise ModelError(f"model {self.config.name!r}: the manifest records no ONNX graph {', '.join(missing)}")
        self.footprint = weights.footprint
        self._eb_tables = None
        self._gc_tables = None

    # -- transforms
    def session(self, name: str):
        """This model's ONNX Runtime session of graph ``name`` (made on first use, then kept)."""
        if name not in self._sessions:
            self._sessions[name] = open_session(self.weights.graphs[name].read(), self.threads)
        return self._sessions[name]

    def run(self, name: str, x: np.ndarray) -> np.ndarray:
        s = self.session(name)
        return s.run(None, {s.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def g_a(self, x: np.ndarray) -> np.ndarray:
        return self.run("g_a", x)

    def g_s(self, y: np.ndarray) -> np.ndarray:
        return self.run("g_s", y)

    # -- factorized entropy model
    def medians(self) -> np.ndarray:
        return self.t["entropy_bottleneck.quantiles"][:, 0, 1].astype(np.float32)  # (C,)

    def eb_encode(self, z: np.ndarray) -> bytes:
        """``EntropyBottleneck.compress`` of ``z`` (1, C, h, w)."""
        med = self.medians().reshape(-1, 1, 1)
        symbols = np.round(z[0] - med).astype(np.int32)
        return rans_encode.encode_channels(symbols, *_tables(self.t, "entropy_bottleneck"))

    def eb_quantize(self, z: np.ndarray) -> np.ndarray:
        """``ẑ`` as the decoder restores it from ``eb_encode``'s payload: ``round(z − μ) + μ``."""
        med = self.medians().reshape(1, -1, 1, 1)
        return np.round(z - med).astype(np.int32).astype(np.float32) + med

    def eb_decode(self, payload: bytes, shape) -> np.ndarray:
        if self._eb_tables is None:
            self._eb_tables = _rans_tables(self.t, "entropy_bottleneck")
        symbols = rans.decode_symbols(payload, self._eb_tables, shape[0] * shape[1])
        med = self.medians().reshape(1, -1, 1, 1)
        return symbols.reshape(1, len(self._eb_tables), *shape).astype(np.float32) + med

    def gains(self, quality) -> tuple[np.ndarray | None, np.ndarray | None]:
        return None, None

    # -- the contract
    def coded_latents(self, y: np.ndarray, quality=None) -> tuple:
        return (y,)

    def compress_coded(self, latents) -> list[bytes]:
        (y,) = latents
        check_codable(y)
        return [self.eb_encode(y)]

    def decompress_latents(self, parts, shape, quality=None) -> np.ndarray:
        return self.eb_decode(parts[0], shape)

    def exact_latents(self, parts, shape, quality=None) -> np.ndarray:
        """The latents the payload fixes exactly, before any float arithmetic that follows the
        entropy decoding (gains, float means): what both runtimes must agree on bit for bit."""
        return self.decompress_latents(parts, shape, quality)


class LightHyperprior(LightModel):
    """The scale hyperprior: ``ẑ`` factorized, ``ŷ`` under Gaussians indexed by ``h_s(ẑ)`` in fixed point."""

    latent_parts = 2
    graphs_needed = ("g_a", "g_s", "h_a")
    HS = ("deconv", "relu", "deconv", "relu", "conv", "relu")

    def __init__(self, weights, threads=None):
        super().__init__(weights, threads)
        self.h_s = fixed.layers(self.t, "h_s", self.HS)

    def gains(self, quality):
        """``GainUnits.forward`` at the level of ``quality``, float32, as torch computes it."""
        if not self.config.gain_units:
            return None, None
        q = self.config.default_quality if quality is None else quality
        level, t = self.config.level(q)
        log_gain = self.t["gain.log_gain"].astype(np.float32)
        rises = np.cumsum(_softplus(self.t["gain.log_step"].astype(np.float32)), axis=0, dtype=np.float32)
        logs_gain = np.concatenate([log_gain[None], log_gain[None] + rises]).astype(np.float32)
        out = []
        for logs in (logs_gain, self.t["gain.log_inverse"].astype(np.float32)):
            if t == 0:
                v = logs[level]
            else:
                v = (np.float32(1 - t) * logs[level] + np.float32(t) * logs[level + 1]).astype(np.float32)
            out.append(np.exp(v).astype(np.float32).reshape(1, -1, 1, 1))
        return out[0], out[1]

    def h_a(self, y: np.ndarray) -> np.ndarray:
        return self.run("h_a", y)

    def scale_table(self) -> np.ndarray:
        return self.t["gaussian_conditional.scale_table"]

    def scale_indexes(self, z_hat: np.ndarray, shape) -> np.ndarray:
        x = fixed.fixed_point(self.h_s, fixed.to_fixed(z_hat[0]))
        return fixed.scale_indexes(self.scale_table(), x[:, : shape[0], : shape[1]])

    def means(self, z_hat: np.ndarray, shape):
        return None

    def gc_encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        return rans_encode.encode_indexed(symbols, indexes, *_tables(self.t, "gaussian_conditional"))

    def gc_decode(self, payload: bytes, indexes: np.ndarray) -> np.ndarray:
        if self._gc_tables is None:
            self._gc_tables = _rans_tables(self.t, "gaussian_conditional")
        return rans.decode_indexed(payload, self._gc_tables, indexes)

    def coded_latents(self, y, quality=None):
        gain, _ = self.gains(quality)
        if gain is not None:
            y = (y * gain).astype(np.float32)
        return y, self.h_a(y)

    def compress_coded(self, latents):
        y, z = latents
        check_codable(z)
        z_payload = self.eb_encode(z)
        z_hat = self.eb_quantize(z)
        shape = y.shape[-2:]
        indexes = self.scale_indexes(z_hat, shape)
        means = self.means(z_hat, shape)
        centred = y if means is None else (y - means).astype(np.float32)
        check_codable(centred)
        return [z_payload, self.gc_encode(np.round(centred).astype(np.int32), indexes)]

    def _symbols(self, parts, shape):
        z_hat = self.eb_decode(parts[0], hyper_shape(shape))
        indexes = self.scale_indexes(z_hat, shape)
        symbols = self.gc_decode(parts[1], indexes.reshape(-1))
        return z_hat, symbols.reshape(1, self.config.M, *shape).astype(np.float32)

    def exact_latents(self, parts, shape, quality=None):
        return self._symbols(parts, shape)[1]

    def decompress_latents(self, parts, shape, quality=None):
        z_hat, y_hat = self._symbols(parts, shape)
        means = self.means(z_hat, shape)
        if means is not None:
            y_hat = (y_hat + means).astype(np.float32)
        _, inverse = self.gains(quality)
        return y_hat if inverse is None else (y_hat * inverse).astype(np.float32)


class LightMeanScale(LightHyperprior):
    """The mean-scale hyperprior: the means ``h_m(ẑ)`` in float32 (an ONNX graph)."""

    graphs_needed = ("g_a", "g_s", "h_a", "h_m")

    def means(self, z_hat, shape):
        return self.run("h_m", z_hat)[..., : shape[0], : shape[1]]


class LightCheckerboard(LightHyperprior):
    """The checkerboard context model: every parameter in fixed point (numpy), two passes."""

    latent_parts = 3
    HM = ("deconv", "relu", "deconv", "relu", "conv")
    EP = ("conv", "relu", "conv", "relu", "conv")

    def __init__(self, weights, threads=None):
        super().__init__(weights, threads)
        self.h_m = fixed.layers(self.t, "h_m", self.HM)
        self.cp = fixed.prepared([("conv", self.t["context_prediction.weight"], self.t["context_prediction.bias"])])
        self.ep = fixed.layers(self.t, "entropy_parameters", self.EP)

    def fixed_hyper_parameters(self, z_hat, shape):
        zf = fixed.to_fixed(z_hat[0])
        h, w = shape
        return fixed.fixed_point(self.h_s, zf)[:, :h, :w], fixed.fixed_point(self.h_m, zf)[:, :h, :w]

    def fixed_context_parameters(self, scales0, means0, anchors, a):
        """The scales and means of the non-anchors (``~a``), (M, K) each: the context of the
        ``anchors`` (zero off ``a``) and the entropy parameters, at those positions only."""
        na = ~a
        c = fixed.fixed_point_at(self.cp, anchors, na, a)
        d = fixed.pointwise(self.ep, np.concatenate([scales0[:, na], means0[:, na], c], axis=0))
        m = scales0.shape[0]
        return np.maximum(scales0[:, na] + d[:m], 0), means0[:, na] + d[m:]

    def _code(self, symbols, scales) -> bytes:
        if symbols.shape[-1] == 0:
            return b""
        return self.gc_encode(symbols.astype(np.int32), fixed.scale_indexes(self.scale_table(), scales))

    def _decode(self, payload, scales) -> np.ndarray:
        if scales.shape[-1] == 0:
            if payload:
                raise BitstreamError("corrupt payload: a latent part where the image has none")
            return np.zeros(scales.shape, np.float64)
        indexes = fixed.scale_indexes(self.scale_table(), scales)
        return self.gc_decode(payload, indexes.reshape(-1)).reshape(scales.shape).astype(np.float64)

    def compress_coded(self, latents):
        y, z = latents
        check_codable(z)
        z_payload = self.eb_encode(z)
        z_hat = self.eb_quantize(z)
        shape = y.shape[-2:]
        scales0, means0 = self.fixed_hyper_parameters(z_hat, shape)
        a = anchor_mask(shape)
        y64 = y[0].astype(np.float64)
        q0 = np.round(y64 - means0 / ONE)
        anchors = np.where(a, q0 * ONE + means0, 0.0)
        scales1, means1 = self.fixed_context_parameters(scales0, means0, anchors, a)
        q1 = np.round(y64[:, ~a] - means1 / ONE)
        check_codable(q0[:, a])
        check_codable(q1)
        return [z_payload, self._code(q0[:, a], scales0[:, a]), self._code(q1, scales1)]

    def exact_latents(self, parts, shape, quality=None):
        """``ŷ`` in fixed point (float64 integers, 12 fraction bits), (1, M, *shape)."""
        z_hat = self.eb_decode(parts[0], hyper_shape(shape))
        scales0, means0 = self.fixed_hyper_parameters(z_hat, shape)
        a = anchor_mask(shape)
        y_fixed = np.zeros_like(means0)
        y_fixed[:, a] = self._decode(parts[1], scales0[:, a]) * ONE + means0[:, a]
        scales1, means1 = self.fixed_context_parameters(scales0, means0, y_fixed, a)
        y_fixed[:, ~a] = self._decode(parts[2], scales1) * ONE + means1
        return y_fixed[None]

    def decompress_latents(self, parts, shape, quality=None):
        y_hat = (self.exact_latents(parts, shape) / ONE).astype(np.float32)
        _, inverse = self.gains(quality)
        return y_hat if inverse is None else (y_hat * inverse).astype(np.float32)


ARCHITECTURES = MappingProxyType({
    "factorized": LightModel,
    "hyperprior": LightHyperprior,
    "meanscale": LightMeanScale,
    "checkerboard": LightCheckerboard,
})


def build(weights: LightWeights, threads: int | None = None) -> LightModel:
    """A new model of ``weights``' architecture, whose sessions run ``threads`` intra-op threads."""
    arch = weights.config.architecture
    if arch not in ARCHITECTURES:
        raise ModelError(f"architecture {arch!r} has no light runtime")
    return ARCHITECTURES[arch](weights, threads)

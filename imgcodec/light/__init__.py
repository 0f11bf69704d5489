"""The light runtime: encode and decode without torch, with ONNX Runtime and numpy.

The float transforms of a shipped model (``g_a``, ``g_s``, ``h_a`` and the mean-scale model's
``h_m``) run as ONNX graphs exported from the torch model (``export``, ``scripts/export_onnx.py``);
the parts the bitstream needs exactly — the hyper-synthesis, the checkerboard context and entropy
parameters, the scale indexes — run in numpy from the checkpoint's own weights in the fixed point
of ``models/hyperprior.fixed_point`` (``fixed``); the rANS coder is ``format/rans_encode`` and
``format/rans_jit``.  A file written by either runtime decodes in the other to the same latents
(``models``, ``codec``); ``store`` loads the models (``LightStore``: each load the caller's, or kept
in the ``CachedStore`` its owner holds); ``dispatch`` chooses the runtime.
"""

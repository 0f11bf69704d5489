"""The models: the contract every architecture implements (``base.CodecModel``, its ``RatePoint``), the architectures
(``factorized``, ``hyperprior``) built by name (``registry``), gain units (``gain``), the norm registry
and its layers (``norms``), the transforms (``transforms``), growth from trained weights (``growth``),
configs (``config``) and the store of configs and verified weights (``store``).

``config`` and ``store`` import no torch, so the CLI can check a model name and a quality first.
"""

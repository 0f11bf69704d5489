"""The codec: the encode/decode API (``api``), the file path of both runtimes (``files``), image
I/O (``imageio``), images as tensors (``tensors``), tiled transforms (``tiling``, ``fastpath``),
rate control (``ratecontrol``), encoder-side refinement (``refine``) and the Pillow plugin
(``pillow_plugin``).

Importing this package imports nothing heavy; ``api`` imports torch.
"""

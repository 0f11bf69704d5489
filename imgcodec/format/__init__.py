"""The file format: the header and its parts (``bitstream``) and the checked rANS decoder of the
latent payloads (``rans``, compiled by ``rans_jit``).  Neither imports torch at module level nor
Pillow."""

"""The constants of compressai's 64-bit rANS stream, shared by the Python decoder (``rans``) and the
compiled one (``rans_jit``)."""

PRECISION = 16  # bits of the quantized CDFs
RANS64_L = 1 << 31  # lower bound of the normalised coder state
BYPASS_BITS = 4
MAX_BYPASS = (1 << BYPASS_BITS) - 1
MAX_BYPASS_NIBBLES = 8  # the encoder's raw values are 32-bit: at most eight 4-bit groups
# compressai's encoder never finishes a raw value of 2**28 or more (its loop shifts an int32 by 32
# bits): the codec refuses latents this large before coding (a broken model), so they never occur.
MAX_LATENT = 1 << 20

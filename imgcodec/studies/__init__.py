"""Studies around the codec: benchmarks (``bench``), the bitstream fuzzer (``fuzz``) and the norm
ablation (``ablation``).  The codec core (``format``, ``models``, ``codec``) imports none of them."""

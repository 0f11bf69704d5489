"""Evaluation: metrics on real bitstreams (``evaluate``), classical codecs (``baselines``), BD-rate
(``bdrate``), result files (``results``), figures (``plot``), the report (``report``), side-by-side
comparisons (``visual``) and the Kodak data set (``datasets``)."""

"""RCA's evidence stage: series from their sources, judged against a clean reference, and
folded into per-entity evidence by kind (own, propagating, waiting, neutral)."""

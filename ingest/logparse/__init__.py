"""The parts of log ingest (:mod:`ingest.logs`): line formats and timestamps
(:mod:`.lines`, :mod:`.clock`), masking (:mod:`.masking`), the template miner and its
persisted state (:mod:`.miner`), and the per-input counts (:mod:`.counts`)."""

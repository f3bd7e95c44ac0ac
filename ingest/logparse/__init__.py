"""The parts of log ingest (:mod:`ingest.logs`): line formats (:mod:`.lines`), header layouts
learned per file (:mod:`.header`), timestamps (:mod:`.stamps` the layout catalogue and
``time-format`` patterns, :mod:`.clock` reading them), masking (:mod:`.masking`), the
template miner and its persisted state (:mod:`.miner`), and the per-input counts
(:mod:`.counts`)."""

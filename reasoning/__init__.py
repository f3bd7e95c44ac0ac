"""Reasoning: rules, causal knowledge, RCA, embeddings, recommendation, closed loop, intents."""

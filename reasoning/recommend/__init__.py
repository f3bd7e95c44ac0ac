"""Recommendation: rank runbooks and remediation policies for a problem, learn from feedback.

A problem is an incident in the graph, alerts in Alertmanager's webhook form, or free text
(:mod:`~reasoning.recommend.query`). The :class:`Recommender` ranks the catalogue of
runbooks (``OperationPlan``) and policies (``RemediationPolicy``,
:mod:`~reasoning.recommend.policies`) by fused signals — the alert definition matched,
lexical (BM25) and semantic (sentence-transformers) similarity of texts, graph paths from
the problem's entities through their ontology types to the items, shared metrics, and the
past success rate learnt from feedback (:mod:`~reasoning.recommend.feedback`) — and
explains each answer with its reasons. Spec: docs/recommend.md.

    rec = Recommender(kg)                       # keep one per process
    result = rec.recommend(from_alerts(payload, kg, scope="prod-eu"))
    rec.feedback(FeedbackInput("recommendation", target=plan_iri, accepted=True,
                               incident=incident_iri))
"""

from reasoning.recommend.feedback import FeedbackInput, SuccessStats
from reasoning.recommend.policies import PolicyError, PolicyScopes, load_policies
from reasoning.recommend.query import (
    BadQuery,
    ProblemQuery,
    QueryNotFound,
    from_alerts,
    from_incident,
    from_text,
)
from reasoning.recommend.ranker import SIGNALS, RecommendWeights
from reasoning.recommend.service import RecommendationResult, Recommender

__all__ = ["SIGNALS", "BadQuery", "FeedbackInput", "PolicyError", "PolicyScopes",
           "ProblemQuery", "QueryNotFound", "RecommendWeights", "RecommendationResult",
           "Recommender", "SuccessStats", "from_alerts", "from_incident", "from_text",
           "load_policies"]

"""Recommending backbones: constraint filtering, the data-free prior, and the scenario parser."""

from zoo.recommend.constraints import Constraints, ScenarioParse, parse_scenario
from zoo.recommend.cost import DEVICE_PROFILES, CostEstimate, estimate_cost
from zoo.recommend.prior import Candidate, Recommendation, recommend_data_free

__all__ = [
    "Candidate", "Constraints", "CostEstimate", "DEVICE_PROFILES", "Recommendation", "ScenarioParse",
    "estimate_cost", "parse_scenario", "recommend_data_free",
]

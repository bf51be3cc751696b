"""Online scheduling core (DESIGN.md §1 "Online"): finish-time prediction over the
dispatcher's rounds (`predict`), the accuracy-maximising reassignment of strategies
under deadlines (`reassign`), and the policies built on them (`policies`)."""

from mosel.scheduling.predict import Predictor, round_latency
from mosel.scheduling.reassign import Option, ReassignResult, reassign

__all__ = ["Option", "Predictor", "ReassignResult", "reassign", "round_latency"]

"""Audit: every check of an unlearned model against the original and the retrained reference.

`context` holds the settings and what is built once from the original; `checks` the checks for
one model (over-unlearning sweep, PRA over K, MIA, probe, damage near the forget class); `run`
runs them side by side; `sections`, `plots` and `report` render the result. The audit reads
models through `spotter.evaluation` and renders with `spotter.report`; it never imports `bench`
or `cli`.
"""

from spotter.audit.context import AuditConfig, Shared, audit_config
from spotter.audit.run import audit

__all__ = ["AuditConfig", "Shared", "audit", "audit_config"]

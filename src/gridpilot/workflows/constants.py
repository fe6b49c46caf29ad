"""Task queues, search attributes and message names, in one place."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

DEFAULT_TASK_QUEUE = "gridpilot-dispatch"

SA_DISPATCH_STATE = SearchAttributeKey.for_keyword("DispatchState")
SA_ASSET_ID = SearchAttributeKey.for_keyword("AssetId")
SA_SITE_ID = SearchAttributeKey.for_keyword("SiteId")
SA_DISPATCH_KIND = SearchAttributeKey.for_keyword("DispatchKind")
# Set once, at start_workflow (api/dispatch_workflows.py), never by workflow code.
SA_TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
SEARCH_ATTRIBUTES = (SA_DISPATCH_STATE, SA_ASSET_ID, SA_SITE_ID, SA_DISPATCH_KIND, SA_TENANT_ID)

SIGNAL_AGENT_ACK = "agent_ack"
SIGNAL_CANCEL = "cancel"
# SiteDispatchWorkflow.child_state. The one signal a workflow sends by name: its
# sender is a child DispatchWorkflow (dispatch.py), and site.py's workflow extends
# DispatchWorkflow, so dispatch.py cannot import it for a method reference.
SIGNAL_CHILD_STATE = "child_state"

# The error type of a setpoint refused at delivery because a newer dispatch claimed
# the asset first (core.supersede); its details carry the winner's id.
ERROR_SUPERSEDED = "SUPERSEDED"
QUERY_CURRENT_STATE = "current_state"

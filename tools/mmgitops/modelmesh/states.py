"""How modelmesh-serving shows the mesh's states on an InferenceService (`status.modelStatus`)."""

# ModelStatusInfo.status -> states.activeModelState / targetModelState
ISVC_STATE = {"NOT_LOADED": "Standby", "LOADING": "Loading", "LOADED": "Loaded", "LOADING_FAILED": "FailedToLoad",
              "NOT_FOUND": "", "UNKNOWN": ""}
# VModelStatusInfo.status -> transitionStatus
ISVC_TRANSITION = {"DEFINED": "UpToDate", "TRANSITIONING": "InProgress", "TRANSITION_FAILED": "BlockedByFailedLoad"}

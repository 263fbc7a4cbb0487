import os
import uuid

# Set before any test starts Ray, so the Ray workers inherit it as a real deployment's would:
# the agent hosts resolve the key by this name themselves. Unique per run, so a leak is findable.
KEY_ENV = "MATRIX_LITELLM_TEST_KEY"
os.environ[KEY_ENV] = f"sk-marker-{uuid.uuid4().hex}"
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

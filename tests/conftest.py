import os

# Tests never reach the internet; LiteLLM-style price-table fetches must stay off too.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

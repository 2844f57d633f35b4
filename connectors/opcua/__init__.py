"""OPC UA: shop-floor variables (machine states, order statuses) become production-order and
machine-state records.

Files by role: `config.py` (OpcuaConfig, OpcuaMapping), `mapping.py` (node paths, templates,
data value -> record), `source.py` (the subscription stream source), `connector.py` (PLUGIN).
"""

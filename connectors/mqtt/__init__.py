"""MQTT: shop-floor messages become production-order and machine-state records.

Files by role: `config.py` (MqttConfig, MqttMapping), `mapping.py` (topic patterns, templates,
message -> record), `source.py` (the QoS 1 stream source), `connector.py` (PLUGIN).
"""

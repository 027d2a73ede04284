"""Sync with HQ over MQTT: the paho adapter, uplink, downlink and wire formats."""

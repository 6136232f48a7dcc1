"""Ingest: MQTT consumer, codecs, normalisation, dead letters, `ReadingBatch`, time-series stores."""

"""Deployment artefacts (image, compose, Kubernetes) and the generator that keeps the parts of
them that mirror code — the Strimzi KafkaTopic resources — in line with ``contracts``."""

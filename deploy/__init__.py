"""Deployment artefacts (image, compose, Kubernetes) and the generator that keeps the parts of
them that mirror code in line with it: the Strimzi KafkaTopic resources (from ``contracts``) and
the KEDA autoscaling objects (groups, topics and partition counts from the roles' settings and
``contracts``)."""

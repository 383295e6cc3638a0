"""A run as others see it once it exists: its record (:mod:`zoo.runs.record`) and what is published from it, the
model card and plots (:mod:`zoo.runs.card`)."""

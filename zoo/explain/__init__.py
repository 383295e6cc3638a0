"""zoo explain: attributions of a prediction to what a person sees (words, image regions, seconds of a clip)."""

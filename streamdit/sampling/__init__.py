"""Frames from a network: partition -> buffer -> stream (edit: a stream over a source), the denoiser, the
causal KV cache, prompt tracks, frame sources and the causal families' samplers. Never imports train,
toyworld or evaluation."""

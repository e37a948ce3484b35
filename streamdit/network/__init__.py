"""The network: the Wan 2.1 DiT (model), its attention kernels, presets (config) and text encoders."""

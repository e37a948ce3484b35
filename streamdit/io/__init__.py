"""Files and terminals: checkpoints, video files, PNG images, progress bars and plots."""

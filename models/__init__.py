"""Models: shallow classifiers on features, fine-tuned backbones, AlexNet from scratch."""

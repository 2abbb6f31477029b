"""Look inside a trained LeNet-5: ``python -m src.visualize`` (see __main__.py): its filters, the chosen images'
feature maps (chosen_images, activations), the test set's features in TensorBoard's Projector (projector) and, for
LeCun et al.'s (1998) network, Table I and the sub-sampling coefficients (paper_layers)."""

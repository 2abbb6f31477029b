"""Look inside a trained LeNet-5: ``python -m src.visualize`` (see __main__.py): its filters, the chosen images'
feature maps (chosen_images, activations) and the test set's features in TensorBoard's Projector (projector)."""

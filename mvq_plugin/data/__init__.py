"""Readers for the real offline data sets the project uses (no downloads)."""
from .fashion_mnist import FASHION_MNIST_CLASSES, find_fashion_mnist, load_fashion_mnist

__all__ = ['FASHION_MNIST_CLASSES', 'find_fashion_mnist', 'load_fashion_mnist']

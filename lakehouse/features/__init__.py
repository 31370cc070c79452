"""Gold: point-in-time photo features, popularity labels and the versioned training set."""
